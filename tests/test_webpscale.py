"""WebP shrink-on-load: libwebp's scaler against Pillow's full decode, on real files."""

import ctypes
import io
import pathlib
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from shield.image import webpscale
from tests import imaging

AUTUMN = pathlib.Path(__file__).resolve().parents[2] / "shared" / "images" / "Autumn.jpg"
# Mean absolute difference per channel, on 0-255, against Pillow's decode reduced with BOX:
# both average areas, so what is left is rounding and lossy chroma upsampling (measured 0.2-0.9).
MAX_MEAN_DIFF = 3


def webp(im, **kw):
    return imaging.encode(im, "WEBP", **kw)


def mean_diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def pillow_reduced(data, size, mode):
    """Pillow's full decode reduced with BOX, in `mode` (RGBa compares alpha without halo noise)."""
    return imaging.decode(data).convert(mode).resize(size, Image.Resampling.BOX)


@pytest.fixture(scope="module")
def rocket():
    return Image.open(io.BytesIO(imaging.sample("rocket.jpg"))).convert("RGB")


@pytest.fixture(scope="module")
def autumn():
    if not AUTUMN.exists():
        pytest.skip(f"{AUTUMN} is not on this machine")
    return Image.open(AUTUMN).convert("RGB")


def with_alpha(im):
    """`im` fading from transparent on the left to opaque on the right."""
    out = im.copy()
    out.putalpha(Image.linear_gradient("L").rotate(90).resize(im.size))
    return out


def test_system_libwebp_is_usable():
    """ImageMagick links libwebp, so it is there wherever shield runs; None here means an ABI mismatch."""
    assert webpscale._libwebp() is not None


@pytest.mark.parametrize("photo", ["rocket", "autumn"])
@pytest.mark.parametrize("kw", [{"quality": 90}, {"lossless": True}], ids=["lossy", "lossless"])
def test_quarter_size_matches_pillow(request, photo, kw):
    im = request.getfixturevalue(photo)
    data = webp(im, **kw)
    size = (im.width // 4, im.height // 4)
    out = webpscale.decode_scaled(data, *size)
    assert out.mode == "RGB" and out.size == size
    assert mean_diff(out, pillow_reduced(data, size, "RGB")) < MAX_MEAN_DIFF


@pytest.mark.parametrize("kw", [{"quality": 90}, {"lossless": True}], ids=["lossy", "lossless"])
def test_alpha_comes_back_as_rgba(rocket, kw):
    data = webp(with_alpha(rocket), **kw)
    assert webpscale.size_of(data) == (rocket.width, rocket.height, True, False)
    size = (rocket.width // 4, rocket.height // 4)
    out = webpscale.decode_scaled(data, *size)
    assert out.mode == "RGBA" and out.size == size
    assert mean_diff(out.convert("RGBa"), pillow_reduced(data, size, "RGBa")) < MAX_MEAN_DIFF


def test_alpha_edges_are_averaged_without_a_dark_fringe():
    """Transparent black around a red square: the half-transparent edge stays pure red."""
    square = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    square.paste((255, 0, 0, 255), (101, 101, 301, 301))
    out = np.asarray(webpscale.decode_scaled(webp(square, lossless=True), 100, 100))
    edge = (out[..., 3] > 0) & (out[..., 3] < 255)
    assert edge.any()
    assert (out[edge][:, :3] == (255, 0, 0)).all()


def test_uneven_reduction_and_one_pixel(rocket):
    data = webp(rocket, quality=80)
    assert webpscale.decode_scaled(data, 300, 50).size == (300, 50)
    assert webpscale.decode_scaled(data, 1, 1).size == (1, 1)
    assert webpscale.decode_scaled(data, rocket.width, rocket.height).size == rocket.size


def test_not_a_reduction_takes_the_normal_path(rocket):
    data = webp(rocket, quality=80)
    assert webpscale.decode_scaled(data, rocket.width + 1, rocket.height) is None
    assert webpscale.decode_scaled(data, 0, 10) is None


def test_animated_takes_the_normal_path(rocket):
    small = rocket.resize((160, 106))
    out = io.BytesIO()
    small.save(out, "WEBP", save_all=True, append_images=[small.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    assert webpscale.size_of(out.getvalue())[3] is True
    assert webpscale.decode_scaled(out.getvalue(), 40, 26) is None


@pytest.mark.parametrize("kw", [{"quality": 90}, {"lossless": True}], ids=["lossy", "lossless"])
def test_truncated_file_raises_never_half_an_image(rocket, kw):
    data = webp(with_alpha(rocket), **kw)
    cuts = [*range(0, 64), *range(64, len(data), len(data) // 97)]
    for cut in cuts:
        with pytest.raises(ValueError, match="truncated"):
            webpscale.decode_scaled(data[:cut], 160, 106)


def test_not_webp_raises(rocket):
    with pytest.raises(ValueError, match="bitstream"):
        webpscale.decode_scaled(imaging.encode(rocket, "JPEG"), 160, 106)
    assert webpscale.size_of(b"RIFF\x00\x00\x00\x00WEBPnonsense") is None


def test_threads_decode_the_same_pixels(rocket):
    data = webp(rocket, quality=85)
    expected = webpscale.decode_scaled(data, 200, 133).tobytes()
    results = []
    workers = [
        threading.Thread(target=lambda: results.append(webpscale.decode_scaled(data, 200, 133).tobytes()))
        for _ in range(6)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [expected] * 6


@pytest.mark.skipif(sys.maxsize <= 2**32, reason="offsets measured on an LP64 platform")
def test_struct_layout_is_decode_h():
    """Sizes and offsets that gcc reports for libwebp 1.2.4's decode.h on x86-64."""
    c = webpscale
    assert [ctypes.sizeof(s) for s in (c._Features, c._RGBABuffer, c._YUVABuffer)] == [40, 24, 80]
    assert [ctypes.sizeof(s) for s in (c._DecBuffer, c._Options, c._Config)] == [120, 76, 240]
    assert (c._DecBuffer.u.offset, c._DecBuffer.pad.offset, c._DecBuffer.private_memory.offset) == (
        16,
        96,
        112,
    )
    assert (c._Options.use_scaling.offset, c._Options.alpha_dithering_strength.offset) == (28, 52)
    assert (c._YUVABuffer.y_stride.offset, c._YUVABuffer.a_size.offset) == (32, 72)
    assert (c._Config.output.offset, c._Config.options.offset) == (40, 160)
