"""Accept header -> accept class -> output format (no I/O)."""

ACCEPT_CLASSES = ("avif", "webp", "other")
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "heic": "image/heic",
    "tiff": "image/tiff",
}
ANIMATED_FORMATS = ("gif", "webp")
ALPHA_FORMATS = ("png", "webp", "avif", "gif")


def _accepted_types(accept):
    """Media types of an Accept header whose q is above zero."""
    types = set()
    for part in accept.split(","):
        fields = part.strip().split(";")
        media = fields[0].strip().lower()
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            types.add(media)
    return types


def accept_class(accept):
    """The only part of Accept that may shape a cache key: avif, webp or other.

    Only explicit listings count: `*/*` and `image/*` are sent by clients that
    may not decode AVIF or WebP, so they get the universal formats.
    """
    if not accept:
        return "other"
    types = _accepted_types(accept[:1024])
    if "image/avif" in types:
        return "avif"
    if "image/webp" in types:
        return "webp"
    return "other"


def output_format(fmt, klass, has_alpha=False, animated=False):
    """The format to encode: `fmt` as asked, or for `auto` the best the class accepts.

    auto: AVIF, then WebP, then JPEG (PNG when the image has transparency).
    An animation stays animated: WebP where accepted, else GIF.
    """
    if fmt != "auto":
        return fmt
    if animated:
        return "webp" if klass in ("avif", "webp") else "gif"
    if klass == "avif":
        return "avif"
    if klass == "webp":
        return "webp"
    return "png" if has_alpha else "jpeg"


def passthrough_ok(source_format, klass):
    """Whether the original's own format is one every client of this class shows."""
    if source_format in ("jpeg", "png", "gif"):
        return True
    if source_format == "webp":
        return klass in ("webp", "avif")
    if source_format == "avif":
        return klass == "avif"
    return False
