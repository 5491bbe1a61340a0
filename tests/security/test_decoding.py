"""Hostile originals and hostile paths, through the real app: refused with the contract's errors.

Nothing here may answer 500, read outside the origin, decode a bomb, or leave
anything in the cache.
"""

import io
import json
import os
import random
import struct
import time
import zlib

import pytest
from PIL import Image

from shield.cache.store import meta_key_of
from tests import imaging
from tests.security import client_of

MVG = (
    b"push graphic-context\nviewbox 0 0 640 480\nfill 'url(https://example.com/x.jpg)'\npop graphic-context\n"
)
MSL = b'<?xml version="1.0"?><image><read filename="/etc/passwd"/></image>'
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
    b'width="640" height="480"><image xlink:href="file:///etc/passwd" width="10" height="10"/></svg>'
)
NOT_IMAGES = {
    "svg": SVG,
    "svg-bare": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
    "mvg": MVG,
    "mvg-viewbox-first": b"viewbox 0 0 1 1\nimage over 0,0 1,1 '|touch /tmp/shield-pwned'\n",
    "msl": MSL,
    "ps": b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 100 100\nnewpath 0 0 moveto 100 100 lineto stroke\nshowpage\n",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
    "eps-binary": b"\xc5\xd0\xd3\xc6" + b"\x00" * 28,
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "text": b"Just some plain text, not an image at all.\n",
    "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
    "empty": b"",
    "bmp": b"BM" + b"\x00" * 60,
    "ico": b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 40,
    "text-label": b"label:@/etc/passwd",
    "ephemeral": b"ephemeral:/etc/passwd",
}


def png_chunk(kind, data):
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width, height):
    """A small, well-formed PNG whose header claims width x height (its data holds one row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 1000))
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def gif_declaring(width, height):
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def gif_with_frame_larger_than_screen():
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 30000, 30000, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def jpeg_declaring(width, height):
    real = imaging.encode(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG")
    sof = real.find(b"\xff\xc0")
    return real[: sof + 5] + struct.pack(">HH", height, width) + real[sof + 9 :]


def webp_declaring(width, height):
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def tiff_declaring(width, height):
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00"


BOMBS = {
    "png-30000x30000": png_declaring(30000, 30000),
    "png-60000x15000": png_declaring(60000, 15000),
    "png-2^31": png_declaring(2**31 - 1, 2**31 - 1),
    "gif-65535x65535": gif_declaring(65535, 65535),
    "gif-frame-bigger-than-screen": gif_with_frame_larger_than_screen(),
    "jpeg-30000x30000": jpeg_declaring(30000, 30000),
    "webp-16384x16384": webp_declaring(16384, 16384),
    "tiff-30000x30000": tiff_declaring(30000, 30000),
}


def error_code(resp):
    assert resp.content_type == "application/json", (resp.status_code, resp.data[:200])
    body = json.loads(resp.data)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    return body["error"]["code"]


@pytest.fixture
def shield_app(make_app, folder):
    return make_app({"demo": {"origin": str(folder) + "/"}})


@pytest.fixture
def client(shield_app):
    return client_of(shield_app)


def stored(app, name):
    """Whether shield holds anything (metadata, a negative answer) for /demo/<name>."""
    return app.extensions["shield"].store.get(meta_key_of("demo", name)) is not None


def assert_nothing_kept(app, client, folder, name, query, first):
    second = client.get(f"/demo/{name}?{query}")
    assert second.status_code == first.status_code
    assert second.headers.get("X-Cache") != "HIT"
    assert not stored(app, name)
    # The origin's file is fixed: the very next request serves the real image.
    (folder / name).write_bytes(imaging.sample("rocket.jpg"))
    fixed = client.get(f"/demo/{name}?{query}")
    assert fixed.status_code == 200 and fixed.headers["X-Cache"] == "MISS"
    assert imaging.decode(fixed.data).size[0] == 40


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
@pytest.mark.parametrize("name", ["evil.jpg", "evil.png"])
def test_files_that_are_not_images_are_unsupported(shield_app, client, folder, kind, name):
    (folder / name).write_bytes(NOT_IMAGES[kind])
    for query in ("w=40", ""):
        resp = client.get(f"/demo/{name}?{query}")
        assert (resp.status_code, error_code(resp)) == (415, "unsupported_source"), query
    head = client.head(f"/demo/{name}?w=40")
    assert head.status_code == 415 and head.data == b""
    assert_nothing_kept(shield_app, client, folder, name, "w=40", resp)
    assert not os.path.exists("/tmp/shield-pwned")


def peak_rss_reset():
    """Reset the peak RSS counter; the current (peak) RSS in bytes. Fails when it cannot be reset:
    a lifetime peak left over from earlier tests would hide any growth here."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError as exc:
        pytest.fail(f"cannot reset the peak RSS counter ({exc}): the memory check could not measure")
    status = _status()
    peak, now = _kb(status["VmHWM"]), _kb(status["VmRSS"])
    assert peak - now < 8 * 2**20, "the peak RSS counter was not reset"
    return peak


def _status():
    with open("/proc/self/status") as fh:
        return dict(line.split(":", 1) for line in fh if ":" in line)


def _kb(field):
    return int(field.split()[0]) * 1024


def peak_rss():
    return _kb(_status()["VmHWM"])


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_decompression_bombs_are_refused_from_the_header(shield_app, client, folder, kind):
    name = f"{kind}.jpg"
    (folder / name).write_bytes(BOMBS[kind])
    client.get("/demo/rocket.jpg?w=10")  # everything imported and warm
    before = peak_rss_reset()
    started = time.perf_counter()
    resp = client.get(f"/demo/{name}?w=100")
    took = time.perf_counter() - started
    growth = peak_rss() - before
    assert (resp.status_code, error_code(resp)) == (413, "source_too_large")
    assert took < 1.0, took
    assert growth < 50 * 2**20, f"peak RSS grew {growth / 2**20:.0f} MB"
    assert_nothing_kept(shield_app, client, folder, name, "w=40", resp)


def test_a_source_just_over_the_pixel_limit_is_refused(make_app, folder):
    app = make_app({"demo": {"origin": str(folder) + "/"}}, max_source_pixels=10_000)
    client = client_of(app)
    (folder / "over.png").write_bytes(imaging.encode(Image.new("RGB", (101, 100)), "PNG"))
    (folder / "under.png").write_bytes(imaging.encode(Image.new("RGB", (100, 100)), "PNG"))
    resp = client.get("/demo/over.png?w=10")
    assert (resp.status_code, error_code(resp)) == (413, "source_too_large")
    assert client.get("/demo/under.png?w=10").status_code == 200


def jpeg_bytes():
    return imaging.sample("rocket.jpg")


def damaged_inputs():
    jpeg = jpeg_bytes()
    png = imaging.sample("coffee.png")
    gif = imaging.animated_gif(3, (40, 30))
    webp = imaging.encode(Image.new("RGB", (40, 30), (0, 128, 255)), "WEBP")
    webp_alpha = bytearray(imaging.encode(imaging.rgba_logo(48, 32), "WEBP", quality=70))
    assert webp_alpha[12:16] == b"VP8X"
    webp_alpha[20] |= 0x02  # "animated", with no animation chunks
    avif = imaging.encode(Image.new("RGB", (48, 32), (10, 30, 200)), "AVIF", quality=50)
    mdat = avif.find(b"mdat")
    rng = random.Random(20261123)
    sos = jpeg.find(b"\xff\xda")
    scrambled = bytearray(jpeg)
    for _ in range(200):
        at = rng.randrange(sos + 20, len(jpeg) - 2)
        scrambled[at] = rng.randrange(256)
    return {
        "jpeg-truncated-half": jpeg[: len(jpeg) // 2],
        "jpeg-truncated-in-header": jpeg[:200],
        "jpeg-truncated-after-sos": jpeg[: sos + 40],
        "jpeg-only-magic": b"\xff\xd8\xff",
        "jpeg-no-eoi-padded": jpeg[:-2] + b"\x00" * 100,
        "jpeg-header-then-garbage": jpeg[: sos + 20] + rng.randbytes(5000) + b"\xff\xd9",
        "jpeg-scrambled-scan": bytes(scrambled),
        "png-truncated": png[: len(png) // 3],
        "png-bad-crc": png[:29] + b"\x00\x00\x00\x00" + png[33:],
        "png-idat-garbage": png[:41] + rng.randbytes(2000) + png[-12:],
        "gif-truncated": gif[: len(gif) // 2],
        "gif-garbage-frames": gif[:30] + rng.randbytes(300) + b"\x3b",
        "webp-truncated": webp[: len(webp) // 2],
        "webp-garbage": webp[:30] + rng.randbytes(200),
        "webp-animated-flag-without-frames": bytes(webp_alpha),
        "tiff-header-only": b"II*\x00\x08\x00\x00\x00\x00\x00",
        "tiff-no-height": tiff_declaring(100, 100).replace(
            struct.pack("<HH", 257, 4), struct.pack("<HH", 999, 4)
        ),
        "tiff-truncated-ifd": tiff_declaring(100, 100)[:20],
        "avif-mdat-zeroed": avif[: mdat + 4] + bytes(len(avif) - mdat - 4),
        "avif-no-image-item": avif.replace(b"iloc", b"ilox"),
        "avif-truncated": avif[: len(avif) // 2],
        "avif-ftyp-only": b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1",
        "random-1k": rng.randbytes(1024),
        "random-64k": rng.randbytes(65536),
    }


DAMAGED = damaged_inputs()
# Entropy-coded data has no checksum: libjpeg may decode scrambled scans into scrambled pixels;
# a WebP's header flags may be wrong while its image data is whole.
MAY_DECODE = {"jpeg-scrambled-scan", "jpeg-header-then-garbage", "webp-animated-flag-without-frames"}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_or_random_bytes_are_an_origin_error_or_unsupported(shield_app, client, folder, kind):
    name = f"{kind}.jpg"
    (folder / name).write_bytes(DAMAGED[kind])
    for query in (
        "w=40",
        "",
        "w=40&fmt=png",
        "w=40&fmt=avif",
        "blur=true",
        "lqip=true",
        "w=48&h=48&fit=auto",
    ):
        resp = client.get(f"/demo/{name}?{query}")
        if resp.status_code == 200:
            assert kind in MAY_DECODE, query
            continue
        assert resp.status_code in (502, 415), (query, resp.status_code, resp.data[:300])
        assert error_code(resp) == {502: "origin_error", 415: "unsupported_source"}[resp.status_code]
    if kind not in MAY_DECODE:
        assert_nothing_kept(shield_app, client, folder, name, "w=40", resp)


TRAVERSALS = [
    "/demo/../secret.jpg",
    "/demo/../../secret.jpg",
    "/demo/sub/../../secret.jpg",
    "/demo/%2e%2e/secret.jpg",
    "/demo/%2E%2E/secret.jpg",
    "/demo/.%2e/secret.jpg",
    "/demo/%2e./secret.jpg",
    "/demo/%252e%252e/secret.jpg",
    "/demo/%252e%252e%252fsecret.jpg",
    "/demo/..%2fsecret.jpg",
    "/demo/..%2Fsecret.jpg",
    "/demo/%2e%2e%2fsecret.jpg",
    "/demo/..%5csecret.jpg",
    "/demo/..%5c..%5csecret.jpg",
    "/demo/..\\secret.jpg",
    "/demo/sub\\..\\..\\secret.jpg",
    "/demo/%00../secret.jpg",
    "/demo/..%00/secret.jpg",
    "/demo/rocket.jpg%00.png",
    "/demo/rocket.jpg%00",
    "/demo/%00",
    "/demo//secret.jpg",
    "/demo//etc/passwd",
    "/demo/%2fetc%2fpasswd",
    "/demo/%2f..%2fsecret.jpg",
    "/demo/....//secret.jpg",
    "/demo/.../secret.jpg",
    "/demo/%c0%ae%c0%ae/secret.jpg",
    "/demo/%ef%bc%8e%ef%bc%8e/secret.jpg",
    "/demo/link.jpg",
    "/demo/linkdir/secret.jpg",
    "/demo/C:%5cWindows%5cwin.ini",
    "/demo/file:%2f%2f%2fetc%2fpasswd",
    "/demo/" + "%2e%2e/" * 40 + "etc/passwd",
]


@pytest.fixture
def outside(tmp_path, folder):
    """An image just outside the origin folder, and symlinks inside it pointing there."""
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(imaging.sample("rocket.jpg"))
    (folder / "link.jpg").symlink_to(secret)
    (folder / "linkdir").symlink_to(tmp_path)
    return secret


LONG_PATHS = [
    "/demo/" + "a" * 255 + ".jpg",
    "/demo/" + "a" * 300 + ".jpg",
    "/demo/" + "a" * 5000 + ".jpg",
    "/demo/" + "a/" * 3000 + "x.jpg",
]
# Past the 8,190-byte request line: refused before any lookup (contract section 2).
TOO_LONG = ["/demo/" + "b" * 70000, "/demo/" + "c" * 8200 + ".jpg"]


def url_id(url):
    return url if len(url) <= 60 else f"{url[:16]}...{url[-8:]}({len(url)}-chars)"


@pytest.mark.parametrize("url", TOO_LONG, ids=url_id)
def test_a_request_line_past_8190_bytes_is_414_json(client, url):
    for query in ("", "?w=40"):
        resp = client.get(url + query)
        assert resp.status_code == 414, (resp.status_code, resp.data[:300])
        assert error_code(resp) == "uri_too_long"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("url", TRAVERSALS + LONG_PATHS, ids=url_id)
def test_path_traversal_and_long_paths_are_not_found(shield_app, client, outside, url):
    for query in ("", "?w=40"):
        resp = client.get(url + query)
        assert resp.status_code == 404, (resp.status_code, resp.data[:300])
        assert error_code(resp) == "not_found"
        again = client.get(url + query)
        assert again.status_code == 404 and again.headers.get("X-Cache") != "HIT"


def test_path_traversal_never_leaves_the_http_origins_prefix(make_app, origin):
    origin.state.put("/img/rocket.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/secret.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/img/%2e%2e/secret.jpg", imaging.sample("rocket.jpg"))
    client = client_of(make_app({"web": {"origin": origin.url + "img/", "allow_private_origin": True}}))
    assert client.get("/web/rocket.jpg?w=40").status_code == 200
    for url in [u.replace("/demo/", "/web/", 1) for u in TRAVERSALS if len(u) < 2000]:
        resp = client.get(url + "?w=40")
        assert resp.status_code == 404, (url, resp.status_code, resp.data[:300])
        assert error_code(resp) == "not_found"
    asked = [path for _method, path, _headers in origin.state.requests]
    assert asked and all(path.startswith("/img/") for path in asked), asked
    assert "/secret.jpg" not in asked and "/img/%2e%2e/secret.jpg" not in asked


def test_a_hostile_file_served_over_http_is_refused_and_not_kept(make_app, origin):
    origin.state.put("/evil.jpg", MVG)
    origin.state.put("/bomb.png", BOMBS["png-30000x30000"])
    origin.state.put("/cut.jpg", DAMAGED["jpeg-truncated-half"])
    client = client_of(make_app({"web": {"origin": origin.url, "allow_private_origin": True}}))
    for name, status in (("evil.jpg", 415), ("bomb.png", 413), ("cut.jpg", 502)):
        for attempt in (1, 2):
            resp = client.get(f"/web/{name}?w=40")
            assert resp.status_code == status, (name, resp.status_code)
            assert origin.state.count(f"/{name}") == attempt  # nothing was kept: asked again


def test_the_app_still_serves_after_all_of_this(shield_app, client, folder):
    for kind, body in {**NOT_IMAGES, **BOMBS, **DAMAGED}.items():
        (folder / f"{kind}.jpg").write_bytes(body)
        client.get(f"/demo/{kind}.jpg?w=33")
    resp = client.get("/demo/coffee.png?w=50")
    assert resp.status_code == 200 and imaging.decode(resp.data).size[0] == 50
    assert io.BytesIO(resp.data).getbuffer().nbytes == int(resp.headers["Content-Length"])
