"""What Pillow does for the engine: AVIF and JPEG XL encoding, and HEIF's transformative properties.

Pillow only: the wand stays in engine.py, which hands these 8-bit Pillow images.
"""

import io

from PIL import Image

# imir's axis (ISO/IEC 23008-12): 0 mirrors top to bottom, 1 left to right.
MIRRORS = {0: Image.Transpose.FLIP_TOP_BOTTOM, 1: Image.Transpose.FLIP_LEFT_RIGHT}


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


def encode(im, fmt, quality, avif_speed, jxl_effort, **metadata):
    out = io.BytesIO()
    if fmt == "avif":
        im.save(out, "AVIF", quality=quality, speed=avif_speed, **metadata)
    else:
        _load_jxl()
        im.save(out, "JXL", quality=quality, effort=jxl_effort, **metadata)
    return out.getvalue()


def _load_jxl():
    """JPEG XL through pillow-jxl-plugin (Pillow has no JPEG XL coder of its own): registered on import."""
    import pillow_jxl  # noqa: F401, PLC0415 - only projects whose format_order lists jxl need it
