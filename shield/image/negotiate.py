"""Accept header -> accept class -> output format (no I/O).

The accept class is the only part of `Accept` a cache key holds. It names the
format `fmt=auto` makes for that client (`avif`, `webp`, `jxl`, or `other`:
JPEG, PNG for transparency), so two clients of one class always get the same
bytes. Clients that refuse JPEG or PNG (`q=0`, or no wildcard) get a class of
their own (`avif!`, `png`, ...): rare, and never sent a format they refused.
"""

from ..errors import NotAcceptable

CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "heic": "image/heic",
    "tiff": "image/tiff",
}
ANIMATED_FORMATS = ("gif", "webp")
ALPHA_FORMATS = ("png", "webp", "avif", "gif", "jxl")
# Counted as accepted only when named: `*/*` and `image/*` come from clients that may not decode them.
NAMED_ONLY = ("avif", "webp", "jxl")
LEGACY = ("jpeg", "png", "gif")
DEFAULT_ORDER = ("avif", "webp", "jpeg")
_TYPE_OF = {f"image/{f}": f for f in ("jpeg", "png", "gif", "webp", "avif", "jxl")}
_TYPE_OF["image/jpg"] = "jpeg"
_EVERYTHING = frozenset(("jpeg", "png", "gif", "webp", "avif", "jxl"))
_CLASS_CACHE = {}


def _weights(accept):
    """{media range: q} of an Accept header (the highest q where a range repeats)."""
    weights = {}
    for part in accept.split(","):
        fields = part.strip().split(";")
        media = fields[0].strip().lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        weights[media] = max(q, weights.get(media, 0.0))
    return weights


def admitted(accept):
    """The formats shield can make that this Accept admits (a frozenset).

    A missing Accept admits everything. A named type's q wins over `image/*`,
    which wins over `*/*`; q=0 excludes. AVIF, WebP and JPEG XL count only
    when named.
    """
    if not accept:
        return _EVERYTHING
    weights = _weights(accept[:2048])
    wildcard = weights.get("image/*", weights.get("*/*", 0.0))
    named = {}
    for media, q in weights.items():
        fmt = _TYPE_OF.get(media)
        if fmt is not None:
            named[fmt] = max(q, named.get(fmt, 0.0))
    out = set()
    for fmt in _EVERYTHING:
        q = named.get(fmt, 0.0 if fmt in NAMED_ONLY else wildcard)
        if q > 0:
            out.add(fmt)
    return frozenset(out)


def accept_class(accept, order=DEFAULT_ORDER):
    """The class of `Accept` under a project's format_order; None when nothing shield makes is admitted."""
    cache_key = (accept, order)
    found = _CLASS_CACHE.get(cache_key)
    if found is not None:
        return found or None
    klass = _class_of(admitted(accept) if accept else None, order)
    if len(_CLASS_CACHE) < 4096:
        _CLASS_CACHE[cache_key] = klass
    return klass or None


def _class_of(formats, order):
    if formats is None:  # no Accept: the universal formats (AVIF or WebP only for clients that ask)
        return "other"
    legacy = "jpeg" in formats and "png" in formats
    for fmt in order:
        if fmt in NAMED_ONLY and fmt in formats:
            return fmt if legacy else fmt + "!"
        if fmt in ("jpeg", "png") and fmt in formats:
            break
    if legacy:
        return "other"
    for fmt in ("jpeg", "png", "gif"):
        if fmt in formats:
            return fmt
    for fmt in NAMED_ONLY:
        if fmt in formats:
            return fmt + "!"
    return ""  # nothing shield can make


def require_class(accept, order=DEFAULT_ORDER):
    """accept_class, or 406 not_acceptable."""
    klass = accept_class(accept, order)
    if klass is None:
        raise NotAcceptable(
            "The Accept header admits no image type shield makes (AVIF, WebP, JPEG XL, JPEG, PNG, GIF)."
        )
    return klass


def require_format(accept, fmt):
    """An explicit fmt is the URL's choice: made unless the client refuses it outright.

    Refused: its type named with q=0, or (not named) `image/*` or `*/*` with q=0
    and nothing else admitting it. An Accept that merely does not mention it
    (`*/*`, `image/jpeg`) gets what the URL asks for.
    """
    if not accept or fmt not in _EVERYTHING:
        return
    weights = _weights(accept[:2048])
    named = [q for media, q in weights.items() if _TYPE_OF.get(media) == fmt]
    if named:
        refused = max(named) <= 0
    else:
        wildcards = [weights[w] for w in ("image/*", "*/*") if w in weights]
        refused = bool(wildcards) and max(wildcards) <= 0
    if refused:
        raise NotAcceptable(f"fmt={fmt} was asked for, but the Accept header refuses {CONTENT_TYPES[fmt]}.")


def primary(klass):
    """The format fmt=auto makes for an opaque still image of this class."""
    klass = klass.rstrip("!")
    return "jpeg" if klass == "other" else klass


def output_format(fmt, klass, has_alpha=False, animated=False):
    """The format to encode: `fmt` as asked, or for `auto` the best the class accepts.

    auto: the class's format; `other` is JPEG, or PNG when the image has
    transparency. An animation stays animated: WebP where accepted, else GIF.
    """
    if fmt != "auto":
        return fmt
    base = klass.rstrip("!")
    if animated:
        if base in ("avif", "webp", "jxl"):
            return "webp"
        return "gif" if base in ("other", "gif") else base
    if base == "other":
        return "png" if has_alpha else "jpeg"
    if base == "jpeg" and has_alpha:
        return "jpeg"
    return base


def passthrough_ok(source_format, klass):
    """Whether the original's own format is one every client of this class shows."""
    base, strict = klass.rstrip("!"), klass.endswith("!")
    if source_format == base:
        return True
    if strict or base in ("jpeg", "png", "gif"):
        return False
    if source_format in LEGACY:
        return True
    if source_format == "webp":
        return base in ("webp", "avif")
    if source_format == "avif":
        return base == "avif"
    return False
