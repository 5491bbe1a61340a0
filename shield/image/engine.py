"""Pixels: decode (decode.py), resize, crop, letterbox, encode (pillow_codecs.py).

Every function here is CPU-bound and is called from the transform pool's OS
threads, never on the event loop. After decoding, the pixels are 8-bit Pillow
images end to end: one resampler (Pillow's Lanczos, after a box pre-shrink for
large reductions) and Pillow's encoders for every output format of a URL.
"""

import ctypes
import io
from dataclasses import dataclass

from PIL import Image as PILImage

from . import budget, decode, geometry, pillow_codecs
from . import quality as quality_scale
from .negotiate import ALPHA_FORMATS, ANIMATED_FORMATS, CONTENT_TYPES

RESIZE_FILTER = PILImage.Resampling.LANCZOS
# Reductions beyond 3x first shrink by an integer factor with a box filter, then
# Lanczos the rest: Pillow's documented point past which the result does not differ
# visibly from a full Lanczos, at a fraction of its cost.
REDUCING_GAP = 3.0
# After a transform this large, freed memory is handed back to the system at once.
TRIM_AFTER_PIXELS = 4_000_000
# AVIFs this large are encoded at libaom's speed 8 whatever the table chose, and with 4:2:0
# chroma: on a 14.7 MP image speed 7 takes ~55 MB more (libaom needs ~23 bytes a pixel either
# way) and 1.7x the time; 4:4:4 takes ~31 bytes a pixel. The table has their own column.
LARGE_AVIF_PIXELS, LARGE_AVIF_SPEED = 4_000_000, 8
SRGB_PROFILE = decode.SRGB_PROFILE


# Allocations of 4 MiB or more (decoded images, encoder frames) are mapped and unmapped on
# their own, so each goes back to the system when freed. glibc's default threshold rises
# to 32 MiB after the first large free; the buffers of a 15 MP transform then stayed in
# the heap and a worker kept ~60 MB more after each, which the next transform added to
# (the second of two 5120x2880 transforms peaked at 322 MB, not 264).
MMAP_THRESHOLD = 4 * 1024 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _load_libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


_libc = _load_libc()
_malloc_trim = getattr(_libc, "malloc_trim", None)
if _libc is not None and hasattr(_libc, "mallopt"):
    _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _give_back_memory():
    """glibc keeps what a transform thread freed in that thread's arena, where the
    next request cannot reuse it as one piece: a full-size AVIF of a 15-megapixel
    photo left a worker ~190 MB larger for good. malloc_trim returns it (~1 ms)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


@dataclass(frozen=True)
class Rendered:
    body: bytes
    format: str
    width: int
    height: int

    @property
    def content_type(self):
        return CONTENT_TYPES[self.format]


def render(
    data,
    info,
    plan,
    out_format,
    quality,
    lossy_tiny=False,
    keep_metadata=False,
    format_quality=None,
    opaque_format=None,
    avif_max_pixels=0,
    decodes=None,
):
    """Make the variant: `plan` is geometry.Plan over the upright source.

    `quality` is the one scale of a URL's q (a JPEG's); each encoder gets its own matching
    setting (quality.py), or the project's `format_quality` one. `opaque_format` replaces
    `out_format` when the decoded pixels turn out to have no transparency (PNG chosen for a
    header's alpha channel that no pixel uses: JPEG is a tenth of its bytes).

    `decodes` (recent.RecentDecodes) hands back a recent decode of the same bytes at the same
    scale rather than decoding again.

    `keep_metadata` keeps the source's EXIF (orientation reset, since the pixels
    are turned upright) and its colour profile (sRGB once converted). An
    animation stays one where `out_format` can animate.

    Raises OriginError when the bytes do not decode, SourceTooLarge when
    ImageMagick's resource limits refuse the image, TransformTimeout when the
    transform_timeout budget runs out.
    """
    try:
        with decode.errors():
            animate = info.animated and out_format in ANIMATED_FORMATS
            need = (plan.resize_w, plan.resize_h)
            if decodes is None:
                decoded, shared = decode.decode(data, info, need, animate, keep_metadata), False
            else:
                decoded, shared = decodes.decode(data, info, need, animate, keep_metadata)
            frames = list(decoded.frames) if shared else decoded.frames
            if opaque_format and all(frame.mode != "RGBA" for frame in frames):
                out_format = opaque_format
            out_format = within_avif_limit(out_format, plan, avif_max_pixels)
            keep_alpha = out_format in ALPHA_FORMATS
            for index in range(len(frames)):  # in place: each decoded frame is freed once planned
                planned = apply_plan(frames[index], plan, keep_alpha)
                if shared and planned is frames[index]:
                    planned = planned.copy()  # saving sets attributes on the image: never on a shared one
                frames[index] = pillow_codecs.encodable(planned, out_format)
                budget.check()
            avif_speed, avif_subsampling, large = _avif_profile(plan)
            setting = quality_scale.setting(out_format, quality, format_quality, avif_speed, large)
            if len(frames) > 1:
                body = pillow_codecs.encode_animation(
                    frames, out_format, setting, decoded.durations, decoded.loop, **decoded.metadata
                )
            else:
                body = pillow_codecs.encode(
                    frames[0],
                    out_format,
                    setting,
                    avif_speed=avif_speed,
                    avif_subsampling=avif_subsampling,
                    lossy_tiny=lossy_tiny,
                    **decoded.metadata,
                )
            return Rendered(body, out_format, plan.canvas_w, plan.canvas_h)
    finally:
        if max(info.width * info.height, plan.canvas_w * plan.canvas_h) >= TRIM_AFTER_PIXELS:
            _give_back_memory()


def within_avif_limit(fmt, plan, avif_max_pixels):
    """The format to encode: WebP for an AVIF over `avif_max_pixels` (0: no limit)."""
    if fmt == "avif" and avif_max_pixels and plan.canvas_w * plan.canvas_h > avif_max_pixels:
        return "webp"
    return fmt


def _avif_profile(plan):
    """(speed, chroma subsampling, large) of an AVIF of this size: large ones are faster and leaner."""
    if plan.canvas_w * plan.canvas_h >= LARGE_AVIF_PIXELS:
        return max(quality_scale.AVIF_SPEED, LARGE_AVIF_SPEED), pillow_codecs.LARGE_AVIF_SUBSAMPLING, True
    return quality_scale.AVIF_SPEED, pillow_codecs.AVIF_SUBSAMPLING, False


def decode_check(data, info):
    """Decode the original fully once, so a damaged one is refused before it is stored."""
    with decode.errors():
        decode.check(data, info)


def apply_plan(im, plan, keep_alpha, resample=RESIZE_FILTER):
    """Resize, crop and letterbox one frame as `plan` says."""
    if im.size != (plan.resize_w, plan.resize_h):
        im = im.resize((plan.resize_w, plan.resize_h), resample, reducing_gap=REDUCING_GAP)
    if (plan.crop_w, plan.crop_h) != (plan.resize_w, plan.resize_h):
        im = im.crop((plan.crop_x, plan.crop_y, plan.crop_x + plan.crop_w, plan.crop_y + plan.crop_h))
    if (plan.canvas_w, plan.canvas_h) != (plan.crop_w, plan.crop_h):
        if keep_alpha:
            canvas = PILImage.new("RGBA", (plan.canvas_w, plan.canvas_h), (0, 0, 0, 0))
        else:
            canvas = PILImage.new("RGB", (plan.canvas_w, plan.canvas_h), (255, 255, 255))
            im = pillow_codecs.flattened(im)
        canvas.paste(im, ((plan.canvas_w - plan.crop_w) // 2, (plan.canvas_h - plan.crop_h) // 2))
        im = canvas
    return im


def analysis_pixels(data, info, max_side=400):
    """The upright sRGB image shrunk to at most `max_side` px, as an RGB array, and its scale.

    Face and saliency detection run on this copy, so a 5000 px photo costs
    little more than a 500 px one (JPEG shrink-on-load does most of the work).
    """
    src_w, src_h = info.oriented_size
    scale = min(1.0, max_side / max(src_w, src_h))
    small = geometry.plan(src_w, src_h, max(1, round(src_w * scale)), None, "inside")
    with decode.errors():
        im = decode.decode(data, info, (small.resize_w, small.resize_h)).frames[0]
        im = apply_plan(im, small, keep_alpha=False, resample=PILImage.Resampling.BILINEAR)
        rgb = _rgb_array(im)
    return rgb, small.resize_w / src_w


def variant_pixels(data, info, plan, max_side=32):
    """The variant `plan` describes, shrunk to at most `max_side` px, as an RGB array (BlurHash input)."""
    scale = min(1.0, max_side / max(plan.canvas_w, plan.canvas_h))
    with decode.errors():
        im = decode.decode(data, info, (plan.resize_w, plan.resize_h)).frames[0]
        im = apply_plan(im, plan, keep_alpha=False)
        size = (max(1, round(plan.canvas_w * scale)), max(1, round(plan.canvas_h * scale)))
        return _rgb_array(im.resize(size, PILImage.Resampling.BILINEAR))


def _rgb_array(im):
    """Pixels as an HxWx3 uint8 array, transparency flattened on white."""
    import numpy as np  # noqa: PLC0415 - only analyses and placeholders need it

    return np.asarray(pillow_codecs.flattened(im).convert("RGB")).copy()


def dimensions(body, fmt):
    """Width and height of an encoded image (tests and diagnostics)."""
    if fmt == "jxl":
        pillow_codecs.load_jxl()
    with PILImage.open(io.BytesIO(body)) as im:
        return im.size
