"""Uploads and assets (contract section 10), through gunicorn with two workers."""

import io
import os
import signal
import socket
import struct
import time
import zipfile
import zlib
from types import SimpleNamespace

import pytest
import requests

from shield.image import jpegmeta
from tests import imaging
from tests.conftest import ADMIN_TOKEN, Gunicorn, server_config

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX_BYTES = 2_000_000


def _png_bomb(side=30_000):
    """A real 30,000 x 30,000 1-bit PNG of about 100 KB: 900 megapixels when decoded."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + side // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uploads")
    folder = tmp / "origin"
    folder.mkdir()
    projects = f"""
[projects.shop]
origin = "{folder}/"
cors_origins = ["https://shop.example"]

[projects.blog]
origin = "{folder}/"
temp_upload_ttl = 2

[projects.tiny]
origin = "{folder}/"
upload_quota_bytes = 150000
"""
    config = tmp / "shield.toml"
    config.write_text(server_config(tmp, projects, extra=f"max_source_bytes = {MAX_BYTES}"))
    server = Gunicorn(config, workers=2).start()
    try:
        yield SimpleNamespace(url=server.url, server=server, assets=tmp / "state" / "assets")
    finally:
        server.stop()


def asset_files(site):
    found = []
    for folder, _dirs, files in os.walk(site.assets):
        found += [os.path.join(folder, f) for f in files if not f.startswith(".")]
    return sorted(found)


def call(site, method, path, auth=ADMIN, **kw):
    headers = {**(auth or {}), "Connection": "close", **kw.pop("headers", {})}
    return requests.request(method, site.url + path, headers=headers, timeout=60, **kw)


def key_of(site, project, scopes=None):
    body = {"scopes": scopes} if scopes else {}
    return call(site, "POST", f"/v1/projects/{project}/keys", json=body).json()


def error(resp):
    return resp.status_code, resp.json()["error"]["code"]


def from_other_worker(site, path, than):
    for _ in range(2000):
        resp = call(site, "GET", path, auth=None)
        if resp.headers.get("X-Served-By") != than:
            return resp
    raise AssertionError("the other worker never answered")


def test_signed_browser_upload_served_from_the_other_worker(site):
    key = key_of(site, "shop", ["assets"])
    signed = call(
        site,
        "POST",
        "/v1/uploads/sign",
        auth={"Authorization": f"Bearer {key['secret']}"},
        json={"filename": "Golden Gate Bridge — Sunset.JPG", "content_type": "image/jpeg", "expires_in": 600},
    ).json()
    assert (
        signed["key"].endswith("-golden-gate-bridge-sunset.jpg") and len(signed["key"].split("-", 1)[0]) == 10
    )
    assert "/v1/uploads?token=" in signed["upload_url"] and signed["expires_at"].endswith("Z")
    upload_path = signed["upload_url"].split("127.0.0.1", 1)[-1].split("/", 1)[1]
    resp = call(
        site,
        "POST",
        "/" + upload_path,
        auth=None,
        headers={"Origin": "https://shop.example"},
        files={"file": ("sunset.jpg", imaging.sample("rocket.jpg"), "image/jpeg")},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    asset = resp.json()["asset"]
    assert asset["key"] == signed["key"] and (asset["bucket"], asset["projectId"]) == ("shop", "shop")
    assert (asset["size"], asset["type"], asset["width"], asset["height"]) == (112525, "image/jpeg", 640, 427)
    assert asset["url"].endswith(f"/shop/{signed['key']}") and asset["expiresAt"] is None
    served = from_other_worker(site, f"/shop/{signed['key']}?w=300", than=resp.headers["X-Served-By"])
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    assert imaging.decode(served.content).size == (300, 200)
    assert f"asset-{asset['_id']}" in served.headers["Cache-Tag"]
    again = call(
        site, "POST", "/" + upload_path, auth=None, files={"file": ("a.jpg", imaging.sample("rocket.jpg"))}
    )
    assert error(again) == (401, "unauthorized")


def test_temporary_upload_then_persist(site):
    public, backend = key_of(site, "shop", ["upload"]), key_of(site, "shop", ["assets"])
    temp = call(
        site,
        "POST",
        f"/v1/uploads?key={public['id']}",
        auth=None,
        files={"file": ("Café Crème.png", imaging.sample("coffee.png"))},
    )
    assert temp.status_code == 201, temp.text
    body = temp.json()
    assert body["tempAssetId"].startswith("temp_") and body["name"] == "Café Crème.png"
    assert (body["size"], body["type"]) == (466706, "image/png") and body["expiresAt"].endswith("Z")
    auth = {"Authorization": f"Bearer {backend['secret']}"}
    first = call(site, "POST", "/asset/upload/persist", auth=auth, json={"tempAssetId": body["tempAssetId"]})
    assert first.status_code == 200, first.text
    asset = first.json()["asset"]
    assert asset["key"].endswith("-cafe-creme.png") and asset["expiresAt"] is None
    again = call(site, "POST", "/v1/assets/persist", auth=auth, json={"tempAssetId": body["tempAssetId"]})
    assert again.status_code == 200 and again.json()["asset"]["_id"] == asset["_id"]
    served = call(site, "GET", f"/shop/{asset['key']}?w=120&fmt=webp", auth=None)
    assert served.status_code == 200 and imaging.decode(served.content).size == (120, 80)
    listed = call(site, "GET", "/v1/assets", auth=auth).json()
    assert asset["_id"] in [a["_id"] for a in listed["items"]]
    assert call(site, "GET", f"/v1/assets/{asset['_id']}", auth=auth).json()["asset"] == asset
    other = key_of(site, "blog", ["assets"])
    foreign = call(
        site,
        "POST",
        "/v1/assets/persist",
        auth={"Authorization": f"Bearer {other['secret']}"},
        json={"tempAssetId": body["tempAssetId"]},
    )
    assert error(foreign) == (404, "not_found")


def test_temporary_uploads_expire(site):
    public, backend = key_of(site, "blog", ["upload"]), key_of(site, "blog", ["assets"])
    temp = call(
        site,
        "POST",
        f"/v1/uploads?key={public['id']}",
        auth=None,
        files={"file": ("x.jpg", imaging.sample("rocket.jpg"))},
    )
    temp_id = temp.json()["tempAssetId"]
    assert any(temp_id in path for path in asset_files(site))
    deadline = time.time() + 10
    while any(temp_id in path for path in asset_files(site)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(temp_id in path for path in asset_files(site)), "the sweep should have deleted it"
    late = call(
        site,
        "POST",
        "/v1/assets/persist",
        auth={"Authorization": f"Bearer {backend['secret']}"},
        json={"tempAssetId": temp_id},
    )
    assert error(late) == (404, "not_found")


def test_delete_then_404_and_no_variant_left(site):
    auth = {"Authorization": f"Bearer {key_of(site, 'shop', ['assets'])['secret']}"}
    made = call(
        site, "POST", "/v1/assets", auth=auth, files={"file": ("photo.jpg", imaging.sample("rocket.jpg"))}
    )
    assert made.status_code == 201
    asset = made.json()["asset"]
    for _ in range(2):
        assert call(site, "GET", f"/shop/{asset['key']}?w=50", auth=None).status_code == 200
    assert call(site, "DELETE", f"/v1/assets/{asset['_id']}", auth=auth).json() == {"ok": True}
    for _ in range(4):
        gone = call(site, "GET", f"/shop/{asset['key']}?w=50", auth=None)
        assert gone.status_code == 404 and "X-Cache" not in gone.headers
    assert call(site, "GET", f"/v1/assets/{asset['_id']}", auth=auth).status_code == 404
    assert not any(asset["_id"] in path for path in asset_files(site))


def _zip_named_jpg():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("page.jpg", b"<!doctype html><html><body>hi</body></html>", (415, "unsupported_source")),
        ("logo.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', (415, "unsupported_source")),
        ("doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF", (415, "unsupported_source")),
        ("archive.jpg", _zip_named_jpg(), (415, "unsupported_source")),
        ("cut.jpg", imaging.sample("rocket.jpg")[:60_000], (400, "invalid_upload")),
        ("bomb.png", _png_bomb(), (413, "source_too_large")),
        ("big.jpg", b"\xff\xd8\xff" + os.urandom(MAX_BYTES + 10), (413, "source_too_large")),
        (None, None, (400, "invalid_upload")),
    ],
)
def test_bad_uploads_leave_nothing(site, name, content, expected):
    auth = {"Authorization": f"Bearer {key_of(site, 'shop', ['assets'])['secret']}"}
    before = asset_files(site)
    files = {"file": (name, content)} if name else {"other": ("x.txt", b"x")}
    resp = call(site, "POST", "/v1/assets", auth=auth, files=files)
    assert error(resp) == expected
    assert asset_files(site) == before and os.listdir(site.assets / ".incoming") == []


def test_odd_file_names_and_quota_and_origins(site):
    auth = {"Authorization": f"Bearer {key_of(site, 'shop', ['assets'])['secret']}"}
    long_name = call(
        site,
        "POST",
        "/v1/assets",
        auth=auth,
        files={"file": ("a" * 400 + ".jpg", imaging.sample("rocket.jpg"))},
    )
    key = long_name.json()["asset"]["key"]
    assert long_name.status_code == 201 and key == key[:10] + "-" + "a" * 80 + ".jpg"
    emoji = call(
        site, "POST", "/v1/assets", auth=auth, files={"file": ("😀🎉.jpg", imaging.sample("rocket.jpg"))}
    )
    assert emoji.status_code == 201 and emoji.json()["asset"]["key"].endswith("-image.jpg")
    twice = call(
        site,
        "POST",
        "/v1/assets",
        auth=auth,
        files={"file": ("a" * 400 + ".jpg", imaging.sample("rocket.jpg"))},
    )
    assert twice.json()["asset"]["_id"] != long_name.json()["asset"]["_id"]

    tiny = {"Authorization": f"Bearer {key_of(site, 'tiny', ['assets'])['secret']}"}
    assert (
        call(
            site, "POST", "/v1/assets", auth=tiny, files={"file": ("a.jpg", imaging.sample("rocket.jpg"))}
        ).status_code
        == 201
    )
    before = asset_files(site)
    over = call(
        site, "POST", "/v1/assets", auth=tiny, files={"file": ("b.jpg", imaging.sample("rocket.jpg"))}
    )
    assert error(over) == (413, "quota_exceeded") and asset_files(site) == before

    public = key_of(site, "shop", ["upload"])
    refused = call(
        site,
        "POST",
        f"/v1/uploads?key={public['id']}",
        auth=None,
        headers={"Origin": "https://evil.example"},
        files={"file": ("a.jpg", imaging.sample("rocket.jpg"))},
    )
    assert error(refused) == (403, "forbidden_origin") and asset_files(site) == before
    preflight = call(
        site,
        "OPTIONS",
        f"/v1/uploads?key={public['id']}",
        auth=None,
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert (
        preflight.status_code == 204
        and preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    )
    no_scope = key_of(site, "shop", ["assets"])
    resp = call(
        site,
        "POST",
        f"/v1/uploads?key={no_scope['id']}",
        auth=None,
        files={"file": ("a.jpg", imaging.sample("rocket.jpg"))},
    )
    assert error(resp) == (403, "forbidden_scope")


def _partial_upload(site, path, total):
    """Send the headers and half of a multipart body, then stop: a client that goes away."""
    boundary = "shieldboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", int(site.url.rsplit(":", 1)[1])))
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
        ).encode()
        + head
        + imaging.sample("rocket.jpg")[:50_000]
    )
    return sock


def test_a_client_that_disconnects_halfway_leaves_nothing(site):
    before = asset_files(site)
    sock = _partial_upload(site, "/v1/assets?project=shop", 200_000)
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    assert asset_files(site) == before and os.listdir(site.assets / ".incoming") == []
    assert call(site, "GET", "/health", auth=None).status_code == 200


def test_a_worker_killed_mid_upload_leaves_nothing_served(site):
    before = asset_files(site)
    workers = site.server.worker_pids()
    socks = [_partial_upload(site, "/v1/assets?project=shop", 200_000) for _ in range(4)]
    time.sleep(0.5)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    for sock in socks:
        sock.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if (
                call(site, "GET", "/health", auth=None).status_code == 200
                and len(site.server.worker_pids()) == 2
            ):
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    assert asset_files(site) == before
    listed = call(site, "GET", "/v1/assets?project=shop&limit=500").json()["items"]
    assert all(call(site, "GET", f"/shop/{a['key']}", auth=None).status_code == 200 for a in listed)


def test_one_signed_token_makes_one_asset_however_many_race_for_it(site):
    from concurrent.futures import ThreadPoolExecutor

    signed = call(site, "POST", "/v1/uploads/sign", json={"project": "shop", "filename": "race.jpg"}).json()
    path = "/" + signed["upload_url"].split("127.0.0.1", 1)[-1].split("/", 1)[1]

    def send(_):
        return call(
            site, "POST", path, auth=None, files={"file": ("race.jpg", imaging.sample("rocket.jpg"))}
        ).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(send, range(6)))
    assert statuses.count(201) == 1 and set(statuses) <= {201, 401}, statuses
    served = call(site, "GET", f"/shop/{signed['key']}", auth=None)
    # Served as any original at a section 2 URL: the same pixels, its EXIF and XMP cut out.
    assert served.status_code == 200 and served.content == jpegmeta.strip(imaging.sample("rocket.jpg"))
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"  # an asset never changes
