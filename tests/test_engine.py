"""The engine through real ImageMagick: formats, orientation, colour, alpha, animation."""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image, JpegImagePlugin

from shield.errors import OriginError, SourceTooLarge
from shield.image import engine, geometry, probe
from tests import imaging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_running_out_of_pixel_cache_is_source_too_large():
    import wand.resource

    body = imaging.encode(Image.new("RGB", (1000, 1000), (10, 120, 200)), "JPEG")
    info = probe.probe(body, 10**9)
    saved = {name: wand.resource.limits[name] for name in ("memory", "disk")}
    try:
        wand.resource.limits["memory"] = 1 << 20
        wand.resource.limits["disk"] = 1 << 20
        with pytest.raises(SourceTooLarge):
            engine.render(body, info, geometry.plan(1000, 1000, 500, None, "inside"), "webp", 80)
    finally:
        for name, value in saved.items():
            wand.resource.limits[name] = value
    render(body, 500, None, "inside", "webp")  # the limits are back


def _photo_jpeg(size, **kw):
    return imaging.encode(
        Image.open(io.BytesIO(imaging.sample("coffee.png"))).convert("RGB").resize(size), "JPEG", **kw
    )


@pytest.mark.parametrize("width", [300, None])  # resized, and passed through at full size
def test_jpeg_below_q90_subsamples_chroma(width):
    body = _photo_jpeg((600, 400), quality=95, subsampling=0)  # a 4:4:4 original
    out, im = render(body, width, None, "inside", "jpeg", q=80)
    assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
    _out95, im95 = render(body, width, None, "inside", "jpeg", q=95)
    assert JpegImagePlugin.get_sampling(im95) == 0  # 4:4:4 at high quality
    # What a 4:4:4 encode of the same variant weighed (ImageMagick keeps a 4:4:4 source's sampling).
    from wand.image import Image as WandImage

    with WandImage(blob=body, format="JPEG") as img:
        if width:
            img.resize(width, width * 2 // 3, filter="lanczos")
        img.strip()
        img.compression_quality = 80
        img.options["jpeg:optimize-coding"] = "true"
        img.interlace_scheme = "line"
        full_chroma = img.make_blob("JPEG")
    assert JpegImagePlugin.get_sampling(imaging.decode(full_chroma)) == 0
    assert len(out.body) < 0.85 * len(full_chroma)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("resized", [True, False])
def test_turned_jpeg_is_cropped_where_planned(orientation, resized):
    body = imaging.exif_rotated_jpeg(orientation, (300, 160))
    upright = imaging.decode(body).transpose(_UPRIGHT[orientation])
    box = (90, 90) if resized else (upright.width, upright.height * 2 // 3)  # else cropped only
    plan = geometry.plan(*upright.size, *box, "cover")
    assert ((plan.resize_w, plan.resize_h) == upright.size) is not resized
    expected = upright.resize((plan.resize_w, plan.resize_h), Image.Resampling.LANCZOS).crop(
        (plan.crop_x, plan.crop_y, plan.crop_x + plan.crop_w, plan.crop_y + plan.crop_h)
    )
    _out, im = render(body, *box, "cover", "png")
    assert im.size == box
    assert imaging.ssim(im, expected) > 0.9


_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.mark.parametrize(("fmt", "corner"), [("png", (0, 0, 0, 0)), ("jpeg", (255, 255, 255, 255))])
def test_resized_and_padded_keeps_the_format_background(fmt, corner):
    body = imaging.encode(imaging.halves(200, 100), "PNG")
    _out, im = render(body, 120, 120, "contain", fmt)
    assert im.size == (120, 120)
    rgba = im.convert("RGBA")
    assert imaging.close_color(rgba.getpixel((60, 2)), corner, 12)  # the pad above
    assert imaging.close_color(rgba.getpixel((20, 60))[:3], (220, 30, 30), 30)  # the picture
    assert imaging.close_color(rgba.getpixel((100, 60))[:3], (30, 30, 220), 30)


_PEAK_RSS = textwrap.dedent(
    """
    import json, sys, threading
    from shield.image import engine, geometry, probe

    def mb(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) // 1024 for line in fh if line.startswith(key))

    body = open(sys.argv[1], "rb").read()
    info = probe.probe(body, 10**9)
    grown = {}

    def transforms():
        # One long-lived thread, as a transform pool's (glibc gives it an arena of its own).
        for fmt in ("jpeg", "webp"):  # load the coders first
            engine.render(body, info, geometry.plan(*info.oriented_size, 64, None, "inside"), fmt, 80)
        for width, fmt in json.loads(sys.argv[2]):
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the peak restarts from the current resident set
            start = mb("VmRSS")
            plan = geometry.plan(*info.oriented_size, width, None, "inside", max_pixels=25_000_000)
            engine.render(body, info, plan, fmt, 80)
            grown[f"{width} {fmt}"] = mb("VmHWM") - start
            grown[f"{width} {fmt} left"] = mb("VmRSS") - start

    worker = threading.Thread(target=transforms)
    worker.start()
    worker.join()
    print(json.dumps(grown))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
def test_avif_encode_runs_after_the_wand_is_released(tmp_path):
    """A 5120x2880 JPEG to a full-size AVIF: libavif's encoder needs ~20 bytes a pixel, so
    ImageMagick's copy (8 bytes a pixel) is released before it starts. Holding it, the
    worker grew by ~590 MB; without, ~430 MB. Afterwards the memory goes back."""
    source = tmp_path / "large.jpg"
    source.write_bytes(_photo_jpeg((5120, 2880), quality=90))
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(source), json.dumps([[2560, "jpeg"], [None, "avif"]])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    grown = json.loads(run.stdout)
    assert grown["None avif"] < 510, grown
    # What the transform freed goes back to the system (it stayed, ~190 MB, without malloc_trim).
    assert grown["None avif left"] < 110, grown


@pytest.mark.parametrize(
    ("fmt", "handed"), [("jpeg", "RGBX"), ("webp", "RGBX"), ("avif", "RGB"), ("png", "RGB")]
)
def test_opaque_pixels_reach_jpeg_and_webp_as_decoded(encodes, fmt, handed):
    """ImageMagick's export is RGBX (4 bytes a pixel, mapped without a copy): libjpeg and
    libwebp read it as it is, and the bytes are those of the same pixels as RGB; the other
    encoders get RGB."""
    from shield.image import pillow_codecs  # noqa: PLC0415

    out, decoded = render(imaging.sample("rocket.jpg"), 320, None, "inside", fmt)
    assert decoded.size == (out.width, out.height) and out.width == 320
    ((im, out_format, setting, kw),) = encodes
    assert im.mode == handed and out_format == fmt
    assert pillow_codecs.encode(im.convert("RGB"), fmt, setting, **kw) == out.body
