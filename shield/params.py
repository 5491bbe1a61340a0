"""URL parameters -> one normalised, hashable Transform (no I/O)."""

import codecs
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from .errors import InvalidParam

FITS = ("cover", "contain", "fill", "inside", "face", "auto")
FORMATS = ("auto", "jxl", "avif", "webp", "jpeg", "png", "original")
# What fmt=original cannot be combined with: it is the original's bytes.
_NOT_WITH_ORIGINAL = ("w", "h", "dpr", "q", "blur", "lqip")
SMART_FITS = ("face", "auto")
# Parameters that change the image; anything else in the query is ignored.
KNOWN = ("w", "h", "dpr", "fit", "q", "fmt", "blur", "lqip", "bx", "by")

_INT = re.compile(r"^[0-9]{1,6}$")
_NUMBER = re.compile(r"^[0-9]{1,2}(\.[0-9]{1,4})?$")


def _keep_quoted(exc):
    """Percent-encoded bytes that are not UTF-8 stay percent-encoded (as Werkzeug does)."""
    return quote(exc.object[exc.start : exc.end], safe=""), exc.end


codecs.register_error("shield.keep_quoted", _keep_quoted)


def parse_query(query):
    """A raw query string as {name: first value}, in the order names first appear."""
    args = {}
    if query:
        for name, value in parse_qsl(query, keep_blank_values=True, errors="shield.keep_quoted"):
            args.setdefault(name, value)
    return args


@dataclass(frozen=True)
class Transform:
    """What a URL asks for, after dpr, clamping and normalisation.

    Two URLs that must give the same image give equal Transforms: that is what
    makes the cache key canonical.
    """

    w: int | None = None
    h: int | None = None
    fit: str = "cover"
    q: int | None = None
    fmt: str = "auto"
    blur: bool = False
    lqip: bool = False
    bx: int = 4
    by: int = 3
    keep_metadata: bool = False  # a passed-through JPEG keeps its EXIF and XMP (the project's keep_metadata)

    @property
    def resizes(self):
        return self.w is not None or self.h is not None

    @property
    def is_passthrough_candidate(self):
        """No parameter asks for new pixels: the original may be sent as it is."""
        return (
            not (self.resizes or self.blur or self.lqip)
            and self.fmt in ("auto", "original")
            and self.q is None
        )

    @property
    def smart(self):
        return self.fit in SMART_FITS and self.w is not None and self.h is not None

    def canonical(self):
        """A stable string of the values that matter, used in cache keys."""
        if self.blur:
            return f"blur:{self.w or ''}x{self.h or ''}:{self.fit}:{self.bx}x{self.by}"
        kind = "lqip" if self.lqip else "img"
        meta = ":meta" if self.keep_metadata else ""
        return f"{kind}:{self.w or ''}x{self.h or ''}:{self.fit}:q{self.q or ''}:{self.fmt}{meta}"


def _int_param(args, name, lo, hi=None):
    raw = args.get(name)
    if raw is None:
        return None
    if not _INT.match(raw):
        raise InvalidParam(name, f"expected a whole number >= {lo}, got {raw[:40]!r}")
    value = int(raw)
    if value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise InvalidParam(name, f"must be {bound}, got {value}")
    return value


def _bool_param(args, name):
    raw = args.get(name)
    if raw is None:
        return False
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise InvalidParam(name, f"expected true or false, got {raw[:40]!r}")


def _choice_param(args, name, choices, default):
    raw = args.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise InvalidParam(name, f"expected one of {', '.join(choices)}, got {raw[:40]!r}")
    return raw


def parse(args, quality=80, max_width=8192, max_height=8192):
    """Parse a query mapping (first value of each name) into a Transform.

    Every wrong value raises InvalidParam naming the parameter. `w`/`h` are
    multiplied by `dpr`, rounded, then clamped to the project's maxima.
    """
    w = _int_param(args, "w", 1)
    h = _int_param(args, "h", 1)
    dpr = 1.0
    raw_dpr = args.get("dpr")
    if raw_dpr is not None:
        if not _NUMBER.match(raw_dpr):
            raise InvalidParam("dpr", f"expected a number from 1 to 4, got {raw_dpr[:40]!r}")
        dpr = float(raw_dpr)
        if not 1 <= dpr <= 4:
            raise InvalidParam("dpr", f"must be from 1 to 4, got {raw_dpr}")
    fit = _choice_param(args, "fit", FITS, "cover")
    q = _int_param(args, "q", 1, 100)
    fmt = _choice_param(args, "fmt", FORMATS, "auto")
    if fmt == "original":
        clash = [name for name in _NOT_WITH_ORIGINAL if name in args]
        if clash:
            raise InvalidParam(
                clash[0], "fmt=original is the original's bytes: it takes no transform parameters"
            )
    blur = _bool_param(args, "blur")
    lqip = _bool_param(args, "lqip")
    bx = _int_param(args, "bx", 1, 9) or 4
    by = _int_param(args, "by", 1, 9) or 3
    if blur and lqip:
        raise InvalidParam("blur", "blur and lqip cannot be asked for together")

    if w is not None:
        w = min(max(1, round(w * dpr)), max_width)
    if h is not None:
        h = min(max(1, round(h * dpr)), max_height)
    if w is None or h is None:
        # With one side or none the box has the source's aspect ratio: every fit
        # but fill gives the same image, so they share one cache entry.
        fit = "fill" if fit == "fill" and (w or h) else "inside"
    if q is None or q == quality:
        # The project's default quality and an explicit equal q are one variant.
        q = None if (w is None and h is None and fmt in ("auto", "original") and not lqip) else quality
    if blur:
        q, fmt = None, "auto"
    return Transform(
        w=w, h=h, fit=fit, q=q, fmt=fmt, blur=blur, lqip=lqip, bx=bx if blur else 4, by=by if blur else 3
    )


def check_preset(query):
    """Raise ValueError unless `query` is a valid set of image parameters (a project's preset)."""
    args = parse_query(query)
    unknown = [name for name in args if name not in KNOWN]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an image parameter ({', '.join(KNOWN)})")
    try:
        parse(args)
    except InvalidParam as exc:
        raise ValueError(str(exc)) from None


def with_preset(args, project):
    """The URL's parameters over its `preset`'s; with presets_only, nothing but presets."""
    if project.presets_only:
        explicit = [name for name in KNOWN if name in args]
        if explicit:
            raise InvalidParam(explicit[0], "this project serves presets only: ask for ?preset=<name>")
    name = args.get("preset")
    if name is None:
        return args
    query = project.presets.get(name)
    if query is None:
        known = ", ".join(sorted(project.presets)) or "none"
        raise InvalidParam("preset", f"no preset named {name[:40]!r} (this project has: {known})")
    merged = parse_query(query)
    merged.update((k, v) for k, v in args.items() if k != "preset")
    return merged


_OP_FORMATS = {"auto": "auto", "avif": "avif", "webp": "webp", "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
# (Path-style operations are contract section 11's list: no jxl there.)
_OP_SIZE = re.compile(r"[1-9][0-9]{0,3}")
_OP_BOX = re.compile(r"([1-9][0-9]{0,3})x([1-9][0-9]{0,3})")


def parse_ops(ops):
    """A path-style URL's operations (`_`, or `w_400,h_300,f_webp,...`) as image parameters.

    Raises InvalidParam("operations", ...) for anything outside the grammar.
    """
    if ops == "_":
        return {}
    args = {}
    for op in ops.split(","):
        name, _, value = op.partition("_")
        if op == "embed":
            args["fit"] = "contain"
        elif name in ("w", "h") and _OP_SIZE.fullmatch(value) and int(value) <= 8192:
            args[name] = value
        elif name == "s" and (box := _OP_BOX.fullmatch(value)) and max(map(int, box.groups())) <= 8192:
            args["w"], args["h"] = box.groups()
        elif name == "q" and _OP_SIZE.fullmatch(value) and int(value) <= 100:
            args["q"] = value
        elif name == "f" and value in _OP_FORMATS:
            args["fmt"] = _OP_FORMATS[value]
        elif name == "fit" and value in FITS:
            args["fit"] = value
        elif name == "dpr" and _NUMBER.fullmatch(value) and 1 <= float(value) <= 4:
            args["dpr"] = value
        else:
            raise InvalidParam(
                "operations",
                f"{op[:40]!r} is not an operation (w_, h_, s_WxH, q_, f_, fit_, dpr_, embed, or _)",
            )
    return args
