"""The original's bytes -> upright, sRGB, 8-bit Pillow frames: one way, whatever the output format.

ImageMagick decodes and colour-manages (JPEG, PNG, GIF, WebP, TIFF); libavif
(Pillow) decodes AVIF and libheif (pillow-heif) HEIC, whose ICC profiles Pillow's
ImageCms converts. Every output format is then made from the same frames, so a
file is good, or refused the same way, for every client.

ImageMagick 6's own HEIF coder is not used: it ignores irot/imir/clap, gets
sizes wrong and drops alpha. AVIF goes through libavif rather than libheif
(pillow-heif's wheel has no AV1 decoder).
"""

import contextlib
import ctypes
import io
import struct
import warnings
from dataclasses import dataclass, field

from PIL import Image as PILImage
from PIL import ImageCms, ImageOps
from wand.api import library
from wand.exceptions import CacheError, CoderWarning, CorruptImageWarning, ResourceLimitError, WandException
from wand.image import COLORSPACE_TYPES, STORAGE_TYPES, Image

from ..errors import OriginError, SourceTooLarge
from . import budget, pillow_codecs, webpscale

# A damaged original must fail loudly, not come out with a grey band that
# would then be cached: ImageMagick reports truncation only as a warning.
warnings.filterwarnings("error", category=CorruptImageWarning)
warnings.filterwarnings("error", category=CoderWarning)
# probe.py has already refused sources over max_source_pixels.
PILImage.MAX_IMAGE_PIXELS = None

SRGB_PROFILE_PATHS = ("/usr/share/color/icc/sRGB.icc", "/usr/share/color/icc/colord/sRGB.icc")
SRGB_GAMMA = 1 / 2.2  # what a PNG's gAMA says for sRGB (45455 / 100000)
MAGICK_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "tiff": "TIFF"}
# A GIF frame delay of 10 ms or less is shown for 100 ms by browsers; kept as written, an
# encoder would merge such frames (WebP) or play them at once.
BROWSER_MIN_DELAY_MS, BROWSER_DEFAULT_DELAY_MS = 10, 100
_CHAR_PIXEL = STORAGE_TYPES.index("char")


def _load_srgb_profile():
    for path in SRGB_PROFILE_PATHS:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            return fh.read()
    return None


SRGB_PROFILE = _load_srgb_profile()


@dataclass
class Decoded:
    frames: list  # Pillow images, RGB or RGBA (RGBA only where some pixel is not opaque), one size
    durations: list = field(default_factory=list)  # milliseconds a frame, for animations
    loop: int = 0  # 0: for ever
    metadata: dict = field(default_factory=dict)  # icc_profile (sRGB) and exif (orientation 1), if kept


@contextlib.contextmanager
def errors():
    """ImageMagick's, libavif's and libheif's failures, as the contract's errors."""
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
        EOFError,
        IndexError,
        ImageCms.PyCMSError,
    ) as exc:
        # RuntimeError: libavif, libheif; TypeError: a wand left with no image (an empty blob);
        # IndexError: pillow-heif on a HEIF whose image has no planes.
        raise OriginError(f"The original does not decode: {_short(exc)}") from None


def _short(exc):
    return str(exc).split("@", 1)[0].strip()[:200] or type(exc).__name__


def decode(data, info, need=None, animate=False, keep_metadata=False):
    """The frames of `data` (all of them if `animate`, else the first).

    `need` is (width, height) of the upright result the caller will resize to;
    decoders that can shrink on load (JPEG's DCT scaling) stop at twice that.
    """
    if info.format == "avif":
        metadata = {}
        im = _upright_srgb(PILImage.open(io.BytesIO(data)), keep_metadata, metadata)
        im = pillow_codecs.heif_transformed(im, info.heif_ops)  # libavif hands back the coded image
        return Decoded([_opaque_dropped(im)], metadata=metadata)
    if info.format == "heic":
        return _decode_heif(data, keep_metadata, need)
    if info.format == "tiff" and _jpeg_in_tiff(data):
        return _decode_with_libtiff(data, keep_metadata)
    if info.format == "webp" and need is not None and not keep_metadata:
        scaled = webpscale.shrink_on_load(data, info, need)
        if scaled is not None:
            return Decoded([_opaque_dropped(scaled)])
    img = Image()
    try:
        _watch(img)
        if info.format == "jpeg" and need is not None:
            hint = jpeg_hint(info, need)
            if hint:
                img.options["jpeg:size"] = f"{hint[0]}x{hint[1]}"
        img.read(blob=data, format=MAGICK_FORMATS[info.format])
        budget.check()
        count = len(img.sequence)
        if count > 1 and animate:
            img.coalesce()
            budget.check()
            return _frames(img, count)
        if count > 1:
            library.MagickSetIteratorIndex(img.wand, 0)
        metadata = _normalise(img, keep_metadata)
        budget.check()
        return Decoded([_opaque_dropped(_export(img, close=True))], metadata=metadata)
    finally:
        img.close()


def jpeg_hint(info, need):
    """The shrink-on-load hint, in stored (not upright) pixels."""
    need_w, need_h = need
    src_w, src_h = info.oriented_size
    if need_w * 2 > src_w or need_h * 2 > src_h:
        return None
    if info.orientation in (5, 6, 7, 8):
        need_w, need_h = need_h, need_w
    return need_w, need_h


def _frames(img, count):
    """A coalesced animation: every frame a full canvas, with its delay."""
    frames, durations = [], []
    tps = img.ticks_per_second or 100
    for index in range(count):
        library.MagickSetIteratorIndex(img.wand, index)
        if colorspace_of(img) != "srgb":
            img.transform_colorspace("srgb")
        frames.append(_export(img))
        ms = round(library.MagickGetImageDelay(img.wand) * 1000 / tps)
        durations.append(ms if ms > BROWSER_MIN_DELAY_MS else BROWSER_DEFAULT_DELAY_MS)
        budget.check()
    return Decoded(frames, durations, loop=img.loop)


def _jpeg_in_tiff(data):
    """Whether a TIFF holds JPEG data (compression 6 or 7), which ImageMagick 6 hands back
    unconverted from YCbCr (green and magenta) or blank (tiled CMYK)."""
    try:
        with PILImage.open(io.BytesIO(data)) as im:  # the first IFD only: no pixels read
            return im.tag_v2.get(259) in (6, 7)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, Warning):
        return False  # Pillow cannot read the header (or a warning was made an error): ImageMagick decides


def _decode_with_libtiff(data, keep_metadata):
    """JPEG-in-TIFF through libtiff's RGBA interface (Pillow), which converts YCbCr and CMYK."""
    im = PILImage.open(io.BytesIO(data))
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode == "CMYK" and not im.info.get("icc_profile"):
        im = im.convert("RGB")
    out = {}
    return Decoded([_opaque_dropped(_upright_srgb(im, keep_metadata, out))], metadata=out)


def _decode_heif(data, keep_metadata, need=None):
    import pillow_heif  # noqa: PLC0415 - libheif loads only when a HEIC original comes

    # libheif applies clap, irot and imir itself; the primary image only (a still).
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        im = _heif_thumbnail(heif, need) if need is not None and not keep_metadata else None
        if im is None:
            im = heif.to_pillow()
    except RuntimeError as exc:
        if "AV1" not in str(exc):
            raise
        # A HEIF with AV1 inside under a generic brand (mif1): libavif decodes it, and it
        # applies no transformative property, as for AVIF.
        im = PILImage.open(io.BytesIO(data))
    out = {}
    return Decoded([_opaque_dropped(_upright_srgb(im, keep_metadata, out))], metadata=out)


def _heif_thumbnail(heif, need):
    """The smallest thumbnail the file carries (phones store one of 320 px or so) that is at
    least twice the size needed and has the image's shape: decoded in a few ms, where the
    full image takes a hundred or more. None: decode the image itself."""
    primary = heif[0]
    width, height = primary.size
    usable = []
    for index, side in enumerate(primary.info.get("thumbnails") or ()):
        if side >= 2 * max(need):
            usable.append((side, index))
    for _side, index in sorted(usable):
        im = primary.get_thumbnail(index).to_pillow()
        if abs(im.width / im.height - width / height) <= 0.02 * width / height:
            im.info["icc_profile"] = primary.info.get("icc_profile")  # the image's colours
            return im
    return None


def _upright_srgb(im, keep_metadata, out):
    """A Pillow-decoded image as 8-bit RGB(A) sRGB, its ICC profile converted through LCMS."""
    icc = im.info.get("icc_profile")
    exif = im.info.get("exif")
    mode = "RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB"
    im = im.convert(mode)
    if icc and SRGB_PROFILE and b"sRGB" not in icc[:512]:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        im = ImageCms.profileToProfile(im, source, ImageCms.ImageCmsProfile(io.BytesIO(SRGB_PROFILE)))
        icc = SRGB_PROFILE
    if keep_metadata:
        if icc:
            out["icc_profile"] = icc
        if exif:
            out["exif"] = _exif_upright(exif)
    return im


def _normalise(img, keep_metadata):
    """Upright, sRGB (the pixels converted), metadata kept only when asked: the wand's current image."""
    if img.orientation not in ("undefined", "top_left"):
        img.auto_orient()
        budget.check()
    profile = img.profiles["icc"] if "icc" in img.profiles else None
    colorspace = colorspace_of(img)
    converted = False
    if profile and SRGB_PROFILE and (colorspace == "cmyk" or b"sRGB" not in profile[:512]):
        # An embedded profile (Display P3, Adobe RGB, a printer's CMYK): convert the pixels
        # from it to sRGB. (Setting img.profiles["icc"] would only attach a profile.)
        converted = _convert_to_srgb(img)
    if converted:
        pass
    elif colorspace_of(img) != "srgb":
        # CMYK without a (usable) profile, grey, YCbCr, and linear light ("rgb" and LinearGRAY:
        # a PNG with gAMA 1.0), which every encoder must get as sRGB.
        img.transform_colorspace("srgb")
    elif img.format == "PNG" and abs(library.MagickGetImageGamma(img.wand) - SRGB_GAMMA) > 0.01:
        # A PNG's gAMA other than sRGB's (1.0 is read as linear light above): sample ->
        # light (1/gamma) -> sRGB (2.2), once, the same for every encoder.
        gamma = library.MagickGetImageGamma(img.wand)
        if gamma > 0:
            img.gamma(gamma / SRGB_GAMMA)
    out = {}
    if keep_metadata:
        if "icc" in img.profiles:
            out["icc_profile"] = img.profiles["icc"]
        if "exif" in img.profiles:
            out["exif"] = _exif_upright(img.profiles["exif"])
    return out


def _exif_upright(raw):
    """EXIF with orientation 1: the pixels are upright now."""
    exif = PILImage.Exif()
    exif.load(raw)
    exif[0x0112] = 1
    return exif.tobytes()


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
    """Pixels from the embedded ICC profile to sRGB, through ImageMagick's colour management (LCMS).

    A profile that does not fit the pixels (an RGB profile on a grey JPEG) or does not parse
    is dropped, as browsers ignore it: False, and the caller converts by colourspace alone.
    """
    blob = ctypes.create_string_buffer(SRGB_PROFILE, len(SRGB_PROFILE))
    if library.MagickProfileImage(img.wand, b"icc", blob, len(SRGB_PROFILE)):
        return True
    library.MagickClearException(img.wand)
    removed = library.MagickRemoveImageProfile(img.wand, b"icc", ctypes.byref(ctypes.c_ulong()))
    if removed:
        library.MagickRelinquishMemory(removed)
    return False


# MagickBooleanType (*)(const char *text, MagickOffsetType offset, MagickSizeType span, void *client_data)
_MONITOR = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_char_p, ctypes.c_longlong, ctypes.c_ulonglong, ctypes.c_void_p
)
library.MagickSetProgressMonitor.argtypes = [ctypes.c_void_p, _MONITOR, ctypes.c_void_p]
library.MagickSetProgressMonitor.restype = ctypes.c_void_p
library.MagickSetImageProgressMonitor.argtypes = [ctypes.c_void_p, _MONITOR, ctypes.c_void_p]
library.MagickSetImageProgressMonitor.restype = ctypes.c_void_p


@_MONITOR
def _monitor(text, offset, span, client_data):
    """Runs on the thread doing the work: 0 tells ImageMagick to stop."""
    return 0 if budget.expired() else 1


def _watch(img):
    """Let ImageMagick stop `img`'s reads (set before reading) and its operations when the budget is spent."""
    library.MagickSetProgressMonitor(img.wand, _monitor, None)
    if library.MagickGetNumberImages(img.wand):
        library.MagickSetImageProgressMonitor(img.wand, _monitor, None)


def _export(img, close=False):
    """The wand's current image as an 8-bit Pillow image (RGBX, or RGBA with alpha), in one buffer.

    MagickExportImagePixels writes straight into a bytearray laid out as Pillow keeps
    pixels (4 bytes each), which Pillow then maps without a copy. With `close`, the wand
    (8 bytes a pixel, the largest copy) is released before Pillow takes the pixels.
    JPEG and WebP encode RGBX as it is; the other encoders get RGB (pillow_codecs.encodable).
    """
    alpha = library.MagickGetImageAlphaChannel(img.wand)
    width = library.MagickGetImageWidth(img.wand)
    height = library.MagickGetImageHeight(img.wand)
    buf = bytearray(width * height * 4)
    target = (ctypes.c_char * len(buf)).from_buffer(buf)
    # "P": a pad byte, as in Pillow's RGBX.
    if not library.MagickExportImagePixels(
        img.wand, 0, 0, width, height, b"RGBA" if alpha else b"RGBP", _CHAR_PIXEL, target
    ):
        img.raise_exception()
    del target  # a ctypes view would keep the buffer alive
    if close:
        img.close()
    mode = "RGBA" if alpha else "RGBX"
    return PILImage.frombuffer(mode, (width, height), buf, "raw", mode, 0, 1)


def _opaque_dropped(im):
    """RGBA whose every pixel is opaque is RGB: smaller outputs, and JPEG where the class allows."""
    if im.mode == "RGBA" and im.getchannel("A").getextrema()[0] == 255:
        return im.convert("RGB")
    return im


def check(data, info):
    """Decode the original fully once, so a damaged one is refused before it is stored."""
    if info.format == "jpeg":
        # ImageMagick's coder swallows libjpeg's warnings about corrupt data (it fills the
        # rest of the image with grey and reports success); Pillow's decoder refuses the
        # same file. A draft (DCT-scaled) decode still reads every scan.
        with PILImage.open(io.BytesIO(data)) as im:
            im.draft("RGB", (64, 64))
            im.load()
        return
    if info.format in ("avif", "heic") or (info.format == "tiff" and _jpeg_in_tiff(data)):
        decode(data, info)
        return
    with Image() as img:  # read as decode() reads, warnings included
        _watch(img)
        img.read(blob=data, format=MAGICK_FORMATS[info.format])
        budget.check()
