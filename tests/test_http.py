"""The public URL surface through Flask's test client, against a folder and a real HTTP origin."""

import json
import os

import pytest

from shield.image import jpegmeta
from tests import imaging

AVIF = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
WEBP = "image/webp,image/apng,image/*,*/*;q=0.8"


def error_code(resp):
    assert resp.content_type == "application/json"
    return json.loads(resp.data)["error"]["code"]


@pytest.fixture
def http_app(make_app, origin):
    for name in ("rocket.jpg", "coffee.png", "astronaut.png"):
        origin.state.put("/" + name, imaging.sample(name))
    origin.state.put("/logo.png", imaging.encode(imaging.rgba_logo(120, 80), "PNG"))
    origin.state.put("/rotated.jpg", imaging.exif_rotated_jpeg(6, (200, 100)))
    origin.state.put("/anim.gif", imaging.animated_gif(4, (40, 30)))
    origin.state.put(
        "/tagged.jpg",
        imaging.sample("rocket.jpg"),
        **{"Surrogate-Key": "product-7 summer", "Cache-Tag": "team-a"},
    )
    return make_app({"web": {"origin": origin.url, "allow_private_origin": True}})


@pytest.fixture
def http(http_app):
    return http_app.test_client()


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=320", (320, 214)),
        ("h=100", (150, 100)),
        ("w=300&h=300", (300, 300)),
        ("w=300&h=300&fit=contain", (300, 300)),
        ("w=300&h=300&fit=inside", (300, 200)),
        ("w=300&h=300&fit=fill", (300, 300)),
        ("w=300&h=300&fit=face", (300, 300)),
        ("w=300&h=300&fit=auto", (300, 300)),
        ("w=150&dpr=2", (300, 200)),
        ("w=5000", (640, 427)),
        ("w=5000&fit=fill", (5000, 3336)),
        ("w=100&h=100&dpr=1.5", (150, 150)),
    ],
)
def test_each_parameter_gives_the_right_size(http, query, size):
    resp = http.get(f"/web/rocket.jpg?{query}")
    assert resp.status_code == 200
    im = imaging.decode(resp.data)
    assert im.size == size
    assert int(resp.headers["Content-Length"]) == len(resp.data)


def test_cover_crop_is_centred_and_similar_to_a_careful_resize(http):
    from PIL import Image

    resp = http.get("/web/coffee.png?w=300&h=200&fmt=png")
    source = imaging.decode(imaging.sample("coffee.png")).convert("RGB")
    reference = source.resize((300, 200), Image.Resampling.LANCZOS)
    assert imaging.ssim(imaging.decode(resp.data), reference) > 0.97


@pytest.mark.parametrize(
    ("fmt", "accept", "content_type", "pil"),
    [
        ("auto", AVIF, "image/avif", "AVIF"),
        ("auto", WEBP, "image/webp", "WEBP"),
        ("auto", "*/*", "image/jpeg", "JPEG"),
        ("auto", "", "image/jpeg", "JPEG"),
        ("avif", "", "image/avif", "AVIF"),
        ("webp", "", "image/webp", "WEBP"),
        ("jpeg", AVIF, "image/jpeg", "JPEG"),
        ("png", AVIF, "image/png", "PNG"),
    ],
)
def test_formats_and_negotiation(http, fmt, accept, content_type, pil):
    resp = http.get(f"/web/rocket.jpg?w=200&fmt={fmt}", headers={"Accept": accept})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Vary"] == "Accept"
    im = imaging.decode(resp.data)
    assert im.format == pil and im.size == (200, 133)


def test_transparent_source_negotiates_png_without_modern_formats(http):
    resp = http.get("/web/logo.png?w=60", headers={"Accept": "*/*"})
    assert resp.headers["Content-Type"] == "image/png"
    for accept, ctype in ((AVIF, "image/avif"), (WEBP, "image/webp")):
        resp = http.get("/web/logo.png?w=60", headers={"Accept": accept})
        assert resp.headers["Content-Type"] == ctype
        rgba = imaging.decode(resp.data).convert("RGBA")
        assert rgba.getpixel((0, 0))[3] < 20 and rgba.getpixel((30, 20))[3] > 235


def test_exif_rotated_jpeg_is_served_upright(http):
    resp = http.get("/web/rotated.jpg?w=50&fmt=png")
    im = imaging.decode(resp.data).convert("RGB")
    assert im.size == (50, 100)
    # Orientation 6: the left (red) half of the stored picture is on top once upright.
    assert imaging.close_color(imaging.mean_color(im, (0, 0, 50, 45)), (220, 30, 30), 40)
    assert imaging.close_color(imaging.mean_color(im, (0, 55, 50, 100)), (30, 30, 220), 40)


def test_animated_gif_stays_animated_in_webp(http):
    resp = http.get("/web/anim.gif?w=20", headers={"Accept": WEBP})
    assert resp.headers["Content-Type"] == "image/webp"
    assert imaging.decode(resp.data).n_frames == 4
    resp = http.get("/web/anim.gif?w=20&fmt=jpeg")
    assert getattr(imaging.decode(resp.data), "n_frames", 1) == 1


def test_second_request_is_a_hit_with_identical_bytes_and_no_origin_request(http, origin):
    first = http.get("/web/rocket.jpg?w=250", headers={"Accept": WEBP})
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Cache-Status"] == "shield; fwd=miss; stored"
    timing = first.headers["Server-Timing"]
    assert (
        'cache;desc="MISS"' in timing and "origin;dur=" in timing and 'process;desc="transformed"' in timing
    )
    fetched = origin.state.count("/rocket.jpg")
    assert fetched == 1
    second = http.get("/web/rocket.jpg?w=250", headers={"Accept": WEBP})
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["Cache-Status"] == "shield; hit"
    assert second.headers["Server-Timing"].startswith('cache;desc="HIT";dur=')
    assert second.data == first.data
    assert second.headers["ETag"] == first.headers["ETag"]
    assert origin.state.count("/rocket.jpg") == fetched


def test_contract_headers_on_every_image(http):
    resp = http.get("/web/tagged.jpg?w=100")
    h = resp.headers
    assert h["Cache-Control"] == "public, max-age=86400, stale-while-revalidate=60"
    assert h["Vary"] == "Accept"
    assert h["Access-Control-Allow-Origin"] == "*" and h["Timing-Allow-Origin"] == "*"
    assert h["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert h["Accept-Ranges"] == "bytes" and h["Last-Modified"].endswith(" GMT")
    assert h["ETag"].startswith('"') and h["ETag"].endswith('"') and not h["ETag"].startswith("W/")
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Content-Security-Policy"] == "default-src 'none'"
    assert h["Cache-Tag"].split(",") == ["project-web", "product-7", "summer", "team-a"]
    assert "X-Smart-Crop" not in h


def test_unknown_params_and_raw_accept_reuse_the_entry(http, origin):
    assert http.get("/web/rocket.jpg?w=180", headers={"Accept": AVIF}).headers["X-Cache"] == "MISS"
    again = http.get(
        "/web/rocket.jpg?w=180&utm_source=x&cb=123", headers={"Accept": "image/avif, image/webp, */*"}
    )
    assert again.headers["X-Cache"] == "HIT"
    assert (
        http.get("/web/rocket.jpg?w=180&q=80&fit=contain", headers={"Accept": "image/avif"}).headers[
            "X-Cache"
        ]
        == "HIT"
    )


def test_if_none_match_gives_304_without_body(http):
    first = http.get("/web/rocket.jpg?w=120")
    resp = http.get("/web/rocket.jpg?w=120", headers={"If-None-Match": first.headers["ETag"]})
    assert resp.status_code == 304 and resp.data == b""
    assert resp.headers["ETag"] == first.headers["ETag"] and resp.headers["Vary"] == "Accept"
    resp = http.get("/web/rocket.jpg?w=120", headers={"If-None-Match": '"other"'})
    assert resp.status_code == 200


def test_head_has_headers_but_no_body(http):
    get = http.get("/web/rocket.jpg?w=130")
    head = http.head("/web/rocket.jpg?w=130")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["ETag"] == get.headers["ETag"]
    missing = http.head("/web/missing.jpg")
    assert missing.status_code == 404 and missing.data == b""


def test_passthrough_sends_the_original_bytes(http):
    resp = http.get("/web/rocket.jpg")
    assert resp.status_code == 200 and resp.data == jpegmeta.strip(imaging.sample("rocket.jpg"))
    assert 'process;desc="passthrough"' in resp.headers["Server-Timing"]
    # WebP originals pass through only to clients that accept WebP.


def test_folder_origin_serves_and_caches(client, folder):
    first = client.get("/demo/coffee.png?w=100")
    assert first.status_code == 200 and imaging.decode(first.data).size == (100, 67)
    assert client.get("/demo/coffee.png?w=100").headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    "path",
    [
        "/demo/../secret.txt",
        "/demo/%2e%2e/secret.txt",
        "/demo/%2E%2E/secret.txt",
        "/demo//etc/passwd",
        "/demo/sub/../../secret.txt",
        "/demo/./coffee.png",
        "/demo/%2fetc%2fpasswd",
        "/demo/link-out/secret.txt",
        "/demo/escape.jpg",
        "/demo/",
        "/demo/sub",
    ],
)
def test_path_traversal_gives_404(client, folder, path):
    (folder.parent / "secret.txt").write_text("top secret")
    (folder / "sub").mkdir()
    os.symlink(folder.parent, folder / "link-out")
    os.symlink(folder.parent / "secret.txt", folder / "escape.jpg")
    resp = client.get(path)
    assert resp.status_code == 404
    assert b"top secret" not in resp.data
    assert resp.content_type == "application/json"


def test_error_rows_of_the_contract(make_app, origin, folder):
    origin.state.put("/big.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/text.jpg", b"just some text, not an image")
    origin.state.put("/svg.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>')
    app = make_app(
        {
            "web": {"origin": origin.url, "allow_private_origin": True},
            "off": {"origin": str(folder) + "/", "enabled": False},
        },
        max_source_bytes=50_000,
    )
    c = app.test_client()
    cases = [
        ("/web/rocket.jpg?w=abc", 400, "invalid_param"),
        ("/nope/rocket.jpg", 404, "project_not_found"),
        ("/off/coffee.png", 404, "project_not_found"),
        ("/web/missing.jpg", 404, "not_found"),
        ("/web/gone.jpg", 410, "gone"),
        ("/web/big.jpg", 413, "source_too_large"),
        ("/web/text.jpg", 415, "unsupported_source"),
        ("/web/svg.jpg", 415, "unsupported_source"),
    ]
    for url, status, code in cases:
        resp = c.get(url)
        assert (resp.status_code, error_code(resp)) == (status, code), url
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert json.loads(resp.data)["error"]["message"]


def test_pixel_bomb_gives_413(make_app, tmp_path):
    import struct
    import zlib

    root = tmp_path / "bomb"
    root.mkdir()
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    (root / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )
    c = make_app({"b": {"origin": str(root) + "/"}}).test_client()
    resp = c.get("/b/bomb.png?w=100")
    assert (resp.status_code, error_code(resp)) == (413, "source_too_large")


def test_origin_failures_give_502_and_504(make_app, origin):
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    app = make_app(
        {
            "web": {"origin": origin.url, "allow_private_origin": True},
            "dead": {"origin": "http://127.0.0.1:9/", "allow_private_origin": True},
        },
        origin_timeout=0.5,
    )
    c = app.test_client()
    origin.state.mode = "down"
    resp = c.get("/web/a.jpg?w=10")
    assert (resp.status_code, error_code(resp)) == (502, "origin_error")
    resp = c.get("/dead/a.jpg")
    assert (resp.status_code, error_code(resp)) == (502, "origin_error")
    origin.state.mode, origin.state.delay = "ok", 1.5
    resp = c.get("/web/a.jpg?w=10")
    assert (resp.status_code, error_code(resp)) == (504, "origin_timeout")


def test_private_origin_address_is_refused_by_default(make_app, origin):
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    c = make_app({"web": {"origin": origin.url}}).test_client()
    resp = c.get("/web/a.jpg")
    assert (resp.status_code, error_code(resp)) == (502, "origin_error")
    assert "allow_private_origin" in json.loads(resp.data)["error"]["message"]
    assert origin.state.count() == 0


def test_redirects_followed_only_on_the_same_host(http, origin):
    resp = http.get("/web/redirect-here/rocket.jpg?w=50")
    assert resp.status_code == 200 and imaging.decode(resp.data).size == (50, 33)
    resp = http.get("/web/redirect-away/rocket.jpg?w=50")
    assert (resp.status_code, error_code(resp)) == (502, "origin_error")


def test_health_and_unknown_routes(client):
    assert client.get("/health").get_json()["status"] == "ok"
    resp = client.get("/")
    assert resp.status_code == 404 and error_code(resp) == "not_found"
    resp = client.post("/demo/coffee.png")
    assert resp.status_code == 405 and error_code(resp) == "method_not_allowed"
