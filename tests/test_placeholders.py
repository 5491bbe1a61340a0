"""BlurHash placeholders, checked by decoding them with the `blurhash` package."""

import blurhash
import numpy as np
import pytest
from PIL import Image

from shield.image import placeholders
from tests import imaging
from tests.imaging import decode, sample

PLACEHOLDER_SIDE = 32  # what engine.variant_pixels shrinks a variant to


def srgb_to_linear(arr):
    """Linear light, 0-255 scale: BlurHash averages there, so a decoded mean is comparable there."""
    table = np.array([blurhash.srgb_to_linear(v) for v in range(256)]) * 255
    return table[np.asarray(arr, dtype=np.uint8)]


def quadrant_means(arr):
    """Mean colour (linear light) of the top-left, top-right, bottom-left and bottom-right quarters."""
    lin = srgb_to_linear(arr)
    h, w = lin.shape[:2]
    return np.array(
        [
            lin[y : y + h // 2, x : x + w // 2].reshape(-1, 3).mean(axis=0)
            for y in (0, h // 2)
            for x in (0, w // 2)
        ]
    )


def decoded(hash_, width=64, height=40):
    """The hash decoded by the `blurhash` package itself, as an array."""
    return np.array(blurhash.decode(hash_, width, height), dtype=np.uint8)


def shrunk(im, side=PLACEHOLDER_SIDE):
    k = min(1.0, side / max(im.size))
    return np.asarray(im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.BILINEAR))


def quadrants(width, height):
    """Four clearly different colours, one per quarter.

    Each channel changes only across the vertical or only across the horizontal
    divide (in linear light), the kind of layout a few cosines can draw; the
    diagonal "checkerboard" part of a picture is what BlurHash keeps least of.
    """
    linear = {
        (0, 0): (0.60, 0.20, 0.10),
        (1, 0): (0.10, 0.35, 0.10),
        (0, 1): (0.60, 0.35, 0.60),
        (1, 1): (0.10, 0.50, 0.60),
    }
    arr = np.zeros((height, width, 3), np.uint8)
    for (qx, qy), colour in linear.items():
        srgb = [blurhash.linear_to_srgb(c) for c in colour]
        arr[qy * height // 2 : (qy + 1) * height // 2, qx * width // 2 : (qx + 1) * width // 2] = srgb
    return arr


def assert_quadrants_match(source, hash_, tolerance):
    want, got = quadrant_means(source), quadrant_means(decoded(hash_))
    assert np.abs(got - want).max() <= tolerance, (got.round(1), want.round(1))
    return got, want


def assert_layout_kept(got, want):
    """Each decoded quarter is nearest to its own source quarter (for four distinct colours)."""
    distances = np.linalg.norm(got[:, None, :] - want[None, :, :], axis=2)
    assert list(distances.argmin(axis=1)) == [0, 1, 2, 3], distances.round(1)


@pytest.mark.parametrize(
    ("size", "components", "tolerance"),
    [((32, 20), (4, 3), 30), ((32, 20), (9, 9), 16), ((800, 500), (4, 3), 30)],
)
def test_four_quadrants_survive_the_round_trip(size, components, tolerance):
    source = quadrants(*size)
    hash_ = placeholders.blurhash_of(source, *components)
    assert_layout_kept(*assert_quadrants_match(source, hash_, tolerance))


@pytest.mark.parametrize("side", [PLACEHOLDER_SIDE, 600])
def test_coffee_survives_the_round_trip(side):
    source = shrunk(decode(sample("coffee.png")).convert("RGB"), side)
    hash_ = placeholders.blurhash_of(source)
    assert len(hash_) == 28
    assert_quadrants_match(source, hash_, 20)
    # The average colour is what a BlurHash keeps best.
    mean_want = srgb_to_linear(source).reshape(-1, 3).mean(axis=0)
    mean_got = srgb_to_linear(decoded(hash_)).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean_got - mean_want).max() <= 4, (mean_got, mean_want)


def test_same_hash_as_the_package_at_placeholder_size():
    source = shrunk(decode(sample("rocket.jpg")).convert("RGB"))
    assert source.shape == (21, 32, 3)
    assert placeholders.blurhash_of(source, 5, 4) == blurhash.encode(source, 5, 4)


def test_a_large_array_gives_the_picture_a_small_one_does():
    im = decode(sample("coffee.png")).convert("RGB")
    big, small = np.asarray(im), shrunk(im)
    a, b = decoded(placeholders.blurhash_of(big)), decoded(placeholders.blurhash_of(small))
    # Mean difference per channel in linear light, 0-255; rocket.jpg against coffee.png is ~47.
    assert np.abs(srgb_to_linear(a) - srgb_to_linear(b)).mean() < 10


@pytest.mark.parametrize(("bx", "by"), [(1, 1), (4, 3), (3, 4), (9, 1), (9, 9)])
def test_components_set_the_length_as_the_spec_says(bx, by):
    hash_ = placeholders.blurhash_of(quadrants(32, 20), bx, by)
    # 1 char for the sizes, 1 for the AC maximum, 4 for DC, 2 per AC component.
    assert len(hash_) == 4 + 2 * bx * by
    assert blurhash.components(hash_) == (bx, by)


@pytest.mark.parametrize(
    ("bx", "by"), [(0, 3), (4, 0), (10, 3), (4, 10), (-1, 3), (4.0, 3), ("4", 3), (True, 3)]
)
def test_bad_components_are_refused(bx, by):
    with pytest.raises(ValueError):
        placeholders.blurhash_of(quadrants(32, 20), bx, by)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((20, 30), np.uint8),
        np.zeros((20, 30, 4), np.uint8),
        np.zeros((0, 30, 3), np.uint8),
        np.zeros((20, 30, 3), np.float64),
    ],
)
def test_bad_pixels_are_refused(arr):
    with pytest.raises(ValueError):
        placeholders.blurhash_of(arr)


def test_decode_blurhash_matches_the_package():
    hash_ = placeholders.blurhash_of(quadrants(32, 20))
    arr = placeholders.decode_blurhash(hash_, 30, 20)
    assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, decoded(hash_, 30, 20))


@pytest.mark.parametrize(
    "bad", ["", "LEHV6n", "LEHV6nWB2yk8pyo0adR*.7kCMdn", "LEHV6nWB2yk8pyo0adR*.7kCMd\u00e9j"]
)
def test_decode_blurhash_refuses_what_is_not_a_blurhash(bad):
    with pytest.raises(ValueError):
        placeholders.decode_blurhash(bad, 8, 8)


def test_an_lqip_is_64_px_on_its_long_side(make_app, folder):
    client = make_app({"demo": {"origin": str(folder) + "/"}}).test_client()
    resp = client.get("/demo/rocket.jpg?lqip=true", headers={"Accept": "image/webp"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/webp"
    assert imaging.decode(resp.data).size == (64, 43)
    square = client.get("/demo/astronaut.png?lqip=true", headers={"Accept": "image/webp"})
    assert imaging.decode(square.data).size == (64, 64)
    assert len(resp.data) < 1500
