"""The engine through real ImageMagick: formats, orientation, colour, alpha, animation."""

import io

import pytest
from PIL import Image

from shield import engine, geometry, probe
from shield.errors import OriginError
from tests import imaging


def render(body, w=None, h=None, fit="cover", fmt="jpeg", q=80):
    info = probe.probe(body, 10**9)
    src_w, src_h = info.oriented_size
    plan = geometry.plan(src_w, src_h, w, h, fit)
    out = engine.render(body, info, plan, fmt, q)
    return out, imaging.decode(out.body)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_each_format_decodes_at_the_planned_size(fmt):
    out, im = render(imaging.sample("rocket.jpg"), 300, 200, "cover", fmt)
    assert im.format == {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF", "png": "PNG"}[fmt]
    assert im.size == (300, 200) == (out.width, out.height)


@pytest.mark.parametrize("fmt", ["webp", "avif", "png"])
def test_alpha_survives(fmt):
    out, im = render(imaging.encode(imaging.rgba_logo(120, 80), "PNG"), 60, 40, "inside", fmt)
    assert im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    rgba = im.convert("RGBA")
    assert rgba.getpixel((1, 1))[3] < 20  # the transparent corner stays transparent
    assert rgba.getpixel((30, 20))[3] > 235  # the red middle stays opaque and red
    assert imaging.close_color(rgba.getpixel((30, 20))[:3], (255, 0, 0), 40)


def test_jpeg_of_a_transparent_source_is_flattened_on_white():
    _out, im = render(imaging.encode(imaging.rgba_logo(120, 80), "PNG"), 60, 40, "inside", "jpeg")
    assert imaging.close_color(im.getpixel((1, 1)), (255, 255, 255), 12)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_comes_out_upright(orientation):
    body = imaging.exif_rotated_jpeg(orientation, (200, 100))
    _out, im = render(body, fmt="png", w=None, h=None)
    expected = imaging.halves(200, 100).transpose(
        {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}[
            orientation
        ]
    )
    assert im.size == expected.size
    assert imaging.ssim(im, expected) > 0.9
    assert "exif" not in im.info


def test_cmyk_jpeg_is_converted_to_srgb():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red ink
    _out, im = render(imaging.encode(cmyk, "JPEG", quality=95), 32, 32, "cover", "jpeg")
    assert im.mode == "RGB"
    r, g, b = imaging.mean_color(im)
    assert r > 180 and g < 90 and b < 90


def test_sixteen_bit_png_becomes_eight_bit():
    from wand.color import Color
    from wand.image import Image as WandImage

    with WandImage(width=64, height=48, background=Color("rgb(200,50,50)")) as img:
        img.depth = 16
        body = img.make_blob("png48")
    assert body[24] == 16  # bit depth in IHDR
    out, im = render(body, 32, None, "inside", "png")
    assert out.body[24] <= 8
    assert imaging.close_color(imaging.mean_color(im), (200, 50, 50), 6)


def test_metadata_is_stripped():
    body = imaging.exif_rotated_jpeg(1, (200, 100))
    out, im = render(body, 100, None, "inside", "jpeg")
    assert b"Exif" not in out.body[:200] and "exif" not in im.info


@pytest.mark.parametrize(("fmt", "frames"), [("webp", 5), ("gif", 5), ("jpeg", 1), ("png", 1)])
def test_animated_gif_keeps_animation_where_the_format_can(fmt, frames):
    out, im = render(imaging.animated_gif(5, (40, 30)), 20, None, "inside", fmt)
    assert getattr(im, "n_frames", 1) == frames
    assert im.size == (20, 15)


def test_shrink_on_load_keeps_quality():
    big = Image.open(io.BytesIO(imaging.sample("coffee.png"))).convert("RGB").resize((1800, 1200))
    body = imaging.encode(big, "JPEG", quality=92)
    out, im = render(body, 300, None, "inside", "png")
    reference = big.resize((300, 200), Image.Resampling.LANCZOS)
    assert im.size == (300, 200)
    assert imaging.ssim(im, reference) > 0.97


@pytest.mark.parametrize("name", ["rocket.jpg", "coffee.png"])
def test_truncated_files_are_seen_as_incomplete(name):
    body = imaging.sample(name)
    kind = probe.probe(body, 10**9).format
    assert probe.is_complete(body, kind)
    for cut in (len(body) // 2, len(body) - 20):
        assert not probe.is_complete(body[:cut], kind)


def test_complete_markers_of_other_formats():
    for fmt in ("WEBP", "AVIF", "GIF"):
        body = imaging.encode(imaging.halves(64, 48), fmt)
        kind = probe.sniff(body)
        assert probe.is_complete(body, kind)
        assert not probe.is_complete(body[: len(body) // 2], kind)


def test_bytes_that_do_not_decode_raise_origin_error():
    body = imaging.sample("coffee.png")
    damaged = body[:100] + bytes(len(body) - 100)  # right header, zeroed image data
    with pytest.raises(OriginError):
        engine.decode_check(damaged, probe.probe(damaged, 10**9))
    engine.decode_check(body, probe.probe(body, 10**9))  # the whole file passes


def test_policy_sets_no_process_time_limit():
    """ImageMagick 6's time limit counts the process's whole life and then exits it."""
    import wand.resource

    assert wand.resource.limits["time"] > 10**9
    assert wand.resource.limits["area"] == 400_000_000 and wand.resource.limits["memory"] == 1 << 30
