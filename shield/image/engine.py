"""Pixels: decode, orient, convert to sRGB, resize, crop, encode.

The only module that imports Wand. Every function here is CPU-bound and is
called from the transform pool's OS threads, never on the event loop.

AVIF goes through libavif (Pillow's codec) rather than ImageMagick 6's libheif
coder: that coder drops the alpha channel when writing, has no speed control,
and decodes to YCbCr with a bogus alpha channel.
"""

import contextlib
import ctypes
import io
import os
import warnings
from dataclasses import dataclass

# ImageMagick reads these once, when Wand loads it: one thread per transform
# (the pool gives the parallelism), and shield's own policy.xml.
os.environ.setdefault("MAGICK_THREAD_LIMIT", "1")
os.environ.setdefault(
    "MAGICK_CONFIGURE_PATH", os.path.join(os.path.dirname(os.path.dirname(__file__)), "config")
)

from PIL import Image as PILImage  # noqa: E402
from wand.api import library  # noqa: E402
from wand.color import Color  # noqa: E402
from wand.exceptions import (  # noqa: E402
    CacheError,
    CoderWarning,
    CorruptImageWarning,
    ResourceLimitError,
    WandException,
)
from wand.image import COLORSPACE_TYPES, STORAGE_TYPES, Image  # noqa: E402

from ..errors import OriginError, SourceTooLarge  # noqa: E402
from . import geometry, pillow_codecs  # noqa: E402
from .negotiate import ALPHA_FORMATS, ANIMATED_FORMATS, CONTENT_TYPES  # noqa: E402

# A damaged original must fail loudly, not come out with a grey band that
# would then be cached: ImageMagick reports truncation only as a warning.
warnings.filterwarnings("error", category=CorruptImageWarning)
warnings.filterwarnings("error", category=CoderWarning)
# probe.py has already refused sources over max_source_pixels.
PILImage.MAX_IMAGE_PIXELS = None

SRGB_PROFILE_PATHS = ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc")
PILLOW_ENCODED = ("avif", "jxl")  # encoded by Pillow from the wand's pixels
SRGB_GAMMA = 1 / 2.2  # what a PNG's gAMA says for sRGB (45455 / 100000)
WEBP_METHOD = "4"  # libwebp 0-6: 4 is its own default balance
RESIZE_FILTER = "lanczos"
_CHAR_PIXEL = STORAGE_TYPES.index("char")
# After a transform this large, freed memory is handed back to the system at once.
TRIM_AFTER_PIXELS = 4_000_000


def _load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


def _give_back_memory():
    """glibc keeps what a transform thread freed in that thread's arena, where the
    next request cannot reuse it as one piece: a full-size AVIF of a 15-megapixel
    photo left a worker ~190 MB larger for good. malloc_trim returns it (~1 ms)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


_MAGICK_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "heic": "HEIC", "tiff": "TIFF"}


def _load_srgb_profile():
    for path in SRGB_PROFILE_PATHS:
        if os.path.exists(path):
            with open(path, "rb") as fh:
                return fh.read()
    return None


SRGB_PROFILE = _load_srgb_profile()


@dataclass(frozen=True)
class Rendered:
    body: bytes
    format: str
    width: int
    height: int

    @property
    def content_type(self):
        return CONTENT_TYPES[self.format]


def render(data, info, plan, out_format, quality, lossy_tiny=False, keep_metadata=False):
    """Make the variant: `plan` is geometry.Plan over the upright source.

    `keep_metadata` keeps the source's EXIF (orientation reset, since the pixels
    are turned upright) and its colour profile (sRGB once converted).

    Raises OriginError when the bytes do not decode, SourceTooLarge when
    ImageMagick's resource limits refuse the image.
    """
    try:
        with _decoding_errors():
            with _decode(data, info, plan, animate=out_format in ANIMATED_FORMATS) as img:
                _normalise(img, keep_metadata)
                _apply_plan(img, plan, keep_alpha=out_format in ALPHA_FORMATS)
                if out_format not in PILLOW_ENCODED:
                    body = _encode(img, out_format, quality, lossy_tiny)
                    return Rendered(body, out_format, plan.canvas_w, plan.canvas_h)
                metadata = _metadata_for_pillow(img) if keep_metadata else {}
                im = _to_pillow(img)  # the wand is released before libavif needs its memory
            body = pillow_codecs.encode(im, out_format, quality, **metadata)
            return Rendered(body, out_format, plan.canvas_w, plan.canvas_h)
    finally:
        if max(info.width * info.height, plan.canvas_w * plan.canvas_h) >= TRIM_AFTER_PIXELS:
            _give_back_memory()


def decode_check(data, info):
    """Decode the original fully once, so a damaged one is refused before it is stored."""
    with _decoding_errors():
        if info.format in ("avif", "jpeg"):
            # JPEG: ImageMagick's coder swallows libjpeg's warnings about corrupt data (it
            # fills the rest of the image with grey and reports success); Pillow's decoder
            # refuses the same file. A draft (DCT-scaled) decode still reads every scan.
            with PILImage.open(io.BytesIO(data)) as im:
                if info.format == "jpeg":
                    im.draft("RGB", (64, 64))
                im.load()
            return
        with Image() as img:
            img.read(blob=data, format=_MAGICK_FORMATS[info.format])


@contextlib.contextmanager
def _decoding_errors():
    """ImageMagick's and libavif's failures, as the contract's errors."""
    try:
        yield
    except (ResourceLimitError, CacheError) as exc:
        # CacheError: the pixel cache found no room, in RAM or on disk (config/policy.xml).
        raise SourceTooLarge(f"The original is too large to process: {_short(exc)}") from None
    except (
        WandException,
        CorruptImageWarning,
        CoderWarning,
        OSError,
        ValueError,
        SyntaxError,
        RuntimeError,
        TypeError,
    ) as exc:
        # RuntimeError: libavif; TypeError: a wand left with no image (an empty blob).
        raise OriginError(f"The original does not decode: {_short(exc)}") from None


def _short(exc):
    return str(exc).split("@", 1)[0].strip()[:200] or type(exc).__name__


def _decode(data, info, plan, animate):
    if info.format == "avif":
        return _decode_with_libavif(data, info)
    img = Image()
    try:
        if info.format == "jpeg" and plan is not None:
            hint = _jpeg_hint(info, plan)
            if hint:
                img.options["jpeg:size"] = f"{hint[0]}x{hint[1]}"
        img.read(blob=data, format=_MAGICK_FORMATS[info.format])
        if len(img.sequence) > 1:
            img.coalesce()
            if not (animate and info.format == "gif"):
                first = Image(image=img.sequence[0])
                img.close()
                img = first
        if info.format == "heic":
            # ImageMagick 6's HEIF reader hands back YCbCr with a meaningless alpha.
            img.transform_colorspace("srgb")
            if not info.has_alpha:
                img.alpha_channel = "off"
        return img
    except BaseException:
        img.close()
        raise


def _jpeg_hint(info, plan):
    """The shrink-on-load hint, in stored (not upright) pixels."""
    need_w, need_h = plan.resize_w, plan.resize_h
    src_w, src_h = info.oriented_size
    if need_w * 2 > src_w or need_h * 2 > src_h:
        return None
    if info.orientation in (5, 6, 7, 8):
        need_w, need_h = need_h, need_w
    return need_w, need_h


def _decode_with_libavif(data, info=None):
    with PILImage.open(io.BytesIO(data)) as im:
        icc = im.info.get("icc_profile")
        mode = "RGBA" if "A" in im.getbands() else "RGB"
        im = im.convert(mode)
        if info is not None and info.heif_ops:
            im = pillow_codecs.heif_transformed(im, info.heif_ops)
        img = Image(blob=im.tobytes(), format=mode, width=im.width, height=im.height, depth=8)
        if icc:
            img.profiles["icc"] = icc  # attached as the source's own: _normalise converts from it
        return img


def _normalise(img, keep_metadata=False):
    """Upright, sRGB, 8 bits, no metadata (unless asked to keep it)."""
    if img.orientation not in ("undefined", "top_left"):
        img.auto_orient()
        # A transverse turn leaves a virtual-canvas offset behind, which crop() would honour.
        img.page = (img.width, img.height, 0, 0)
    profile = img.profiles["icc"] if "icc" in img.profiles else None
    colorspace = colorspace_of(img)
    if profile and SRGB_PROFILE and (colorspace == "cmyk" or b"sRGB" not in profile[:512]):
        # An embedded profile (Display P3, Adobe RGB, a printer's CMYK): convert the pixels
        # from it to sRGB. (Setting img.profiles["icc"] would only attach a profile.)
        _convert_to_srgb(img)
    elif colorspace != "srgb":
        # CMYK without a profile, grey, YCbCr, and linear light ("rgb" and LinearGRAY: a PNG with
        # gAMA 1.0), which every encoder must get as sRGB, not only the ones that convert themselves.
        img.transform_colorspace("srgb")
    elif abs(library.MagickGetImageGamma(img.wand) - SRGB_GAMMA) > 0.01 and img.format == "PNG":
        # A PNG's gAMA other than sRGB's (and other than 1.0, read as linear light above):
        # sample -> light (1/gamma) -> sRGB (1/2.2), once, the same for every encoder.
        gamma = library.MagickGetImageGamma(img.wand)
        if gamma > 0:
            img.gamma(gamma / SRGB_GAMMA)
            library.MagickSetImageGamma(img.wand, SRGB_GAMMA)
    if not keep_metadata:
        img.strip()
    img.depth = 8


def colorspace_of(img):
    """The image's colourspace by name; ImageMagick's newer ones (LinearGRAY) that Wand's table lacks
    by number ("#35"), rather than Wand's IndexError."""
    index = library.MagickGetImageColorspace(img.wand)
    return COLORSPACE_TYPES[index] if 0 <= index < len(COLORSPACE_TYPES) else f"#{index}"


# Wand declares no signature for MagickProfileImage: without one ctypes would pass the
# wand pointer as a C int.
library.MagickProfileImage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
library.MagickProfileImage.restype = ctypes.c_int


def _convert_to_srgb(img):
    """Pixels from the embedded ICC profile to sRGB, through ImageMagick's colour management (LCMS)."""
    blob = ctypes.create_string_buffer(SRGB_PROFILE, len(SRGB_PROFILE))
    if not library.MagickProfileImage(img.wand, b"icc", blob, len(SRGB_PROFILE)):
        img.raise_exception()


def _apply_plan(img, plan, keep_alpha):
    if img.size != (plan.resize_w, plan.resize_h):
        img.resize(plan.resize_w, plan.resize_h, filter=RESIZE_FILTER)
    if (plan.crop_w, plan.crop_h) != (plan.resize_w, plan.resize_h):
        img.crop(plan.crop_x, plan.crop_y, width=plan.crop_w, height=plan.crop_h)
    if (plan.canvas_w, plan.canvas_h) != (plan.crop_w, plan.crop_h):
        img.background_color = Color("transparent" if keep_alpha else "white")
        if keep_alpha:
            img.alpha_channel = "set"
        img.extent(
            width=plan.canvas_w,
            height=plan.canvas_h,
            x=-((plan.canvas_w - plan.crop_w) // 2),
            y=-((plan.canvas_h - plan.crop_h) // 2),
        )
    # Crops leave the old canvas geometry behind; viewers would offset the image.
    if len(img.sequence) > 1:
        for frame in img.sequence:
            frame.page = (plan.canvas_w, plan.canvas_h, 0, 0)
    img.page = (plan.canvas_w, plan.canvas_h, 0, 0)


def _encode(img, fmt, quality, lossy_tiny):
    if fmt == "jpeg" and img.alpha_channel:
        img.background_color = Color("white")
        img.alpha_channel = "remove"
    if fmt in ("jpeg", "webp"):
        img.compression_quality = quality
    if fmt == "jpeg":
        img.options["jpeg:optimize-coding"] = "true"
        if quality < 90:
            # Half-resolution chroma (4:2:0), libjpeg's and Pillow's default: ~30 % fewer
            # bytes at the same luma. ImageMagick would keep a 4:4:4 source's sampling.
            # At 90 and above ImageMagick's own choice stands: 4:4:4 for resized pixels,
            # the source's sampling for a JPEG passed through at its own size.
            img.options["jpeg:sampling-factor"] = "4:2:0"
        img.interlace_scheme = "line" if (img.width * img.height) > 10_000 and not lossy_tiny else "no"
    elif fmt == "gif":
        # ImageMagick's default palette reduction dithers with a Riemersma curve
        # that costs ~0.1 s a frame even on tiny frames; reduce without dithering.
        for frame in img.sequence:
            with frame:
                frame.quantize(256, dither=False)
    elif fmt == "webp":
        img.options["webp:method"] = "6" if lossy_tiny else WEBP_METHOD
    # Name the format here: a read with a format hint pins the wand's output format.
    return img.make_blob(_MAGICK_FORMATS[fmt])


def _to_pillow(img):
    """The wand's pixels as an 8-bit Pillow image (RGB, or RGBA with alpha); the wand is closed.

    The pixels go straight into one buffer (make_blob() would hold ImageMagick's
    blob and its Python copy at once), and the wand, the largest copy at 8
    bytes a pixel, is closed before Pillow takes them.
    """
    mode = "RGBA" if img.alpha_channel else "RGB"
    width, height = img.size
    buf = bytearray(width * height * len(mode))
    target = (ctypes.c_char * len(buf)).from_buffer(buf)
    if not library.MagickExportImagePixels(img.wand, 0, 0, width, height, mode.encode(), _CHAR_PIXEL, target):
        img.raise_exception()
    del target  # a ctypes view would keep the buffer alive
    img.close()
    # RGBA is used in place; RGB is copied into Pillow's 4-byte layout and the buffer freed.
    im = PILImage.frombuffer(mode, (width, height), buf, "raw", mode, 0, 1)
    del buf
    return im


def _metadata_for_pillow(img):
    """The wand's EXIF (orientation 1: its pixels are upright now) and ICC profile, as Pillow takes them."""
    out = {}
    if "icc" in img.profiles:
        out["icc_profile"] = img.profiles["icc"]
    if "exif" in img.profiles:
        exif = PILImage.Exif()
        exif.load(img.profiles["exif"])
        exif[0x0112] = 1
        out["exif"] = exif.tobytes()
    return out


def analysis_pixels(data, info, max_side=400):
    """The upright sRGB image shrunk to at most `max_side` px, as an RGB array, and its scale.

    Face and saliency detection run on this copy, so a 5000 px photo costs
    little more than a 500 px one (JPEG shrink-on-load does most of the work).
    """
    src_w, src_h = info.oriented_size
    scale = min(1.0, max_side / max(src_w, src_h))
    small = geometry.plan(src_w, src_h, max(1, round(src_w * scale)), None, "inside")
    with _decoding_errors(), _decode(data, info, small, animate=False) as img:
        _normalise(img)
        img.resize(small.resize_w, small.resize_h, filter="triangle")
        rgb = _rgb_array(img)
    return rgb, small.resize_w / src_w


def variant_pixels(data, info, plan, max_side=32):
    """The variant `plan` describes, shrunk to at most `max_side` px, as an RGB array (BlurHash input)."""
    scale = min(1.0, max_side / max(plan.canvas_w, plan.canvas_h))
    with _decoding_errors(), _decode(data, info, plan, animate=False) as img:
        _normalise(img)
        _apply_plan(img, plan, keep_alpha=False)
        img.resize(
            max(1, round(plan.canvas_w * scale)), max(1, round(plan.canvas_h * scale)), filter="triangle"
        )
        return _rgb_array(img)


def _rgb_array(img):
    """Pixels as an HxWx3 uint8 array, transparency flattened on white."""
    import numpy as np

    if img.alpha_channel:
        img.background_color = Color("white")
        img.alpha_channel = "remove"
    raw = img.make_blob("RGB")
    return np.frombuffer(raw, dtype=np.uint8).reshape(img.height, img.width, 3).copy()


def dimensions(body, fmt):
    """Width and height of an encoded image (tests and diagnostics)."""
    with Image(blob=body, format=_MAGICK_FORMATS.get(fmt, fmt.upper())) as img:
        return img.size
