"""Recent decodes: the next variant of an original reuses its decode, and comes out the same bytes."""

import dataclasses
import functools
import random
import threading

import pytest
from PIL import Image

from shield.image import decode, engine, geometry, probe
from shield.image.recent import ENTRY_OVERHEAD, MIN_PIXELS, RecentDecodes, reuse_key
from tests import imaging

MIB = 1024 * 1024


@functools.cache
def large_jpeg():
    """A 2560x1600 photo-like JPEG (the astronaut, enlarged): every DCT scale applies."""
    im = imaging.decode(imaging.sample("astronaut.png")).convert("RGB")
    return imaging.encode(im.resize((2560, 1600), Image.Resampling.BICUBIC), "JPEG", quality=90)


def source(name):
    body = large_jpeg() if name == "large.jpg" else imaging.sample(name)
    return body, probe.probe(body, 10**9)


def plan_for(info, w, h=None, fit="inside"):
    return geometry.plan(*info.oriented_size, w, h, fit)


def render(body, info, w, fmt="webp", decodes=None, q=80, h=None, fit="inside"):
    return engine.render(body, info, plan_for(info, w, h, fit), fmt, q, decodes=decodes).body


def test_variants_from_kept_decodes_are_the_bytes_of_fresh_ones():
    decodes = RecentDecodes(32 * MIB)
    random.seed(7)
    cases = [
        (name, w, fmt)
        for name in ("large.jpg", "rocket.jpg", "coffee.png")
        for w in random.sample(range(60, 640), 4)
        for fmt in ("webp", "jpeg")
    ]
    for name, w, fmt in cases:
        body, info = source(name)
        assert render(body, info, w, fmt, decodes) == render(body, info, w, fmt), (name, w, fmt)
    assert decodes.hits > len(cases) / 2  # most of them came from memory
    assert decodes.misses + decodes.hits == len(cases)


def test_jpeg_hints_with_one_reuse_key_decode_to_the_same_pixels():
    body, info = source("large.jpg")  # 2560x1600
    by_key = {}
    # Widths that fit the stored size 2 to 25 times (libjpeg's scales 4/8 down to 1/8), some
    # twice within one scale, and over half the size (no hint: the full decode).
    for w in (1270, 1100, 853, 700, 640, 600, 512, 427, 366, 320, 300, 256, 200, 150, 100, 1290, 2400):
        need = (plan_for(info, w).resize_w, plan_for(info, w).resize_h)
        key = reuse_key(info, need, False, False)
        frame = decode.decode(body, info, need).frames[0]
        if key in by_key:
            assert by_key[key].tobytes() == frame.tobytes(), (w, key)
        else:
            by_key[key] = frame
    # DCT scales 1/8, 2/8, 3/8, 4/8 and the full decode (no hint under half size).
    assert sorted(im.size for im in by_key.values()) == [
        (320, 200),
        (640, 400),
        (960, 600),
        (1280, 800),
        (2560, 1600),
    ]


def test_keys_keep_apart_what_decodes_differently():
    _body, jpeg = source("large.jpg")
    assert reuse_key(jpeg, (640, 400), False, False) != reuse_key(jpeg, (640, 400), False, True)
    assert reuse_key(jpeg, (300, 188), False, False) != reuse_key(jpeg, (700, 438), False, False)
    _body, webp = source("rocket.jpg")
    webp = dataclasses.replace(webp, format="webp")
    assert reuse_key(webp, (100, 67), False, False) != reuse_key(webp, (101, 67), False, False)
    _body, png = source("coffee.png")
    assert reuse_key(png, (100, 100), False, False) == reuse_key(png, (200, 200), False, False)
    assert reuse_key(png, (100, 100), True, False) != reuse_key(png, (100, 100), False, False)


def test_other_bytes_are_never_matched():
    decodes = RecentDecodes(32 * MIB)
    body, info = source("rocket.jpg")
    first = render(body, info, 200, "png", decodes)
    other = imaging.encode(imaging.halves(640, 427), "JPEG", quality=90)  # same size, same format
    out = render(other, probe.probe(other, 10**9), 200, "png", decodes)
    assert decodes.hits == 0 and decodes.misses == 2
    im = imaging.decode(out).convert("RGB")
    assert imaging.close_color(im.getpixel((10, 60)), (220, 30, 30), 30)  # the new picture, not the rocket
    assert out != first


def test_the_budget_holds_and_the_least_recent_goes_first():
    body, info = source("large.jpg")
    decodes = RecentDecodes(5 * MIB)  # room for 1/8 (0.25 MB) and 2/8 (1 MB) decodes, not 4/8 (4 MB)
    for w in (300, 600, 300, 1200):
        render(body, info, w, "jpeg", decodes)
        assert decodes.bytes <= decodes.max_bytes
    assert (decodes.hits, decodes.misses) == (1, 3)
    # The 1280 px decode was too large to keep; each entry is charged its objects too.
    assert decodes.bytes == (320 * 200 + 640 * 400) * 4 + 2 * ENTRY_OVERHEAD
    small = RecentDecodes(1 * MIB)  # each entry up to a quarter: 320x200 fits, 640x400 does not
    for w in (300, 600, 600, 300):
        render(body, info, w, "jpeg", small)
    assert (small.hits, small.misses) == (1, 3) and small.bytes == 320 * 200 * 4 + ENTRY_OVERHEAD
    tiny = RecentDecodes(4 * (320 * 200 * 4 + ENTRY_OVERHEAD))  # four 320x200 entries
    pngs = [imaging.encode(imaging.halves(320, 200, (i * 40, 0, 0)), "PNG") for i in range(5)]
    for png in (*pngs, pngs[0], pngs[4]):
        render(png, probe.probe(png, 10**9), 100, "jpeg", tiny)
    # The fifth pushed out the first, which came back as a miss; the fifth was still there.
    assert (tiny.hits, tiny.misses) == (1, 6) and tiny.bytes == tiny.max_bytes


def test_off_and_animations_keep_nothing():
    body, info = source("rocket.jpg")
    off = RecentDecodes(0)
    for _ in range(2):
        assert imaging.decode(render(body, info, 200, "jpeg", off)).size == (200, 133)
    assert (off.hits, off.misses, off.bytes) == (0, 0, 0)
    gif = imaging.animated_gif()
    gif_info = probe.probe(gif, 10**9)
    decodes = RecentDecodes(32 * MIB)
    for _ in range(2):
        out = render(gif, gif_info, 20, "webp", decodes)
    assert decodes.hits == 0 and decodes.bytes == 0
    assert imaging.decode(out).n_frames == 5


def test_a_kept_frame_is_never_saved_itself(encodes):
    # At its own size the plan does nothing to the frame: the engine must encode a copy.
    body = imaging.encode(imaging.decode(imaging.sample("rocket.jpg")).resize((320, 214)), "PNG")
    info = probe.probe(body, 10**9)
    decodes = RecentDecodes(32 * MIB)
    first = render(body, info, 320, "webp", decodes, q=80)
    (kept,), _ = zip(*decodes._items.values(), strict=True)
    assert kept.frames[0].size == (320, 214)
    second = render(body, info, 320, "webp", decodes, q=30)
    assert decodes.hits == 1 and len(second) < len(first)
    assert all(im is not kept.frames[0] for im, *_ in encodes)
    assert not hasattr(kept.frames[0], "encoderinfo")


def test_threads_sharing_one_cache_get_the_serial_answers():
    body, info = source("large.jpg")
    widths = [200, 260, 320, 500, 640, 200, 320, 500] * 2
    expected = {(w, fmt): render(body, info, w, fmt) for w in set(widths) for fmt in ("jpeg", "webp")}
    decodes = RecentDecodes(32 * MIB)
    wrong = []

    def work(offset):
        for i, w in enumerate(widths):
            fmt = ("jpeg", "webp")[(i + offset) % 2]
            if render(body, info, w, fmt, decodes) != expected[(w, fmt)]:
                wrong.append((w, fmt))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == [] and decodes.hits >= len(widths) * 4 - 8


@pytest.mark.parametrize("setting, reused", [(32 * MIB, True), (0, False)])
def test_the_server_reuses_a_decode_for_the_next_width(make_app, folder, setting, reused):
    (folder / "leaf.jpg").write_bytes(large_jpeg())
    app = make_app({"demo": {"origin": str(folder) + "/"}}, decode_cache_bytes=setting)
    client = app.test_client()
    bodies = {}
    for w in (700, 720, 740):  # one DCT scale (3/8: 960x600)
        resp = client.get(f"/demo/leaf.jpg?w={w}&fmt=webp")
        assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
        assert imaging.decode(resp.data).size[0] == w
        bodies[w] = resp.data
    decodes = app.extensions["shield"].delivery.variants.decodes
    assert (decodes.hits, decodes.misses) == ((2, 1) if reused else (0, 0))
    _, info = source("large.jpg")
    assert bodies[720] == render(large_jpeg(), info, 720, "webp")


def test_small_decodes_are_not_kept():
    # 100x100 is under MIN_PIXELS: cheaper to decode again than to keep, however many there are.
    decodes = RecentDecodes(32 * MIB)
    pngs = [imaging.encode(imaging.halves(100, 100, (i, 0, 0)), "PNG") for i in range(50)]
    for png in pngs * 2:
        render(png, probe.probe(png, 10**9), 50, "jpeg", decodes)
    assert 100 * 100 < MIN_PIXELS
    assert (decodes.hits, decodes.misses, decodes.bytes, len(decodes._items)) == (0, 100, 0, 0)


@pytest.mark.parametrize(
    "kind, fmt, fit, keep",
    [
        ("rotated-jpeg", "jpeg", "cover", False),
        ("rotated-jpeg", "jpeg", "inside", True),  # EXIF and profile kept
        ("alpha-png", "webp", "contain", False),  # letterboxed on transparency
        ("alpha-png", "jpeg", "contain", False),  # flattened on white
        ("webp", "png", "fill", False),  # libwebp's own scaler
    ],
)
def test_kept_decodes_give_the_same_bytes_for_each_kind_of_source(kind, fmt, fit, keep):
    photo = imaging.decode(imaging.sample("rocket.jpg")).convert("RGB")
    if kind == "rotated-jpeg":
        body = imaging.exif_rotated_jpeg(6, (1280, 800))
    elif kind == "alpha-png":
        body = imaging.encode(imaging.rgba_logo(480, 320), "PNG")
    else:
        body = imaging.encode(photo, "WEBP", quality=90)
    info = probe.probe(body, 10**9)
    decodes = RecentDecodes(32 * MIB)
    for w, h in ((300, 300), (300, 200), (301, 199)):
        plan = plan_for(info, w, h, fit)
        fresh = engine.render(body, info, plan, fmt, 80, keep_metadata=keep).body
        for _ in range(2):
            assert engine.render(body, info, plan, fmt, 80, keep_metadata=keep, decodes=decodes).body == fresh
    assert decodes.hits >= 3
