"""Face detection, saliency and BlurHash on a 2560x1600 photo, at the sizes production works at.

The repository has no large photos, so one is composed from the samples: coffee.png
stretched over the frame with astronaut.png on it. Production shrinks with
ImageMagick (triangle filter) before any of this runs; here Pillow's bilinear
filter, the same triangle, does it once per module, outside the timings.
"""

import numpy as np
import pytest
from PIL import Image

from shield.image import placeholders, smartcrop
from tests.imaging import decode, sample

PHOTO = (2560, 1600)
ASTRONAUT_SIDE, ASTRONAUT_AT = 1200, (1240, 200)
ANALYSIS_SIDE = 400  # engine.analysis_pixels
PLACEHOLDER_SIDE = 32  # engine.variant_pixels


def shrunk(im, side):
    """`im` at most `side` px on its long side, sized as engine.analysis_pixels sizes it."""
    k = min(1.0, side / max(im.size))
    size = (max(1, round(im.width * k)), max(1, round(im.height * k)))
    return np.asarray(im.resize(size, Image.BILINEAR)), k


@pytest.fixture(scope="module")
def photo():
    im = decode(sample("coffee.png")).convert("RGB").resize(PHOTO, Image.LANCZOS)
    astronaut = decode(sample("astronaut.png")).convert("RGB").resize((ASTRONAUT_SIDE,) * 2, Image.LANCZOS)
    im.paste(astronaut, ASTRONAUT_AT)
    return im


@pytest.fixture(scope="module")
def analysis(photo):
    return shrunk(photo, ANALYSIS_SIDE)


def test_bench_face_detection(benchmark, analysis):
    rgb, k = analysis
    assert rgb.shape == (250, 400, 3)
    found = benchmark(smartcrop.faces, rgb)
    assert len(found) == 1, found
    # The astronaut's face: in the upper middle of her square, about a fifth of its side.
    x, y, w, h = (v / k for v in found[0])
    ax, ay = ASTRONAUT_AT
    assert ax + 0.25 * ASTRONAUT_SIDE < x + w / 2 < ax + 0.6 * ASTRONAUT_SIDE, found
    assert ay < y + h / 2 < ay + 0.35 * ASTRONAUT_SIDE, found
    assert 0.12 * ASTRONAUT_SIDE < w < 0.3 * ASTRONAUT_SIDE, found


def test_bench_salient_region(benchmark, analysis):
    rgb, k = analysis
    x, y, w, h = benchmark(smartcrop.salient_region, rgb)
    assert 0 <= x and 0 <= y and x + w <= rgb.shape[1] and y + h <= rgb.shape[0]
    assert w * h < rgb.shape[0] * rgb.shape[1] / 2, (x, y, w, h)


@pytest.mark.parametrize("components", [(4, 3), (9, 9)])
def test_bench_blurhash(benchmark, photo, components):
    rgb, _ = shrunk(photo, PLACEHOLDER_SIDE)
    assert rgb.shape == (20, 32, 3)
    hash_ = benchmark(placeholders.blurhash_of, rgb, *components)
    assert len(hash_) == 4 + 2 * components[0] * components[1]
    decoded = placeholders.decode_blurhash(hash_, 32, 20).astype(float)
    assert np.abs(decoded.mean(axis=(0, 1)) - rgb.mean(axis=(0, 1))).max() < 25


def test_bench_blurhash_of_an_analysis_sized_array(benchmark, analysis):
    """A caller handing over a larger array still pays only for a 32 px hash."""
    rgb, _ = analysis
    hash_ = benchmark(placeholders.blurhash_of, rgb, 4, 3)
    assert len(hash_) == 28
