"""What browsers and CDNs rely on (contract section 2): CORS, caching, validators, Range, Accept.

Each test goes through the real app with a real HTTP origin or a folder origin
and real ImageMagick; none of them holds without the change it is named after.
"""

import io
import os
import socket

import pytest
from PIL import Image

from shield.headers import http_date
from shield.image import jpegmeta
from tests import imaging
from tests.conftest import server_config
from tests.security import client_of

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_JXL = "image/jxl,image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"


@pytest.fixture
def site(make_app, folder, origin):
    app = make_app(
        {
            "demo": {"origin": str(folder) + "/"},
            "web": {"origin": origin.url + "/", "allow_private_origin": True, "negative_ttl": 30},
            "shop": {"origin": str(folder) + "/", "cors_origins": ["https://shop.example"]},
            "fixed": {"origin": str(folder) + "/", "immutable": True},
            "short": {"origin": str(folder) + "/", "browser_ttl": 5},
            "jxl": {"origin": str(folder) + "/", "format_order": ["jxl", "avif", "webp", "jpeg"]},
            "meta": {"origin": origin.url + "/", "allow_private_origin": True, "keep_metadata": True},
            "nocache404": {"origin": origin.url + "/", "allow_private_origin": True, "negative_ttl": 0},
        }
    )
    return client_of(app), folder, origin


# -- CORS, Timing-Allow-Origin, Cross-Origin-Resource-Policy


@pytest.mark.parametrize("query", ["w=120", "lqip=true", "blur=true", ""])
def test_public_answers_are_readable_from_any_page(site, query):
    client, _folder, _origin = site
    for _ in range(2):  # the miss, then the hit (from memory)
        resp = client.get(f"/demo/rocket.jpg?{query}", headers={"Accept": CHROME, "Origin": "https://a.test"})
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Timing-Allow-Origin"] == "*"
        assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        if query == "blur=true":
            assert resp.headers["Content-Type"] == "application/json"
            assert "Vary" not in resp.headers  # the JSON does not depend on Accept
        else:
            assert resp.headers["Vary"] == "Accept"
    assert resp.headers["X-Cache"] == "HIT"


def test_cors_origins_narrow_the_headers_to_listed_pages(site):
    client, _folder, _origin = site
    for _ in range(3):  # miss, disk hit, memory hit
        listed = client.get("/shop/rocket.jpg?w=90", headers={"Origin": "https://shop.example"})
        assert listed.status_code == 200
        assert listed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert listed.headers["Timing-Allow-Origin"] == "https://shop.example"
        assert listed.headers["Vary"] == "Accept, Origin"
        other = client.get("/shop/rocket.jpg?w=90", headers={"Origin": "https://evil.example"})
        assert other.status_code == 200 and other.data == listed.data
        assert "Access-Control-Allow-Origin" not in other.headers
        assert "Timing-Allow-Origin" not in other.headers
        assert other.headers["Vary"] == "Accept, Origin"
        blur = client.get("/shop/rocket.jpg?blur=true", headers={"Origin": "https://shop.example"})
        assert blur.headers["Vary"] == "Origin"
        assert blur.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert other.headers["X-Cache"] == "HIT"


def test_options_answers_204_with_allow_and_the_preflight(site):
    client, _folder, _origin = site
    plain = client.options("/demo/rocket.jpg")
    assert plain.status_code == 204 and plain.data == b""
    assert plain.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert "Access-Control-Allow-Origin" not in plain.headers
    preflight = {
        "Origin": "https://a.test",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range, if-none-match",
    }
    resp = client.options("/demo/rocket.jpg?w=10", headers=preflight)
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert resp.headers["Access-Control-Allow-Headers"] == "range, if-none-match"
    assert resp.headers["Access-Control-Max-Age"] == "86400"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    narrowed = client.options("/shop/rocket.jpg", headers=preflight)
    assert narrowed.status_code == 204 and "Access-Control-Allow-Origin" not in narrowed.headers
    listed = client.options("/shop/rocket.jpg", headers=dict(preflight, Origin="https://shop.example"))
    assert listed.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert listed.headers["Vary"] == "Origin"
    asset = client.options("/c/0123456789.webp", headers=preflight)
    assert asset.status_code == 204 and asset.headers["Access-Control-Allow-Origin"] == "*"


def test_other_methods_get_405_with_allow(site):
    client, _folder, _origin = site
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        resp = client.open("/demo/rocket.jpg", method=method)
        assert resp.status_code == 405
        assert resp.headers["Allow"] == "GET, HEAD, OPTIONS"
        assert resp.get_json()["error"]["code"] == "method_not_allowed"


# -- Cache-Control by what the URL is


def test_cache_control_follows_browser_ttl_unless_the_bytes_never_change(site):
    client, _folder, _origin = site
    default = client.get("/demo/rocket.jpg?w=50")
    assert default.headers["Cache-Control"] == "public, max-age=86400, stale-while-revalidate=60"
    short = client.get("/short/rocket.jpg?w=50")
    assert short.headers["Cache-Control"] == "public, max-age=5, stale-while-revalidate=60"
    fixed = client.get("/fixed/rocket.jpg?w=50")
    assert fixed.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    blur = client.get("/short/rocket.jpg?blur=true")
    assert blur.headers["Cache-Control"] == "public, max-age=5, stale-while-revalidate=60"
    for resp in (client.get("/short/rocket.jpg?w=50"), client.head("/short/rocket.jpg?w=50")):
        assert resp.headers["X-Cache"] == "HIT"
        assert resp.headers["Cache-Control"] == "public, max-age=5, stale-while-revalidate=60"
    not_modified = client.get("/short/rocket.jpg?w=50", headers={"If-None-Match": short.headers["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.headers["Cache-Control"] == "public, max-age=5, stale-while-revalidate=60"


def test_origin_404_and_410_are_cacheable_for_negative_ttl(site):
    client, _folder, _origin = site
    for _ in range(2):  # from the origin, then remembered
        missing = client.get("/web/nothing.jpg?w=10")
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
        max_age = int(missing.headers["Cache-Control"].removeprefix("public, max-age="))
        assert 0 < max_age <= 30
        gone = client.get("/web/gone.jpg")
        assert gone.status_code == 410
        assert gone.headers["Cache-Control"].startswith("public, max-age=")
    unremembered = client.get("/nocache404/nothing.jpg")
    assert unremembered.status_code == 404 and unremembered.headers["Cache-Control"] == "no-store"
    unknown = client.get("/nosuchproject/a.jpg")
    assert unknown.status_code == 404 and unknown.headers["Cache-Control"] == "no-store"


# -- no parameters: the best format when smaller, metadata cut out


@pytest.mark.parametrize("name", ["coffee.png", "astronaut.png", "rocket.jpg"])
def test_no_parameters_give_a_chrome_user_the_smaller_avif(site, name):
    client, folder, _origin = site
    original = (folder / name).read_bytes()
    resp = client.get(f"/demo/{name}", headers={"Accept": CHROME})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/avif"
    assert len(resp.data) < len(original) * 0.6
    assert 'process;desc="transformed"' in resp.headers["Server-Timing"]
    src = Image.open(io.BytesIO(original)).convert("RGB")
    out = imaging.decode(resp.data).convert("RGB")
    assert out.size == src.size
    assert imaging.ssim(src, out) > 0.9
    again = client.get(f"/demo/{name}", headers={"Accept": CHROME})
    assert again.headers["X-Cache"] == "HIT" and again.data == resp.data


def test_fmt_original_is_the_original_and_takes_no_transform(site, folder):
    client, folder, _origin = site
    resp = client.get("/demo/coffee.png?fmt=original", headers={"Accept": CHROME})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    assert resp.data == (folder / "coffee.png").read_bytes()
    for query in ("fmt=original&w=100", "fmt=original&q=50", "fmt=original&blur=true"):
        bad = client.get(f"/demo/coffee.png?{query}")
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_param"


def test_a_format_the_client_already_gets_is_passed_through(site, folder):
    client, folder, _origin = site
    original = (folder / "coffee.png").read_bytes()
    # A client that takes PNG and nothing better: the PNG is re-encoded only if JPEG wins.
    resp = client.get("/demo/coffee.png", headers={"Accept": "image/png"})
    assert resp.status_code == 200 and resp.data == original
    assert 'process;desc="passthrough"' in resp.headers["Server-Timing"]


def gps_jpeg():
    """A JPEG with an EXIF GPS position, an XMP packet, a comment and an sRGB ICC profile."""
    im = Image.open(io.BytesIO(imaging.sample("rocket.jpg"))).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    icc = None
    if os.path.exists("/usr/share/color/icc/sRGB.icc"):
        with open("/usr/share/color/icc/sRGB.icc", "rb") as fh:
            icc = fh.read()
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85, exif=exif, icc_profile=icc, comment=b"shot at home")
    body = out.getvalue()
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><exif:GPSLatitude>48,51N</exif:GPSLatitude></x:xmpmeta>"
    )
    segment = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    return body[:2] + segment + body[2:], icc


def test_passed_through_jpegs_lose_exif_and_xmp_but_not_a_pixel(site):
    client, _folder, origin = site
    body, icc = gps_jpeg()
    origin.state.put("/gps.jpg", body)
    resp = client.get("/web/gps.jpg", headers={"Accept": "image/jpeg"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"
    assert 'process;desc="passthrough"' in resp.headers["Server-Timing"]
    out = resp.data
    assert b"Exif\x00\x00" not in out and b"PhoneMaker" not in out and b"GPSLatitude" not in out
    assert b"shot at home" not in out and b"ns.adobe.com/xap" not in out
    stripped = Image.open(io.BytesIO(out))
    assert not stripped.getexif() and 0x8825 not in stripped.getexif()
    if icc:
        assert stripped.info.get("icc_profile") == icc
    before = Image.open(io.BytesIO(body))
    assert before.getexif().get_ifd(0x8825)  # the source had a GPS position
    assert stripped.tobytes() == before.tobytes()  # the same pixels, bit for bit
    assert len(out) < len(body)
    # keep_metadata: the bytes as they are.
    kept = client.get("/meta/gps.jpg", headers={"Accept": "image/jpeg"})
    assert kept.data == body


def test_fmt_original_keeps_only_the_orientation_of_a_rotated_jpeg():
    rotated = imaging.exif_rotated_jpeg(orientation=6, size=(200, 100))
    out = jpegmeta.strip(rotated, 6)
    im = Image.open(io.BytesIO(out))
    assert dict(im.getexif()) == {0x0112: 6}
    assert im.tobytes() == Image.open(io.BytesIO(rotated)).tobytes()
    assert jpegmeta.strip(b"not a jpeg") == b"not a jpeg"
    assert jpegmeta.strip(rotated[:40]) == rotated[:40]  # cut off: left alone


def test_a_rotated_jpeg_is_never_passed_through(site):
    client, _folder, origin = site
    origin.state.put("/turned.jpg", imaging.exif_rotated_jpeg(orientation=6, size=(200, 100)))
    resp = client.get("/web/turned.jpg", headers={"Accept": "image/jpeg"})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"
    assert imaging.decode(resp.data).size == (100, 200)
    assert 'process;desc="transformed"' in resp.headers["Server-Timing"]
    assert not Image.open(io.BytesIO(resp.data)).getexif().get(0x0112, 1) != 1


# -- validators: Last-Modified, If-Modified-Since, If-Match


def test_last_modified_and_if_modified_since(site):
    client, folder, _origin = site
    mtime = int((folder / "rocket.jpg").stat().st_mtime)
    os.utime(folder / "rocket.jpg", (mtime - 3600, mtime - 3600))
    first = client.get("/demo/rocket.jpg?w=70")
    assert first.headers["Last-Modified"] == http_date(mtime - 3600)
    for _ in range(2):  # the disk hit, then from memory
        same = client.get(
            "/demo/rocket.jpg?w=70", headers={"If-Modified-Since": first.headers["Last-Modified"]}
        )
        assert same.status_code == 304 and same.data == b""
        assert same.headers["ETag"] == first.headers["ETag"]
        later = client.get("/demo/rocket.jpg?w=70", headers={"If-Modified-Since": http_date(mtime)})
        assert later.status_code == 304
        earlier = client.get("/demo/rocket.jpg?w=70", headers={"If-Modified-Since": http_date(mtime - 7200)})
        assert earlier.status_code == 200 and earlier.data == first.data
        # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
        both = client.get(
            "/demo/rocket.jpg?w=70",
            headers={"If-None-Match": '"other"', "If-Modified-Since": first.headers["Last-Modified"]},
        )
        assert both.status_code == 200
        junk = client.get("/demo/rocket.jpg?w=70", headers={"If-Modified-Since": "yesterday"})
        assert junk.status_code == 200


def test_an_http_origins_last_modified_is_passed_on(site):
    client, _folder, origin = site
    origin.state.put(
        "/dated.jpg", imaging.sample("rocket.jpg"), **{"Last-Modified": "Tue, 03 Mar 2020 10:00:00 GMT"}
    )
    resp = client.get("/web/dated.jpg?w=60")
    assert resp.headers["Last-Modified"] == "Tue, 03 Mar 2020 10:00:00 GMT"


def test_if_match_that_does_not_match_is_412(site):
    client, _folder, _origin = site
    first = client.get("/demo/rocket.jpg?w=80")
    etag = first.headers["ETag"]
    for _ in range(2):
        assert client.get("/demo/rocket.jpg?w=80", headers={"If-Match": etag}).status_code == 200
        assert client.get("/demo/rocket.jpg?w=80", headers={"If-Match": "*"}).status_code == 200
        assert client.get("/demo/rocket.jpg?w=80", headers={"If-Match": f'"x", {etag}'}).status_code == 200
        failed = client.get("/demo/rocket.jpg?w=80", headers={"If-Match": '"other"'})
        assert failed.status_code == 412
        assert failed.get_json()["error"]["code"] == "precondition_failed"
        weak = client.get("/demo/rocket.jpg?w=80", headers={"If-Match": "W/" + etag})
        assert weak.status_code == 412  # If-Match compares strongly


# -- Range


@pytest.mark.parametrize("query", ["w=300&fmt=png", "", "w=30"])
def test_a_single_range_gives_206(site, query):
    client, _folder, _origin = site
    url = f"/demo/astronaut.png?{query}"
    full = client.get(url, headers={"Accept": "image/png"})
    assert full.status_code == 200 and full.headers["Accept-Ranges"] == "bytes"
    body, size = full.data, len(full.data)
    client.application.extensions["shield"].delivery.hot.clear()
    for _ in range(2):  # from disk (a file for large entries), then from memory
        part = client.get(url, headers={"Accept": "image/png", "Range": "bytes=10-109"})
        assert part.status_code == 206 and part.data == body[10:110]
        assert part.headers["Content-Range"] == f"bytes 10-109/{size}"
        assert part.headers["Content-Length"] == "100"
        tail = client.get(url, headers={"Accept": "image/png", "Range": "bytes=-20"})
        assert tail.status_code == 206 and tail.data == body[-20:]
        rest = client.get(url, headers={"Accept": "image/png", "Range": f"bytes={size - 5}-"})
        assert rest.status_code == 206 and rest.data == body[-5:]
        past = client.get(url, headers={"Accept": "image/png", "Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
        assert past.get_json()["error"]["code"] == "range_not_satisfiable"
        many = client.get(url, headers={"Accept": "image/png", "Range": "bytes=0-1,5-6"})
        assert many.status_code == 200 and many.data == body
        matching = client.get(
            url, headers={"Accept": "image/png", "Range": "bytes=0-9", "If-Range": full.headers["ETag"]}
        )
        assert matching.status_code == 206 and matching.data == body[:10]
        stale = client.get(url, headers={"Accept": "image/png", "Range": "bytes=0-9", "If-Range": '"old"'})
        assert stale.status_code == 200 and stale.data == body
        dated = client.get(
            url,
            headers={"Accept": "image/png", "Range": "bytes=0-9", "If-Range": full.headers["Last-Modified"]},
        )
        assert dated.status_code == 206


def test_a_range_on_a_miss(site):
    client, _folder, _origin = site
    part = client.get("/demo/rocket.jpg?w=222", headers={"Accept": "image/webp", "Range": "bytes=0-15"})
    assert part.status_code == 206 and part.headers["X-Cache"] == "MISS"
    whole = client.get("/demo/rocket.jpg?w=222", headers={"Accept": "image/webp"})
    assert whole.headers["X-Cache"] == "HIT"
    assert part.data == whole.data[:16] and part.data[8:12] == b"WEBP"
    assert part.headers["Content-Range"] == f"bytes 0-15/{len(whole.data)}"


# -- Accept


def test_accept_q_values_and_406(site):
    client, _folder, _origin = site
    no_jpeg = client.get("/demo/rocket.jpg?w=50", headers={"Accept": "image/jpeg;q=0, */*"})
    assert no_jpeg.status_code == 200 and no_jpeg.headers["Content-Type"] == "image/png"
    no_avif = client.get("/demo/rocket.jpg?w=50", headers={"Accept": "image/avif;q=0, image/webp, */*"})
    assert no_avif.headers["Content-Type"] == "image/webp"
    wildcard_only = client.get("/demo/rocket.jpg?w=50", headers={"Accept": "image/*"})
    assert wildcard_only.headers["Content-Type"] == "image/jpeg"
    for accept in ("text/html", "application/json", "image/*;q=0", "image/svg+xml"):
        refused = client.get("/demo/rocket.jpg?w=50", headers={"Accept": accept})
        assert refused.status_code == 406, accept
        assert refused.get_json()["error"]["code"] == "not_acceptable"
        assert refused.headers["X-Content-Type-Options"] == "nosniff"
    explicit = client.get("/demo/rocket.jpg?w=50&fmt=webp", headers={"Accept": "image/webp;q=0, */*"})
    assert explicit.status_code == 406
    asked = client.get("/demo/rocket.jpg?w=50&fmt=webp", headers={"Accept": "*/*"})
    assert asked.status_code == 200 and asked.headers["Content-Type"] == "image/webp"
    blur = client.get("/demo/rocket.jpg?blur=true", headers={"Accept": "application/json"})
    assert blur.status_code == 200 and blur.get_json()["blurhash"]


def test_jpeg_xl_only_where_the_project_lists_it(site):
    import pillow_jxl  # noqa: F401 - registers the decoder for the check below

    client, _folder, _origin = site
    listed = client.get("/jxl/rocket.jpg?w=200", headers={"Accept": SAFARI_JXL})
    assert listed.status_code == 200 and listed.headers["Content-Type"] == "image/jxl"
    im = Image.open(io.BytesIO(listed.data))
    assert im.format == "JXL" and im.size == (200, 133)
    assert imaging.ssim(im.convert("RGB"), imaging.decode(client.get("/demo/rocket.jpg?w=200").data)) > 0.85
    unlisted = client.get("/demo/rocket.jpg?w=200", headers={"Accept": SAFARI_JXL})
    assert unlisted.headers["Content-Type"] == "image/avif"
    chrome = client.get("/jxl/rocket.jpg?w=200", headers={"Accept": CHROME})
    assert chrome.headers["Content-Type"] == "image/avif"  # jxl is never sent unasked
    explicit = client.get("/demo/rocket.jpg?w=200&fmt=jxl")
    assert explicit.status_code == 200 and explicit.headers["Content-Type"] == "image/jxl"


def test_format_order_reorders_the_choice(make_app, folder):
    app = make_app({"webpfirst": {"origin": str(folder) + "/", "format_order": ["webp", "avif", "jpeg"]}})
    client = client_of(app)
    resp = client.get("/webpfirst/rocket.jpg?w=100", headers={"Accept": CHROME})
    assert resp.headers["Content-Type"] == "image/webp"
    with pytest.raises(Exception, match="format_order"):
        make_app({"x": {"origin": str(folder) + "/", "format_order": ["bmp"]}})


# -- request size: 414 and 431 as JSON


def test_a_request_line_of_8190_bytes_is_served_and_longer_is_414(site):
    client, _folder, _origin = site
    base = "/demo/rocket.jpg?w=10&pad="
    fits = base + "x" * (8190 - len("GET ") - len(" HTTP/1.1") - len(base))
    assert client.get(fits).status_code == 200
    too_long = client.get(fits + "x")
    assert too_long.status_code == 414 and too_long.get_json()["error"]["code"] == "uri_too_long"
    assert too_long.headers["X-Content-Type-Options"] == "nosniff"


def test_too_many_headers_are_431(site):
    client, _folder, _origin = site
    many = {f"X-Pad-{i}": "1" for i in range(120)}
    resp = client.get("/demo/rocket.jpg?w=10", headers=many)
    assert resp.status_code == 431 and resp.get_json()["error"]["code"] == "headers_too_large"
    fine = client.get("/demo/rocket.jpg?w=10", headers={f"X-Pad-{i}": "1" for i in range(40)})
    assert fine.status_code == 200


def raw_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(rest) >= length[0]:
                    break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.slow
def test_gunicorn_serves_8190_byte_lines_and_answers_json_past_its_limits(gunicorn, tmp_path, folder):
    server = gunicorn(server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n'), workers=1)

    def line_of(length):
        start = "GET /demo/rocket.jpg?w=10&pad="
        return start + "x" * (length - len(start) - len(" HTTP/1.1")) + " HTTP/1.1"

    served_line = line_of(8190)
    assert len(served_line) == 8190
    status, headers, _ = raw_exchange(
        server.port, (served_line + "\r\nHost: a\r\nConnection: close\r\n\r\n").encode()
    )
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    status, headers, body = raw_exchange(server.port, (line_of(8191) + "\r\nHost: a\r\n\r\n").encode())
    assert status == 414 and headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b'"uri_too_long"' in body and b"xxxx" not in body
    # 100 header fields (Host, 98 more, Connection) are served; 121 are too many.
    fields = "".join(f"X-Pad-{i}: 1\r\n" for i in range(98))
    status, _, _ = raw_exchange(
        server.port,
        f"GET /demo/rocket.jpg?w=10 HTTP/1.1\r\nHost: a\r\n{fields}Connection: close\r\n\r\n".encode(),
    )
    assert status == 200
    fields = "".join(f"X-Pad-{i}: 1\r\n" for i in range(120))
    status, headers, body = raw_exchange(
        server.port, f"GET /demo/rocket.jpg?w=10 HTTP/1.1\r\nHost: a\r\n{fields}\r\n".encode()
    )
    assert status == 431 and headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff" and b'"headers_too_large"' in body
    big = "X-Big: " + "y" * 9000 + "\r\n"
    status, headers, body = raw_exchange(
        server.port, f"GET /demo/rocket.jpg?w=10 HTTP/1.1\r\nHost: a\r\n{big}\r\n".encode()
    )
    assert status == 431 and b'"headers_too_large"' in body


@pytest.mark.slow
def test_ranges_of_large_cached_files_through_gunicorn(gunicorn, tmp_path, folder):
    import requests

    server = gunicorn(server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n'), workers=1)
    url = server.url + "/demo/astronaut.png?w=400&fmt=png"
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and len(whole.content) > 100_000  # kept as a file in the cache
    size = len(whole.content)
    for _ in range(3):
        part = requests.get(url, headers={"Range": "bytes=50000-50099"}, timeout=30)
        assert part.status_code == 206 and part.content == whole.content[50000:50100]
        assert part.headers["Content-Range"] == f"bytes 50000-50099/{size}"
        tail = requests.get(url, headers={"Range": "bytes=-1000"}, timeout=30)
        assert tail.status_code == 206 and tail.content == whole.content[-1000:]
