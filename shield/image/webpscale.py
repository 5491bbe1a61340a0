"""WebP decoded straight to a smaller size by libwebp's own scaler (shrink-on-load).

A variant of a 24 MP WebP otherwise decodes all 24 MP first, and neither ImageMagick 6's
WebP coder nor Pillow exposes libwebp's advanced decoding options. With use_scaling, libwebp
averages the rows down while it decodes, so the full-size picture never exists in memory.

ctypes against the system libwebp. The structs below copy decode.h of libwebp 1.2.x,
decoder ABI 0x0209, padding included: libwebp checks the ABI's major byte when the config
is initialised and refuses a mismatch, which reads here as "no library". ctypes releases
the GIL for the whole decode, so several threads decode in parallel.
"""

import ctypes
import ctypes.util
import functools

from PIL import Image

WEBP_DECODER_ABI_VERSION = 0x0209  # decode.h, libwebp 1.0.0 to 1.2.x
VP8_STATUS_OK = 0
# A damaged or truncated file, as opposed to a limit or a feature that the normal path may handle.
DAMAGED = {3: "WebP bitstream error", 7: "WebP file truncated"}
MODE_RGB, MODE_RGBA = 0, 1  # WEBP_CSP_MODE: packed bytes, alpha not premultiplied


class _Features(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("has_alpha", ctypes.c_int),
        ("has_animation", ctypes.c_int),
        ("format", ctypes.c_int),  # 0 mixed or undefined, 1 lossy, 2 lossless
        ("pad", ctypes.c_uint32 * 5),
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("y", "u", "v", "a")),
        *((name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class _BufferUnion(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),  # a C enum: int-sized
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _BufferUnion),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        *(
            (name, ctypes.c_int)
            for name in (
                "bypass_filtering",
                "no_fancy_upsampling",
                "use_cropping",
                "crop_left",
                "crop_top",
                "crop_width",
                "crop_height",
                "use_scaling",
                "scaled_width",
                "scaled_height",
                "use_threads",
                "dithering_strength",
                "flip",
                "alpha_dithering_strength",
            )
        ),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


@functools.cache
def _libwebp():
    """The system libwebp with typed entry points, or None. Cached, failure included.

    Two threads racing here both dlopen the same library; either result is the same.
    """
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("webp") or "libwebp.so.7")
        init, features, decode = (
            lib.WebPInitDecoderConfigInternal,
            lib.WebPGetFeaturesInternal,
            lib.WebPDecode,
        )
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.POINTER(_Config), ctypes.c_int], ctypes.c_int
    features.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Features), ctypes.c_int]
    features.restype = ctypes.c_int
    decode.argtypes, decode.restype = (
        [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Config)],
        ctypes.c_int,
    )
    probe = _Config()
    if not init(ctypes.byref(probe), WEBP_DECODER_ABI_VERSION):
        return None  # another decoder ABI: these structs would not match it
    return lib


def size_of(data: bytes) -> tuple[int, int, bool, bool] | None:
    """(width, height, has_alpha, has_animation) from the header, or None if unreadable or no libwebp."""
    lib = _libwebp()
    if lib is None:
        return None
    feat = _Features()
    data = bytes(data)
    if lib.WebPGetFeaturesInternal(data, len(data), ctypes.byref(feat), WEBP_DECODER_ABI_VERSION):
        return None
    return feat.width, feat.height, bool(feat.has_alpha), bool(feat.has_animation)


def decode_scaled(data: bytes, width: int, height: int) -> Image.Image | None:
    """A still WebP decoded by libwebp straight to width x height: RGB, or RGBA if it has alpha.

    Sizes are as stored (before any EXIF orientation) and each side is scaled on its own:
    keep the aspect ratio yourself. Reductions only: libwebp's rescaler averages areas when
    it shrinks but only interpolates when it enlarges, which Pillow does better.

    None means "use the normal path": no usable libwebp, an animation, a side outside
    1..source, or libwebp declining (unsupported feature, out of memory).
    Raises ValueError for a damaged or truncated file, or one that is not WebP; a decode
    that failed half way is never returned as an image.
    """
    lib = _libwebp()
    if lib is None:
        return None
    data = bytes(data)
    config = _Config()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), WEBP_DECODER_ABI_VERSION):
        return None
    status = lib.WebPGetFeaturesInternal(
        data, len(data), ctypes.byref(config.input), WEBP_DECODER_ABI_VERSION
    )
    if status != VP8_STATUS_OK:
        return _declined(status)
    source = config.input
    if source.has_animation or not (1 <= width <= source.width and 1 <= height <= source.height):
        return None
    mode, channels = ("RGBA", 4) if source.has_alpha else ("RGB", 3)
    # Decoded into memory we own: libwebp never allocates the output, so there is nothing
    # to free (WebPFreeDecBuffer) and nothing to copy out of a C buffer.
    pixels = bytearray(width * height * channels)
    out = config.output
    out.colorspace = MODE_RGBA if channels == 4 else MODE_RGB
    out.is_external_memory = 1
    view = (ctypes.c_uint8 * len(pixels)).from_buffer(pixels)  # also pins the bytearray's size
    out.u.RGBA.rgba = ctypes.addressof(view)
    out.u.RGBA.stride = width * channels
    out.u.RGBA.size = len(pixels)
    opts = config.options
    opts.use_scaling, opts.scaled_width, opts.scaled_height = 1, width, height
    status = lib.WebPDecode(data, len(data), ctypes.byref(config))
    if status != VP8_STATUS_OK:
        return _declined(status)
    if (out.width, out.height) != (width, height):
        return None
    # RGBA is mapped without a copy; Pillow keeps RGB as 4 bytes a pixel, so RGB is
    # unpacked once, at the small size.
    return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)


def _declined(status):
    if status in DAMAGED:
        raise ValueError(DAMAGED[status])
    return None


def shrink_on_load(data, info, need):
    """A still WebP shrunk on load by libwebp's scaler to twice the size needed (Lanczos
    does the rest), or None for ImageMagick's full decode: an animation, a reduction under
    2x, a lossless file (libwebp's scaler gets lossless pixels wrong), a file with an ICC
    profile or EXIF (ImageMagick converts and orients those), or one libwebp finds damaged
    (ImageMagick then refuses it as it would at every other size)."""
    need_w, need_h = need
    if info.animated or need_w * 2 > info.width or need_h * 2 > info.height:
        return None
    if not _plain_lossy_webp(data):
        return None
    width = need_w * 2
    height = max(need_h * 2, round(info.height * width / info.width))
    try:
        return decode_scaled(data, width, min(height, info.height))
    except ValueError:
        return None


def _plain_lossy_webp(data):
    """Whether the WebP's image is lossy (VP8, with or without an alpha chunk), with no ICCP or EXIF chunk."""
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        if kind in (b"ICCP", b"EXIF", b"VP8L", b"ANIM"):
            return False
        if kind == b"VP8 ":
            return True
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little") + (data[pos + 4] & 1)
    return False
