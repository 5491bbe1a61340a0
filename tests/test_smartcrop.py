"""Face and saliency detection on analysis-sized copies of composed pictures."""

import numpy as np
import pytest
from PIL import Image

from shield.image import smartcrop
from tests.imaging import decode, sample

ANALYSIS_SIDE = 400  # what engine.analysis_pixels shrinks originals to


def analysis_copy(im):
    """`im` shrunk to at most ANALYSIS_SIDE px with a triangle filter, as the real path does; and the scale."""
    k = min(1.0, ANALYSIS_SIDE / max(im.size))
    size = (max(1, round(im.width * k)), max(1, round(im.height * k)))
    return np.asarray(im.convert("RGB").resize(size, Image.BILINEAR)), k


def picture(name):
    return decode(sample(name)).convert("RGB")


def tiled(im, width, height):
    out = Image.new("RGB", (width, height))
    for y in range(0, height, im.height):
        for x in range(0, width, im.width):
            out.paste(im, (x, y))
    return out


def iou(a, b):
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0, min(ax1, bx1) - max(ax0, bx0)), max(0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def contains(outer, inner):
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def crop_window(focus, window_w, window_h, width, height):
    """The crop window a focus gives: centred on it, kept inside the picture (as geometry.plan does)."""
    cx, cy = focus[0] + focus[2] / 2, focus[1] + focus[3] / 2
    x = min(max(0, round(cx - window_w / 2)), width - window_w)
    y = min(max(0, round(cy - window_h / 2)), height - window_h)
    return (x, y, window_w, window_h)


@pytest.fixture(scope="module")
def astronaut():
    return picture("astronaut.png")


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    """The face box of the plain astronaut sample, found at analysis size, in its own 512 px frame."""
    rgb, k = analysis_copy(astronaut)
    found = smartcrop.faces(rgb)
    assert len(found) == 1, found
    x, y, w, h = found[0]
    # The face is in the upper middle of the portrait, and a face-sized box.
    assert 0.3 < (x + w / 2) / rgb.shape[1] < 0.6 and (y + h / 2) / rgb.shape[0] < 0.35, found
    assert 0.12 < w / rgb.shape[1] < 0.3, found
    return tuple(v / k for v in found[0])


def expected_face(face, paste_at, paste_scale, k):
    """Where `face` (in the 512 px sample) lands in the analysis copy of a composite."""
    fx, fy, fw, fh = face
    ox, oy = paste_at
    return (
        (ox + fx * paste_scale) * k,
        (oy + fy * paste_scale) * k,
        fw * paste_scale * k,
        fh * paste_scale * k,
    )


def compose(background, *pastes):
    out = background.copy()
    for im, at in pastes:
        out.paste(im, at)
    return out


def backgrounds(width, height):
    coffee = picture("coffee.png")
    return {
        "grey": Image.new("RGB", (width, height), (128, 128, 128)),
        "coffee-tiled": tiled(coffee, width, height),
        "coffee-stretched": coffee.resize((width, height), Image.LANCZOS),
    }


@pytest.mark.parametrize("background", ["grey", "coffee-tiled", "coffee-stretched"])
def test_finds_the_pasted_face_where_it_was_pasted(astronaut, astronaut_face, background):
    at = (660, 44)
    im = compose(backgrounds(1200, 600)[background], (astronaut, at))
    rgb, k = analysis_copy(im)
    assert rgb.shape == (200, 400, 3)
    found = smartcrop.faces(rgb)
    assert len(found) == 1, found
    assert all(isinstance(v, int) for v in found[0])
    want = expected_face(astronaut_face, at, 1.0, k)
    assert iou(found[0], want) > 0.6, (found, want)


def test_focus_keeps_an_off_centre_face_in_a_narrow_window(astronaut):
    im = compose(backgrounds(1200, 600)["grey"], (astronaut, (680, 44)))
    rgb, _ = analysis_copy(im)
    height, width = rgb.shape[:2]
    found = smartcrop.faces(rgb)
    assert len(found) == 1, found
    face = found[0]
    window_w, window_h = 120, height  # a portrait crop of a landscape picture
    focus = smartcrop.focus_for_faces(found, window_w, window_h)
    assert focus == face
    assert contains(crop_window(focus, window_w, window_h, width, height), face)
    centred = ((width - window_w) // 2, 0, window_w, window_h)
    assert not contains(centred, face)


def test_two_faces_far_apart_focus_on_the_larger_when_only_one_fits(astronaut, astronaut_face):
    small = astronaut.resize((420, 420), Image.LANCZOS)
    big_at, small_at = (668, 44), (20, 90)
    im = compose(backgrounds(1200, 600)["grey"], (astronaut, big_at), (small, small_at))
    rgb, k = analysis_copy(im)
    height, width = rgb.shape[:2]
    found = smartcrop.faces(rgb)
    assert len(found) == 2, found
    big_want = expected_face(astronaut_face, big_at, 1.0, k)
    small_want = expected_face(astronaut_face, small_at, 420 / 512, k)
    assert iou(found[0], big_want) > 0.6 and iou(found[1], small_want) > 0.6, (found, big_want, small_want)
    assert found[0][2] * found[0][3] > found[1][2] * found[1][3]

    window_w, window_h = 150, height
    focus = smartcrop.focus_for_faces(found, window_w, window_h)
    assert focus == found[0]
    window = crop_window(focus, window_w, window_h, width, height)
    assert contains(window, found[0]) and not contains(window, found[1])

    both = smartcrop.focus_for_faces(found, width, height)
    assert contains(both, found[0]) and contains(both, found[1])
    assert both[2] > 200  # spans from one face to the other


@pytest.mark.parametrize("name", ["rocket.jpg", "coffee.png"])
def test_plain_photos_have_no_faces(name):
    rgb, _ = analysis_copy(picture(name))
    assert smartcrop.faces(rgb) == []


def test_faces_on_tiny_and_flat_pictures():
    assert smartcrop.faces(np.zeros((10, 10, 3), np.uint8)) == []
    assert smartcrop.faces(np.full((300, 400, 3), 200, np.uint8)) == []


def test_faces_rejects_what_is_not_rgb():
    with pytest.raises(ValueError):
        smartcrop.faces(np.zeros((40, 40), np.uint8))
    with pytest.raises(ValueError):
        smartcrop.faces(np.zeros((40, 40, 4), np.uint8))
    with pytest.raises(ValueError):
        smartcrop.faces(np.zeros((40, 40, 3), np.float32))


def test_focus_for_faces_takes_the_faces_that_fit_most_prominent_first():
    a, b, c = (100, 100, 40, 40), (400, 100, 30, 30), (160, 110, 30, 30)
    assert smartcrop.focus_for_faces([], 100, 100) is None
    # b does not fit in a 150 px window with a; c does, though it comes after b.
    assert smartcrop.focus_for_faces([a, b, c], 150, 100) == (100, 100, 90, 40)
    assert smartcrop.focus_for_faces([a, b, c], 400, 100) == (100, 100, 330, 40)
    # The order given decides, not the position.
    assert smartcrop.focus_for_faces([b, a, c], 150, 100) == b
    # A first face larger than the window is still the focus.
    assert smartcrop.focus_for_faces([a], 20, 20) == a


def test_faces_from_other_threads_agree(astronaut):
    from concurrent.futures import ThreadPoolExecutor

    rgb, _ = analysis_copy(astronaut)
    expected = smartcrop.faces(rgb)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(smartcrop.faces, [rgb] * 8))
    assert results == [expected] * 8


@pytest.mark.parametrize("flat", [(128, 128, 128), (235, 235, 230), (30, 70, 190), (225, 190, 160)])
@pytest.mark.parametrize("crop", [(300, 150, 360, 210), (240, 60, 300, 120), (0, 0, 60, 60)])
def test_salient_region_keeps_a_small_object_on_a_flat_background(flat, crop):
    obj = (900, 300, 60, 60)
    im = compose(Image.new("RGB", (1600, 600), flat), (picture("coffee.png").crop(crop), obj[:2]))
    rgb, k = analysis_copy(im)
    x, y, w, h = smartcrop.salient_region(rgb)
    cx, cy = (x + w / 2) / k, (y + h / 2) / k
    assert obj[0] <= cx <= obj[0] + obj[2] and obj[1] <= cy <= obj[1] + obj[3], ((x, y, w, h), k)
    # A region around the object, not the whole picture.
    assert w < rgb.shape[1] / 4 and h < rgb.shape[0] / 2, (x, y, w, h)


def test_salient_region_of_a_portrait_is_on_the_face(astronaut, astronaut_face):
    rgb, k = analysis_copy(astronaut)
    x, y, w, h = smartcrop.salient_region(rgb)
    fx, fy, fw, fh = (v * k for v in astronaut_face)
    cx, cy = x + w / 2, y + h / 2
    assert fx - fw / 2 <= cx <= fx + 1.5 * fw and fy - fh / 2 <= cy <= fy + 1.5 * fh, (
        (x, y, w, h),
        astronaut_face,
    )


def test_salient_region_of_a_flat_picture_is_all_of_it():
    assert smartcrop.salient_region(np.full((150, 400, 3), 90, np.uint8)) == (0, 0, 400, 150)
    assert smartcrop.salient_region(np.full((2, 2, 3), 90, np.uint8)) == (0, 0, 2, 2)


def test_salient_region_stays_inside_the_picture():
    rng = np.random.default_rng(7)
    for shape in [(267, 400, 3), (400, 120, 3), (31, 17, 3)]:
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        x, y, w, h = smartcrop.salient_region(rgb)
        assert all(isinstance(v, int) for v in (x, y, w, h))
        assert 0 <= x and 0 <= y and w >= 1 and h >= 1
        assert x + w <= shape[1] and y + h <= shape[0]


def test_each_thread_loads_its_own_classifier():
    import threading

    mine = smartcrop._classifier()
    assert smartcrop._classifier() is mine
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(smartcrop._classifier())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 3 and len({id(c) for c in seen + [mine]}) == 4
