"""What Pillow does for the engine: the encoders, and HEIF's transformative properties.

Pillow only: the wand stays in engine.py, which hands these 8-bit Pillow images.
Every setting here is the encoder's own scale (libjpeg's, libwebp's, libavif's
quality); shield.image.quality maps the one `q` of a URL onto them.
"""

import io

from PIL import Image, ImageChops

# imir's axis (ISO/IEC 23008-12): 0 mirrors top to bottom, 1 left to right.
MIRRORS = {0: Image.Transpose.FLIP_TOP_BOTTOM, 1: Image.Transpose.FLIP_LEFT_RIGHT}
AVIF_SPEED = 8  # libavif 0-10
# AVIF chroma: full (4:4:4) by default. At equal SSIMULACRA2 it takes 0.64x a JPEG's bytes
# where 4:2:0 takes 0.65x (bench/quality.py), for about 1.2x the encode time. Outputs of
# engine.LARGE_AVIF_PIXELS and more use 4:2:0: libaom needs a third more memory for 4:4:4.
AVIF_SUBSAMPLING = "4:4:4"
LARGE_AVIF_SUBSAMPLING = "4:2:0"
JXL_EFFORT = 4  # libjxl 1-9: 4 is ~2x faster than the default 7 for ~3% more bytes
WEBP_METHOD = 4  # libwebp 0-6: 4 is its own default balance
PNG_COMPRESS_LEVEL = 6  # zlib's default balance
GIF_TRANSPARENT = 255  # the palette index of transparency in GIF outputs
PROGRESSIVE_MIN_PIXELS = 10_000  # below this a progressive JPEG is larger, and shows nothing sooner
# The encoders that read Pillow's RGBX (an opaque decode, 4 bytes a pixel) as it is: the
# others need RGB, a copy of the same size.
TAKES_RGBX = frozenset({"jpeg", "webp"})


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


def encodable(im, fmt):
    """`im` in a mode `fmt`'s encoder takes: RGBX stays RGBX for JPEG and WebP, no copy made."""
    if im.mode == "RGBX" and fmt not in TAKES_RGBX:
        return im.convert("RGB")
    return im


def encode(
    im,
    fmt,
    setting,
    *,
    avif_speed=AVIF_SPEED,
    avif_subsampling=AVIF_SUBSAMPLING,
    lossy_tiny=False,
    **metadata,
):
    """`im` (8-bit RGB, RGBX or RGBA, or L/LA) as `fmt`, at the encoder's own quality `setting`.

    avif_subsampling applies to colour images; a grey one stays 4:0:0 (luma only).

    metadata: icc_profile and exif bytes, kept when the project asks for them.
    """
    out = io.BytesIO()
    im = encodable(im, fmt)
    if fmt == "jpeg":
        im = flattened(im)
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
        chroma = {"subsampling": avif_subsampling} if im.mode in ("RGB", "RGBA") else {}
        im.save(out, "AVIF", quality=setting, speed=avif_speed, **chroma, **metadata)
    elif fmt == "png":
        _palette_if_exact(im).save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL, **metadata)
    elif fmt == "gif":
        gif_frame(im).save(out, "GIF", optimize=False)
    else:
        load_jxl()
        im.save(out, "JXL", quality=setting, effort=JXL_EFFORT, **metadata)
    return out.getvalue()


def flattened(im):
    """Transparency composited on white (for JPEG, and analyses without alpha)."""
    if im.mode in ("RGB", "RGBX", "L"):
        return im
    im = im.convert("RGBA")
    white = Image.new("RGB", im.size, (255, 255, 255))
    white.paste(im, mask=im.getchannel("A"))
    return white


def encode_animation(frames, fmt, setting, durations, loop, **metadata):
    """Frames of one size as an animated WebP or GIF; `durations` in milliseconds."""
    out = io.BytesIO()
    options = {"save_all": True, "append_images": frames[1:], "duration": durations, "loop": loop}
    if fmt == "webp":
        frames[0].save(out, "WEBP", quality=setting, method=WEBP_METHOD, **options, **metadata)
    else:
        # Every frame is a full canvas: each replaces the one before (disposal 2).
        frames = [gif_frame(frame) for frame in frames]
        options["append_images"] = frames[1:]
        frames[0].save(out, "GIF", disposal=2, optimize=False, **options)
    return out.getvalue()


def gif_frame(im):
    """One frame as GIF's 256 colours: 255 from the image (no dithering), index 255 transparent
    where alpha is under half. (Pillow's own conversion loses transparency that appears
    only in later frames of an animation.)"""
    if im.mode != "RGBA":
        return im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    indexed = im.convert("RGB").quantize(255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = indexed.getpalette()[: 255 * 3]
    indexed.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
    indexed.paste(GIF_TRANSPARENT, mask=im.getchannel("A").point(lambda a: 255 if a < 128 else 0))
    indexed.info["transparency"] = GIF_TRANSPARENT
    return indexed


def _palette_if_exact(im):
    """An opaque PNG with at most 256 colours as a palette PNG (a chart: often half the bytes), when exact.

    Only RGB: Pillow writes an RGBA palette's alpha into no tRNS chunk, so a transparent
    image would come out opaque."""
    if im.mode != "RGB" or im.getcolors(256) is None:
        return im
    indexed = im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    if ImageChops.difference(indexed.convert(im.mode), im).getbbox() is not None:
        return im
    return indexed


def load_jxl():
    """JPEG XL through pillow-jxl-plugin (Pillow has no JPEG XL coder of its own): registered on import."""
    import pillow_jxl  # noqa: F401, PLC0415 - only projects whose format_order lists jxl need it
