"""What Pillow does for the engine: the encoders, and HEIF's transformative properties.

Pillow only: the wand stays in engine.py, which hands these 8-bit Pillow images.
Every setting here is the encoder's own scale (libjpeg's, libwebp's, libavif's
quality); shield.image.quality maps the one `q` of a URL onto them.
"""

import io

from PIL import Image

# imir's axis (ISO/IEC 23008-12): 0 mirrors top to bottom, 1 left to right.
MIRRORS = {0: Image.Transpose.FLIP_TOP_BOTTOM, 1: Image.Transpose.FLIP_LEFT_RIGHT}
AVIF_SPEED = 8  # libavif 0-10
JXL_EFFORT = 4  # libjxl 1-9: 4 is ~2x faster than the default 7 for ~3% more bytes
WEBP_METHOD = 4  # libwebp 0-6: 4 is its own default balance
PNG_COMPRESS_LEVEL = 6  # zlib's default balance
PROGRESSIVE_MIN_PIXELS = 10_000  # below this a progressive JPEG is larger, and shows nothing sooner


def heif_transformed(im, ops):
    """What libavif hands back is the coded image: apply clap, irot and imir as a viewer must."""
    for op in ops:
        if op[0] == "clap":
            x, y, w, h = op[1:]
            im = im.crop((x, y, x + w, y + h))
        elif op[0] == "irot":
            im = im.rotate(90 * op[1], expand=True)  # counter-clockwise, as irot counts
        elif op[0] == "imir":
            im = im.transpose(MIRRORS[op[1]])
    return im


def encode(im, fmt, setting, *, avif_speed=AVIF_SPEED, lossy_tiny=False, **metadata):
    """`im` (8-bit RGB or RGBA, or L/LA) as `fmt`, at the encoder's own quality `setting`.

    metadata: icc_profile and exif bytes, kept when the project asks for them.
    """
    out = io.BytesIO()
    if fmt == "jpeg":
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im.save(
            out,
            "JPEG",
            quality=setting,
            optimize=True,
            # 4:2:0 (libjpeg's default) below 90: ~30 % fewer bytes at the same luma.
            subsampling="4:2:0" if setting < 90 else "4:4:4",
            progressive=im.width * im.height >= PROGRESSIVE_MIN_PIXELS and not lossy_tiny,
            **metadata,
        )
    elif fmt == "webp":
        im.save(out, "WEBP", quality=setting, method=6 if lossy_tiny else WEBP_METHOD, **metadata)
    elif fmt == "avif":
        im.save(out, "AVIF", quality=setting, speed=avif_speed, **metadata)
    elif fmt == "png":
        im.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL, **metadata)
    else:
        _load_jxl()
        im.save(out, "JXL", quality=setting, effort=JXL_EFFORT, **metadata)
    return out.getvalue()


def _load_jxl():
    """JPEG XL through pillow-jxl-plugin (Pillow has no JPEG XL coder of its own): registered on import."""
    import pillow_jxl  # noqa: F401, PLC0415 - only projects whose format_order lists jxl need it
