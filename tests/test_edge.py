"""Project keys and the edge image API (contract sections 7 and 8), through gunicorn with two workers."""

import hashlib
import io
import json
import os
import time
from types import SimpleNamespace

import pytest
import requests
from PIL import Image

from tests import imaging
from tests.conftest import ADMIN_TOKEN, Gunicorn, free_port, server_config
from tests.origin_server import OriginServer

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHROME_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
PUBLIC = "https://img.shop.example"


def _projects(origin, closed_port):
    return f"""
[projects.shop]
origin = "{origin.url}img/"
allow_private_origin = true
source_domains = ["http://localhost:{origin.port}", "http://localhost:{closed_port}"]
presets = {{thumb = "w=200&h=200&fit=cover&q=70", wide = "w=300"}}

[projects.other]
origin = "{origin.url}img/"
allow_private_origin = true

[projects.strict]
origin = "{origin.url}img/"
allow_private_origin = true
presets_only = true
presets = {{small = "w=64"}}
"""


def _camera_jpeg():
    """A JPEG as a camera writes it: a maker, a GPS position, and a sideways orientation."""
    exif = Image.Exif()
    exif[0x010F] = "shieldcam"
    exif[0x0112] = 6
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    return imaging.encode(imaging.halves(320, 200), "JPEG", quality=95, exif=exif)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge")
    with OriginServer() as origin:
        origin.state.put("/img/rocket.jpg", imaging.sample("rocket.jpg"))
        origin.state.put("/img/coffee.png", imaging.sample("coffee.png"))
        origin.state.put("/img/exif.jpg", _camera_jpeg())
        config = tmp / "shield.toml"
        config.write_text(
            server_config(tmp, _projects(origin, free_port()), extra=f'public_url = "{PUBLIC}"')
        )
        server = Gunicorn(config, workers=2).start()
        try:
            yield SimpleNamespace(url=server.url, server=server, origin=origin, tmp=tmp)
        finally:
            server.stop()


def call(edge, method, path, key=None, headers=None, **kw):
    auth = {"Authorization": f"Bearer {key}"} if key else ADMIN
    # A new connection each time, so the kernel spreads calls over both workers.
    return requests.request(
        method, edge.url + path, headers={**auth, "Connection": "close", **(headers or {})}, timeout=30, **kw
    )


def new_key(edge, project="shop", **body):
    resp = call(edge, "POST", f"/v1/projects/{project}/keys", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def error_code(resp):
    return resp.json()["error"]["code"]


def asset_files(edge):
    found = []
    for folder, _dirs, files in os.walk(edge.tmp / "state" / "assets"):
        found += [os.path.join(folder, f) for f in files]
    return sorted(found)


def from_each_worker(edge, method, path, key, want_status, tries=2000, **kw):
    """Call until both workers have answered `want_status`; {worker: response}."""
    seen = {}
    for _ in range(tries):
        resp = call(edge, method, path, key=key, **kw)
        if resp.status_code == want_status:
            seen.setdefault(resp.headers.get("X-Served-By"), resp)
        if len(seen) == 2:
            break
    return seen


# -- keys


def test_a_key_shows_its_secret_once_and_works_in_both_workers(edge):
    key = new_key(edge, name="prod-web", scopes=["stats", "optimize"])
    assert key["id"].startswith("pk_") and len(key["id"]) == 28 and key["id"][3:].isalnum()
    assert key["id"][3:] == key["id"][3:].lower()
    assert key["secret"].startswith("sk_") and len(key["secret"]) == 46
    assert (key["name"], key["scopes"], key["revoked"], key["expires_at"]) == (
        "prod-web",
        ["optimize", "stats"],
        False,
        None,
    )
    listed = call(edge, "GET", "/v1/projects/shop/keys").json()["items"]
    mine = [k for k in listed if k["id"] == key["id"]]
    assert mine and "secret" not in mine[0]
    assert key["secret"] not in call(edge, "GET", "/v1/projects/shop/keys").text
    answers = from_each_worker(edge, "GET", "/v1/stats?project=shop", key["secret"], 200)
    assert len(answers) == 2
    assert all(r.json()["project"] == "shop" for r in answers.values())


def test_a_revoked_key_fails_in_both_workers_within_a_second(edge):
    key = new_key(edge, scopes=["stats"])
    assert len(from_each_worker(edge, "GET", "/v1/stats", key["secret"], 200)) == 2
    revoked = call(edge, "DELETE", f"/v1/projects/shop/keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json() == {"ok": True}
    done = time.monotonic()
    # Every answer after the revocation is a 401, from whichever worker, from the first on.
    first = call(edge, "GET", "/v1/stats", key=key["secret"])
    assert first.status_code == 401 and time.monotonic() - done < 1.0
    seen, statuses = {}, []
    for _ in range(2000):
        resp = call(edge, "GET", "/v1/stats", key=key["secret"])
        statuses.append(resp.status_code)
        seen.setdefault(resp.headers.get("X-Served-By"), resp)
        if len(seen) == 2:
            break
    assert len(seen) == 2 and set(statuses) == {401}
    assert all(error_code(r) == "unauthorized" for r in seen.values())
    # Nothing of the secret comes back in an error.
    assert all(key["secret"] not in r.text for r in seen.values())


def test_rotate_gives_a_new_pair_and_revokes_the_old(edge):
    old = new_key(edge, name="ci", scopes=["stats"], expires_at="2099-01-01T00:00:00Z")
    resp = call(edge, "POST", f"/v1/projects/shop/keys/{old['id']}/rotate")
    assert resp.status_code == 201
    new = resp.json()
    assert new["id"] != old["id"] and new["secret"] != old["secret"]
    assert (new["name"], new["scopes"], new["expires_at"]) == ("ci", ["stats"], "2099-01-01T00:00:00Z")
    assert call(edge, "GET", "/v1/stats", key=new["secret"]).status_code == 200
    assert call(edge, "GET", "/v1/stats", key=old["secret"]).status_code == 401
    listed = {k["id"]: k for k in call(edge, "GET", "/v1/projects/shop/keys").json()["items"]}
    assert listed[old["id"]]["revoked"] is True and listed[new["id"]]["revoked"] is False


def test_scopes_projects_and_expiry(edge):
    stats_only = new_key(edge, scopes=["stats"])
    resp = call(edge, "POST", "/v1/optimize", key=stats_only["secret"], json={"source": "/rocket.jpg"})
    assert resp.status_code == 403 and error_code(resp) == "forbidden_scope"
    resp = call(edge, "GET", "/v1/stats?project=other", key=stats_only["secret"])
    assert resp.status_code == 403 and error_code(resp) == "forbidden_scope"
    # A key is no admin token.
    resp = call(edge, "GET", "/v1/projects", key=stats_only["secret"])
    assert resp.status_code == 403 and error_code(resp) == "forbidden_scope"
    resp = call(edge, "POST", "/v1/projects/shop/keys", json={"expires_at": "2020-01-01T00:00:00Z"})
    assert resp.status_code == 400 and error_code(resp) == "invalid_param"
    resp = call(edge, "POST", "/v1/projects/shop/keys", json={"scopes": ["everything"]})
    assert resp.status_code == 400 and error_code(resp) == "invalid_param"
    soon = time.time() + 1.5
    short = new_key(
        edge, scopes=["stats"], expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon + 1))
    )
    assert call(edge, "GET", "/v1/stats", key=short["secret"]).status_code == 200
    time.sleep(max(0.0, soon + 1.1 - time.time()))
    resp = call(edge, "GET", "/v1/stats", key=short["secret"])
    assert resp.status_code == 401 and error_code(resp) == "unauthorized"
    resp = call(edge, "GET", "/v1/stats", key="sk_" + "x" * 43)
    assert resp.status_code == 401


def test_deleting_a_project_revokes_its_keys(edge):
    table = {"name": "gone", "origin": edge.origin.url + "img/", "allow_private_origin": True}
    assert call(edge, "POST", "/v1/projects", json=table).status_code == 201
    key = new_key(edge, project="gone", scopes=["stats"])
    assert call(edge, "GET", "/v1/stats", key=key["secret"]).status_code == 200
    assert call(edge, "DELETE", "/v1/projects/gone").status_code == 200
    assert call(edge, "POST", "/v1/projects", json=table).status_code == 201
    assert call(edge, "GET", "/v1/stats", key=key["secret"]).status_code == 401
    assert call(edge, "GET", "/v1/projects/gone/keys").json()["items"][0]["revoked"] is True


# -- optimize, /c/, resize, purge by id


def test_optimize_answers_the_best_format_and_stores_an_asset(edge):
    key = new_key(edge, scopes=["optimize"])["secret"]
    fetched_before = edge.origin.state.count("/img/rocket.jpg")
    avif = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        headers={"Accept": CHROME_ACCEPT},
        json={"source": "/rocket.jpg"},
    )
    assert avif.status_code == 201, avif.text
    body = avif.json()
    assert body["format"] == "avif" and body["id"].startswith("img_") and len(body["id"]) == 14
    assert set(body["id"][4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert (body["width"], body["height"]) == (640, 427)
    assert body["url"] == f"{PUBLIC}/c/{body['id'][4:]}.avif"
    source_bytes = len(imaging.sample("rocket.jpg"))
    assert body["bytes"] < source_bytes

    served = requests.get(edge.url + f"/c/{body['id'][4:]}.avif", timeout=30)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/avif"
    assert len(served.content) == body["bytes"]
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert set(served.headers["Cache-Tag"].split(",")) >= {"project-shop", f"asset-{body['id']}"}
    assert imaging.decode(served.content).size == (640, 427)
    assert imaging.ssim(imaging.decode(served.content), imaging.decode(imaging.sample("rocket.jpg"))) > 0.9

    jpeg = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        headers={"Accept": "image/jpeg"},
        json={"source": "/rocket.jpg"},
    )
    assert jpeg.status_code == 201 and jpeg.json()["format"] == "jpeg" and jpeg.json()["url"].endswith(".jpg")
    assert jpeg.json()["id"] != body["id"]
    again = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        headers={"Accept": CHROME_ACCEPT},
        json={"source": "/rocket.jpg"},
    )
    assert again.status_code == 200 and again.json() == body
    # The same original served both formats and the repeat: the origin was asked once.
    assert edge.origin.state.count("/img/rocket.jpg") - fetched_before == 1
    # An image URL of the same file shares that stored original.
    assert requests.get(edge.url + "/shop/rocket.jpg?w=100", timeout=30).status_code == 200
    assert edge.origin.state.count("/img/rocket.jpg") - fetched_before == 1

    transformed = requests.get(edge.url + f"/c/{body['id'][4:]}.avif?w=320&fmt=webp", timeout=30)
    assert transformed.status_code == 200 and transformed.headers["Content-Type"] == "image/webp"
    assert imaging.decode(transformed.content).size == (320, 214)
    wrong = requests.get(edge.url + f"/c/{body['id'][4:]}.png", timeout=30)
    assert wrong.status_code == 404 and error_code(wrong) == "not_found"
    assert requests.get(edge.url + "/c/0000000000.avif", timeout=30).status_code == 404


def test_optimize_sources_by_url_and_from_source_domains(edge):
    key = new_key(edge, scopes=["optimize"])["secret"]
    by_path = call(edge, "POST", "/v1/optimize", key=key, json={"source": "/coffee.png", "quality": 60})
    by_url = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        json={"source": edge.origin.url + "img/coffee.png", "quality": 60},
    )
    assert by_path.status_code in (200, 201) and by_url.status_code == 200
    assert by_url.json()["id"] == by_path.json()["id"] and by_path.json()["format"] == "jpeg"
    domain = f"http://localhost:{edge.origin.port}/img/coffee.png"
    via = call(
        edge, "POST", "/v1/optimize", key=key, headers={"Accept": "image/webp"}, json={"source": domain}
    )
    assert via.status_code == 201 and via.json()["format"] == "webp"
    assert edge.origin.state.count("/img/coffee.png") >= 2  # the source domain is fetched as itself


def test_strip_false_keeps_the_exif(edge):
    key = new_key(edge, scopes=["optimize"])["secret"]
    stripped = call(
        edge, "POST", "/v1/optimize", key=key, headers={"Accept": "image/jpeg"}, json={"source": "/exif.jpg"}
    )
    kept = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        headers={"Accept": "image/jpeg"},
        json={"source": "/exif.jpg", "strip": False},
    )
    assert stripped.status_code == kept.status_code == 201
    assert stripped.json()["id"] != kept.json()["id"]

    def exif_of(answer):
        body = requests.get(edge.url + "/c/" + answer.json()["url"].rsplit("/", 1)[1], timeout=30).content
        return Image.open(io.BytesIO(body)).getexif()

    assert len(exif_of(stripped)) == 0
    kept_exif = exif_of(kept)
    assert kept_exif.get(0x010F) == "shieldcam" and kept_exif.get(0x0112) in (None, 1)
    assert (kept.json()["width"], kept.json()["height"]) == (200, 320)


def test_resize_clamps_and_purge_by_id_makes_the_next_one_a_miss(edge):
    key = new_key(edge, scopes=["optimize", "purge"])["secret"]
    made = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key,
        headers={"Accept": "image/jpeg"},
        json={"source": "/rocket.jpg", "quality": 70},
    ).json()
    asset_id = made["id"]
    resp = call(edge, "GET", f"/v1/resize?id={asset_id}&w=200&h=100&fit=cover", key=key)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
    assert imaging.decode(resp.content).size == (200, 100)
    assert (
        call(edge, "GET", f"/v1/resize?id={asset_id}&w=200&h=100&fit=cover", key=key).headers["X-Cache"]
        == "HIT"
    )
    huge = call(edge, "GET", f"/v1/resize?id={asset_id}&w=100000&h=100000&fit=fill&dpr=9", key=key)
    assert huge.status_code == 200, huge.text
    w, h = imaging.decode(huge.content).size
    assert w == h and w * h <= 25_000_000 and w >= 4000
    wide = call(edge, "GET", f"/v1/resize?id={asset_id}&w=999999", key=key)
    assert wide.status_code == 200 and imaging.decode(wide.content).size == (640, 427)

    purged = call(edge, "POST", "/v1/purge", key=key, json={"ids": [asset_id, "img_0000000000"]})
    assert purged.status_code == 200 and purged.json()["purged"] == 1 and purged.json()["status"] == "done"
    for resp in from_each_worker(
        edge, "GET", f"/v1/resize?id={asset_id}&w=200&h=100&fit=cover", key, 200, tries=1
    ).values():
        assert resp.headers["X-Cache"] == "MISS"
    # The asset itself stays.
    assert requests.get(edge.url + "/c/" + made["url"].rsplit("/", 1)[1], timeout=30).status_code == 200


def test_presets(edge):
    thumb = requests.get(edge.url + "/shop/rocket.jpg?preset=thumb", timeout=30)
    assert thumb.status_code == 200 and imaging.decode(thumb.content).size == (200, 200)
    wins = requests.get(edge.url + "/shop/rocket.jpg?preset=thumb&w=100", timeout=30)
    assert imaging.decode(wins.content).size == (100, 200)
    unknown = requests.get(edge.url + "/shop/rocket.jpg?preset=huge", timeout=30)
    assert unknown.status_code == 400 and error_code(unknown) == "invalid_param"
    small = requests.get(edge.url + "/strict/rocket.jpg?preset=small", timeout=30)
    assert small.status_code == 200 and imaging.decode(small.content).size == (64, 43)
    for refused in ("w=64", "preset=small&q=20", "fmt=webp"):
        resp = requests.get(edge.url + f"/strict/rocket.jpg?{refused}", timeout=30)
        assert resp.status_code == 400 and error_code(resp) == "invalid_param", refused


# -- bad input: its status and error, nothing stored, no worker lost


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_source"),
        ({"source": 42}, 400, "invalid_source"),
        ({"source": "file:///etc/passwd"}, 400, "invalid_source"),
        ({"source": "https://evil.example/img/rocket.jpg"}, 400, "invalid_source"),
        ({"source": "/../../etc/passwd"}, 400, "invalid_source"),
        ({"source": "unreachable"}, 400, "invalid_source"),
        ({"source": "/missing.jpg"}, 502, "origin_error"),
        ({"source": "/broken.jpg"}, 502, "origin_error"),
        ({"source": "/huge.jpg"}, 413, "source_too_large"),
        ({"source": "/rocket.jpg", "quality": 0}, 400, "invalid_param"),
        ({"source": "/rocket.jpg", "project": "other"}, 403, "forbidden_scope"),
    ],
)
def test_optimize_errors(edge, body, status, code):
    key = new_key(edge, scopes=["optimize"])["secret"]
    edge.origin.state.put("/img/huge.jpg", b"\xff\xd8\xff" + b"\0" * 40_000_000)
    edge.origin.state.put("/img/broken.jpg", imaging.sample("rocket.jpg")[:5000])
    if body.get("source") == "unreachable":
        domains = call(edge, "GET", "/v1/projects/shop").json()["source_domains"]
        body = {"source": domains[1] + "/img/rocket.jpg"}
    workers = sorted(edge.server.worker_pids())
    before = asset_files(edge)
    resp = call(edge, "POST", "/v1/optimize", key=key, json=body)
    assert (resp.status_code, error_code(resp)) == (status, code), resp.text
    assert resp.headers["Content-Type"] == "application/json"
    assert asset_files(edge) == before
    assert sorted(edge.server.worker_pids()) == workers


def test_other_bad_calls(edge):
    key = new_key(edge, scopes=["optimize"])
    resp = call(
        edge,
        "POST",
        "/v1/optimize",
        key=key["secret"],
        data="not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400 and error_code(resp) == "bad_request"
    resp = call(edge, "GET", "/v1/resize?id=img_ZZZZZZZZZZ&w=10", key=key["secret"])
    assert resp.status_code == 404 and error_code(resp) == "not_found"
    resp = call(edge, "POST", "/v1/optimize", json={"source": "/rocket.jpg"})
    assert resp.status_code == 400 and error_code(resp) == "bad_request"  # admin must name the project
    call(edge, "DELETE", f"/v1/projects/shop/keys/{key['id']}")
    resp = call(edge, "POST", "/v1/optimize", key=key["secret"], json={"source": "/rocket.jpg"})
    assert resp.status_code == 401 and error_code(resp) == "unauthorized"
    purger = new_key(edge, scopes=["purge"])["secret"]
    resp = call(edge, "POST", "/v1/purge", key=purger, json={"paths": ["/other/rocket.jpg"]})
    assert resp.status_code == 403 and error_code(resp) == "forbidden_scope"


def test_the_301st_optimize_in_a_minute_is_rate_limited(edge):
    key = new_key(edge, scopes=["optimize"])["secret"]
    first = call(edge, "POST", "/v1/optimize", key=key, json={"source": "/rocket.jpg"})
    assert first.status_code in (200, 201)
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {key}"
        for _ in range(299):
            assert (
                session.post(
                    edge.url + "/v1/optimize", json={"source": "/rocket.jpg"}, timeout=30
                ).status_code
                == 200
            )
        limited = session.post(edge.url + "/v1/optimize", json={"source": "/rocket.jpg"}, timeout=30)
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another key of the same project has its own budget.
    other = new_key(edge, scopes=["optimize"])["secret"]
    assert call(edge, "POST", "/v1/optimize", key=other, json={"source": "/rocket.jpg"}).status_code == 200


def test_assets_are_whole_files(edge):
    for path in asset_files(edge):
        assert not os.path.basename(path).startswith(".tmp-"), path
    records = [p for p in asset_files(edge) if p.endswith(".json")]
    assert records
    for record in records:
        with open(record) as fh:
            meta = json.load(fh)
        with open(record[:-5] + "." + meta["ext"], "rb") as fh:
            body = fh.read()
        assert len(body) == meta["size"]
        assert meta["etag"] == '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
