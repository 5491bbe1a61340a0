"""Golden tables for the pure core: parameters, negotiation, probing, geometry."""

import struct

import pytest

from shield import params
from shield.errors import InvalidParam, SourceTooLarge, UnsupportedSource
from shield.image import geometry, negotiate, probe
from tests import imaging

PARSE_CASES = [
    ({}, params.Transform(fit="inside")),
    ({"w": "400"}, params.Transform(w=400, fit="inside", q=80)),
    ({"w": "400", "dpr": "2"}, params.Transform(w=800, fit="inside", q=80)),
    ({"w": "333", "dpr": "1.5"}, params.Transform(w=500, fit="inside", q=80)),
    ({"w": "99999"}, params.Transform(w=8192, fit="inside", q=80)),
    ({"w": "300", "h": "200"}, params.Transform(w=300, h=200, fit="cover", q=80)),
    (
        {"w": "300", "h": "200", "fit": "contain", "q": "60"},
        params.Transform(w=300, h=200, fit="contain", q=60),
    ),
    ({"w": "300", "fit": "contain"}, params.Transform(w=300, fit="inside", q=80)),
    ({"w": "300", "fit": "fill"}, params.Transform(w=300, fit="fill", q=80)),
    ({"w": "300", "q": "80"}, params.Transform(w=300, fit="inside", q=80)),
    ({"fmt": "webp"}, params.Transform(fit="inside", q=80, fmt="webp")),
    ({"q": "80"}, params.Transform(fit="inside")),
    ({"q": "50"}, params.Transform(fit="inside", q=50)),
    ({"w": "300", "unknown": "x", "utm_source": "y"}, params.Transform(w=300, fit="inside", q=80)),
]


@pytest.mark.parametrize(("args", "expected"), PARSE_CASES)
def test_parse_golden(args, expected):
    assert params.parse(args) == expected


BAD_CASES = [
    ({"w": "0"}, "w"),
    ({"w": "-5"}, "w"),
    ({"w": "abc"}, "w"),
    ({"w": "1.5"}, "w"),
    ({"w": ""}, "w"),
    ({"h": "0"}, "h"),
    ({"dpr": "5"}, "dpr"),
    ({"dpr": "0.5"}, "dpr"),
    ({"dpr": "x"}, "dpr"),
    ({"fit": "stretch"}, "fit"),
    ({"q": "0"}, "q"),
    ({"q": "101"}, "q"),
    ({"fmt": "bmp"}, "fmt"),
    ({"blur": "yes"}, "blur"),
    ({"lqip": "2"}, "lqip"),
    ({"bx": "10", "blur": "true"}, "bx"),
]


@pytest.mark.parametrize(("args", "name"), BAD_CASES)
def test_parse_rejects_naming_the_param(args, name):
    with pytest.raises(InvalidParam) as err:
        params.parse(args)
    assert err.value.param == name
    assert err.value.status == 400 and err.value.code == "invalid_param"
    assert str(err.value).startswith(f"{name}:")


def test_equal_urls_share_a_canonical_key():
    a = params.parse({"w": "200", "dpr": "2", "fit": "contain"})
    b = params.parse({"w": "400", "fit": "cover", "q": "80"})
    assert a.canonical() == b.canonical()
    assert (
        params.parse({"w": "200", "h": "100"}).canonical()
        != params.parse({"w": "200", "h": "101"}).canonical()
    )


@pytest.mark.parametrize(
    ("accept", "klass"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),
        ("image/webp,*/*", "webp"),
        ("image/avif;q=0, image/webp", "webp!"),
        ("image/avif;q=0, image/webp, */*", "webp"),
        ("*/*", "other"),
        ("", "other"),
        ("image/*", "other"),
        ("text/html", None),
        ("IMAGE/AVIF", "avif!"),
        ("IMAGE/AVIF, image/*;q=0.5", "avif"),
        ("garbage;;;,", None),
        ("image/jpeg;q=0, */*", "png"),
        ("image/jpeg, image/png;q=0", "jpeg"),
        ("image/jxl, image/avif, */*", "avif"),
        ("image/*;q=0, */*", None),  # image/* is the more specific: it refuses the images */* would admit
        ("image/png, image/*;q=0", "png"),
    ],
)
def test_accept_class(accept, klass):
    assert negotiate.accept_class(accept) == klass


@pytest.mark.parametrize(
    ("fmt", "klass", "alpha", "animated", "out"),
    [
        ("auto", "avif", False, False, "avif"),
        ("auto", "webp", False, False, "webp"),
        ("auto", "other", False, False, "jpeg"),
        ("auto", "other", True, False, "png"),
        ("auto", "avif", True, False, "avif"),
        ("auto", "webp", False, True, "webp"),
        ("auto", "other", False, True, "gif"),
        ("jpeg", "avif", True, False, "jpeg"),
        ("png", "other", False, False, "png"),
    ],
)
def test_output_format(fmt, klass, alpha, animated, out):
    assert negotiate.output_format(fmt, klass, alpha, animated) == out


def test_probe_reads_headers_of_each_format():
    png = imaging.encode(imaging.rgba_logo(120, 80), "PNG")
    info = probe.probe(png, 10**9)
    assert (info.format, info.width, info.height, info.has_alpha) == ("png", 120, 80, True)
    jpeg = imaging.exif_rotated_jpeg(6, (200, 100))
    info = probe.probe(jpeg, 10**9)
    assert (info.format, info.width, info.height, info.orientation) == ("jpeg", 200, 100, 6)
    assert info.oriented_size == (100, 200)
    gif = imaging.animated_gif(3, (40, 30))
    info = probe.probe(gif, 10**9)
    assert (info.format, info.width, info.height, info.animated) == ("gif", 40, 30, True)
    for fmt in ("WEBP", "AVIF", "TIFF"):
        body = imaging.encode(imaging.halves(64, 48), fmt)
        info = probe.probe(body, 10**9)
        assert (info.format, info.width, info.height) == (fmt.lower(), 64, 48)
    webp_alpha = imaging.encode(imaging.rgba_logo(50, 40), "WEBP", lossless=True)
    info = probe.probe(webp_alpha, 10**9)
    assert (info.width, info.height, info.has_alpha) == (50, 40, True)


def test_probe_refuses_by_first_bytes_and_pixel_count():
    for body in (
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"push graphic-context\n",
        b"%PDF-1.4",
        b"hello",
        b"",
        b"BM\x00\x00",
    ):
        with pytest.raises(UnsupportedSource):
            probe.probe(body, 10**9)
    # A PNG header declaring 30000x30000: refused before any decoding.
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 30000, 30000, 8, 2, 0, 0, 0)
    with pytest.raises(SourceTooLarge):
        probe.probe(bomb + b"\x00" * 16, 50_000_000)


@pytest.mark.parametrize(
    ("w", "h", "fit", "size"),
    [
        (200, None, "inside", (200, 133)),
        (None, 100, "inside", (150, 100)),
        (300, 200, "cover", (300, 200)),
        (300, 200, "contain", (300, 200)),
        (300, 200, "inside", (300, 200)),
        (300, 300, "inside", (300, 200)),
        (300, 300, "fill", (300, 300)),
        (1000, None, "inside", (600, 400)),
        (1000, None, "fill", (1000, 667)),
        (1200, 600, "cover", (600, 300)),
        (1200, 1200, "contain", (600, 600)),
        (100, 100, "inside", (100, 67)),  # 66.7 rounds to the nearest pixel, not down
        (101, 101, "inside", (101, 67)),
    ],
)
def test_plan_sizes(w, h, fit, size):
    assert geometry.plan(600, 400, w, h, fit).size == size


def test_contain_rounds_the_letterboxed_image_to_the_nearest_pixel():
    plan = geometry.plan(600, 400, 100, 100, "contain")
    assert (plan.resize_w, plan.resize_h, plan.canvas_w, plan.canvas_h) == (100, 67, 100, 100)


def test_plan_refuses_huge_outputs():
    with pytest.raises(InvalidParam):
        geometry.plan(100, 100, 8192, 8192, "fill", max_pixels=25_000_000)


def test_transform_threads_run_below_the_event_loops_priority():
    import os
    import threading

    from shield.pool import TRANSFORM_NICE, TransformPool

    def niceness():
        tid = threading.get_native_id()
        return tid, os.getpriority(os.PRIO_PROCESS, tid)

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    tid, nice = TransformPool(1, 4).run(niceness)
    assert tid != threading.get_native_id()
    assert nice == min(19, before + TRANSFORM_NICE) or nice == TRANSFORM_NICE
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller is untouched
