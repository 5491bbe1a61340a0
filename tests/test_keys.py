"""Project keys in one process: storage, restarts, admin_bind, presets' checks, secrets kept out of logs."""

import json
import logging
import os
import stat

import pytest

from shield import params
from shield.assets import AssetStore
from shield.errors import InvalidParam
from shield.guard.keys import KeyRing
from shield.optimize import asset_id_of, resolve_source
from shield.settings import ConfigError, build_project
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def keyed(make_app, folder):
    return make_app({"demo": {"origin": str(folder) + "/"}}, admin_token=ADMIN_TOKEN)


def test_keys_survive_a_restart_and_their_file_is_private(keyed, make_app, folder, tmp_path):
    client = keyed.test_client()
    key = client.post("/v1/projects/demo/keys", headers=ADMIN, json={"scopes": ["stats"]}).get_json()
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / "state" / f"keys.db{suffix}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, suffix
    restarted = make_app({"demo": {"origin": str(folder) + "/"}}, admin_token=ADMIN_TOKEN).test_client()
    resp = restarted.get("/v1/stats", headers={"Authorization": f"Bearer {key['secret']}"})
    assert resp.status_code == 200 and resp.get_json()["project"] == "demo"


def test_secrets_never_reach_the_logs(keyed, caplog):
    client = keyed.test_client()
    with caplog.at_level(logging.DEBUG, logger="shield"):
        key = client.post("/v1/projects/demo/keys", headers=ADMIN, json={}).get_json()
        rotated = client.post(f"/v1/projects/demo/keys/{key['id']}/rotate", headers=ADMIN).get_json()
        client.get("/v1/stats", headers={"Authorization": f"Bearer {rotated['secret']}"})
        client.get("/v1/stats", headers={"Authorization": f"Bearer {key['secret']}"})  # revoked: 401
        client.post("/v1/optimize", headers={"Authorization": f"Bearer {rotated['secret']}"}, data="{")
    logged = "\n".join(
        record.getMessage() + json.dumps(getattr(record, "fields", {}), default=str)
        for record in caplog.records
    )
    assert key["id"] in logged  # the public id is what the logs name
    assert key["secret"] not in logged and rotated["secret"] not in logged
    assert "sk_" not in logged


def test_a_key_works_on_the_public_port_when_admin_bind_moves_the_admin_api(make_app, folder):
    app = make_app(
        {"demo": {"origin": str(folder) + "/"}}, admin_token=ADMIN_TOKEN, admin_bind="127.0.0.1:9911"
    )
    client = app.test_client()
    on_admin_port = {"environ_overrides": {"SERVER_PORT": "9911"}}
    key = client.post("/v1/projects/demo/keys", headers=ADMIN, json={}, **on_admin_port).get_json()
    assert client.get("/v1/stats", headers=ADMIN).status_code == 404  # the admin token: not here
    resp = client.get("/v1/stats", headers={"Authorization": f"Bearer {key['secret']}"})
    assert resp.status_code == 200 and resp.get_json()["project"] == "demo"
    assert client.get("/v1/projects", headers={"Authorization": f"Bearer {key['secret']}"}).status_code == 404


def test_key_ring_refuses_bad_input(tmp_path):
    ring = KeyRing(str(tmp_path))
    with pytest.raises(InvalidParam, match="scopes"):
        ring.create("demo", scopes=[])
    with pytest.raises(InvalidParam, match="name"):
        ring.create("demo", name="x" * 101)
    key = ring.create("demo")
    assert ring.by_secret(key.secret).id == key.id
    assert ring.by_secret(key.secret + "x") is None and ring.by_secret("not-a-key") is None
    assert ring.by_id(key.id).secret == key.secret
    assert ring.revoke("other", key.id) is False  # not another project's
    assert ring.revoke("demo", key.id) is True and ring.by_secret(key.secret) is None
    assert ring.rotate("demo", key.id) is None  # a revoked key cannot be rotated


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/a/b.jpg", ("a/b.jpg", None)),
        ("https://img.shop.example/media/a%20b.jpg", ("a b.jpg", None)),
        ("HTTPS://IMG.SHOP.EXAMPLE/media/x.png?v=2", ("x.png", None)),
        ("https://cdn.example.com/p/q.jpg", ("p/q.jpg", "https://cdn.example.com/")),
        ("https://eu.cdn.example.com/q.jpg", ("q.jpg", "https://eu.cdn.example.com/")),
        ("http://static.example.org:8080/z.jpg", ("z.jpg", "http://static.example.org:8080/")),
    ],
)
def test_sources_that_resolve(source, expected):
    project = build_project(
        "shop",
        {
            "origin": "https://img.shop.example/media/",
            "source_domains": ["https://cdn.example.com", "http://static.example.org:8080"],
        },
    )
    assert resolve_source(project, source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "",
        "relative.jpg",
        "//img.shop.example/media/a.jpg",
        "https://img.shop.example/other/a.jpg",
        "https://img.shop.example.evil.com/media/a.jpg",
        "https://img.shop.example@evil.com/media/a.jpg",
        "http://img.shop.example/media/a.jpg",
        "https://evilcdn.example.com/a.jpg",
        "http://cdn.example.com/a.jpg",
        "https://cdn.example.com:8443/a.jpg",
        "http://static.example.org/z.jpg",
        "https://img.shop.example/media/../secret.jpg",
        "https://img.shop.example/media/%2e%2e/secret.jpg",
        "file:///etc/passwd",
        "ftp://cdn.example.com/a.jpg",
        "/a/../../b.jpg",
        "https://127.0.0.1\\.cdn.example.com/secret.jpg",
        "https://127.0.0.1%5C.cdn.example.com/secret.jpg",
        "https://user@cdn.example.com/a.jpg",
        "https://[::1]/a.jpg",
        "http://[bad/x.jpg",
        "http://a\uff03b.example/x",
        "/\ud800.jpg",
        "https://cdn.example.com:99999/a.jpg",
    ],
)
def test_sources_that_are_refused(source):
    from shield.errors import InvalidSource

    project = build_project(
        "shop",
        {
            "origin": "https://img.shop.example/media/",
            "source_domains": ["https://cdn.example.com", "http://static.example.org:8080"],
        },
    )
    with pytest.raises(InvalidSource):
        resolve_source(project, source)


def test_asset_ids_are_keyed_digests_of_the_request(tmp_path):
    secret = AssetStore(str(tmp_path)).secret()
    assert len(secret) == 32 and AssetStore(str(tmp_path)).secret() == secret  # made once, then read
    assert stat.S_IMODE(os.stat(tmp_path / ".id-secret").st_mode) == 0o600
    one = asset_id_of(secret, "shop", "a.jpg", None, 80, True, "avif")
    assert one == asset_id_of(secret, "shop", "a.jpg", None, 80, True, "avif")
    assert len(one) == 14 and one.startswith("img_")
    others = {
        asset_id_of(secret, "shop", "a.jpg", None, 81, True, "avif"),
        asset_id_of(secret, "shop", "a.jpg", None, 80, False, "avif"),
        asset_id_of(secret, "shop", "a.jpg", None, 80, True, "webp"),
        asset_id_of(secret, "shop", "b.jpg", None, 80, True, "avif"),
        asset_id_of(secret, "blog", "a.jpg", None, 80, True, "avif"),
        asset_id_of(secret, "shop", "a.jpg", "https://cdn.example.com/", 80, True, "avif"),
        asset_id_of(b"another store's key" * 2, "shop", "a.jpg", None, 80, True, "avif"),
    }
    assert one not in others and len(others) == 7


def test_presets_are_checked_at_start_up():
    with pytest.raises(ConfigError, match="presets"):
        build_project("shop", {"origin": "x/", "presets": {"thumb": "w=abc"}})
    with pytest.raises(ConfigError, match="presets"):
        build_project("shop", {"origin": "x/", "presets": {"thumb": "sig=1"}})
    with pytest.raises(ConfigError, match="api_rate_limits"):
        build_project("shop", {"origin": "x/", "api_rate_limits": {"upload": 5}})
    project = build_project("shop", {"origin": "x/", "presets": {"thumb": "w=200&h=200"}})
    merged = params.with_preset({"preset": "thumb", "h": "50", "utm": "x"}, project)
    assert merged == {"w": "200", "h": "50", "utm": "x"}
    with pytest.raises(InvalidParam, match="preset"):
        params.with_preset({"preset": "nope"}, project)


def test_malformed_calls_get_their_json_error_never_a_500(keyed, folder):
    client = keyed.test_client()
    for body in ({"expires_at": "9999-12-31T23:59:59-10:00"}, {"expires_at": 5}, {"name": 7}):
        resp = client.post("/v1/projects/demo/keys", headers=ADMIN, json=body)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_param", body
    assert client.get("/v1/projects/demo/keys", headers=ADMIN).status_code == 200
    made = client.post(
        "/v1/optimize",
        headers={**ADMIN, "Accept": "image/jpeg"},
        json={"project": "demo", "source": "/rocket.jpg"},
    ).get_json()
    for query in ("w=\u00b2", "q=\u00b2", "w=100&dpr=nan", "w=100&dpr=inf", "w=1e5", "h=-1"):
        resp = client.get(f"/v1/resize?id={made['id']}&{query}", headers=ADMIN)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_param", query
    huge = client.get(f"/v1/resize?id={made['id']}&w={'9' * 5000}", headers=ADMIN)
    assert huge.status_code == 200 and huge.headers["Content-Type"] == "image/jpeg"


def test_private_and_disabled_projects_and_the_reserved_c(make_app, folder):
    app = make_app(
        {
            "demo": {"origin": str(folder) + "/"},
            "vault": {"origin": str(folder) + "/", "private": True, "signing_key": "k" * 20},
        },
        admin_token=ADMIN_TOKEN,
    )
    client = app.test_client()
    resp = client.post("/v1/optimize", headers=ADMIN, json={"project": "vault", "source": "/rocket.jpg"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_param"
    made = client.post(
        "/v1/optimize", headers=ADMIN, json={"project": "demo", "source": "/rocket.jpg"}
    ).get_json()
    url = "/c/" + made["url"].rsplit("/", 1)[1]
    assert client.get(url).status_code == 200
    client.patch("/v1/projects/demo", headers=ADMIN, json={"enabled": False})
    assert client.get(url).status_code == 404
    resp = client.post("/v1/optimize", headers=ADMIN, json={"project": "demo", "source": "/rocket.jpg"})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "project_not_found"
    client.patch(
        "/v1/projects/demo", headers=ADMIN, json={"enabled": True, "private": True, "signing_key": "k" * 20}
    )
    assert client.get(url).status_code == 404  # a project made private keeps its assets to itself
    resp = client.post("/v1/projects", headers=ADMIN, json={"name": "c", "origin": str(folder) + "/"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_param"
    # Deleting the project deletes its assets: a new project of that name does not serve them.
    assert client.delete("/v1/projects/demo", headers=ADMIN).status_code == 200
    client.post("/v1/projects", headers=ADMIN, json={"name": "demo", "origin": str(folder) + "/"})
    assert client.get(url).status_code == 404


def test_purges_by_keys_stay_in_their_project(make_app, folder):
    app = make_app(
        {"demo": {"origin": str(folder) + "/"}, "blog": {"origin": str(folder) + "/"}},
        admin_token=ADMIN_TOKEN,
    )
    client = app.test_client()

    def key_of(project):
        secret = client.post(f"/v1/projects/{project}/keys", headers=ADMIN, json={}).get_json()["secret"]
        return {"Authorization": f"Bearer {secret}"}

    demo, blog = key_of("demo"), key_of("blog")
    blog_asset = client.post("/v1/optimize", headers=blog, json={"source": "/rocket.jpg"}).get_json()["id"]
    resp = client.post("/v1/purge", headers=demo, json={"ids": [blog_asset]})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden_scope"
    first = client.post("/v1/purge", headers=demo, json={"tags": ["sale"], "idempotency_key": "deploy-1"})
    assert first.status_code == 200
    other = client.post("/v1/purge", headers=blog, json={"tags": ["news"], "idempotency_key": "deploy-1"})
    assert other.status_code == 200 and other.get_json()["purge_id"] != first.get_json()["purge_id"]
    admin = client.post("/v1/purge", headers=ADMIN, json={"tags": ["x"], "idempotency_key": "deploy-1"})
    assert admin.status_code == 200
    again = client.post("/v1/purge", headers=demo, json={"tags": ["sale"], "idempotency_key": "deploy-1"})
    assert again.get_json() == first.get_json()


def test_without_an_admin_token_every_v1_call_says_how_to_set_one(make_app, folder):
    client = make_app({"demo": {"origin": str(folder) + "/"}}).test_client()
    for method, path in (
        ("GET", "/v1/stats"),
        ("POST", "/v1/purge"),
        ("POST", "/v1/optimize"),
        ("GET", "/v1/resize"),
    ):
        resp = client.open(path, method=method, json={})
        assert resp.status_code == 401 and "admin_token" in resp.get_json()["error"]["message"], path


def test_second_review_holes_stay_closed(make_app, folder, origin):
    import io

    photo = (folder / "rocket.jpg").read_bytes()
    origin.state.put("/img/rocket.jpg", photo)
    app = make_app(
        {
            "demo": {"origin": str(folder) + "/", "cors_origins": ["https://shop.example"]},
            "sec": {
                "origin": f"{origin.url}img/",
                "allow_private_origin": True,
                "https_only": True,
                "allowed_methods": ["GET"],
            },
        },
        admin_token=ADMIN_TOKEN,
        public_url="https://cdn.shield.example",
    )
    client = app.test_client()
    for name in ("dashboard", "asset"):
        resp = client.post("/v1/projects", headers=ADMIN, json={"name": name, "origin": str(folder) + "/"})
        assert resp.status_code == 400, name
    taken = client.post(
        "/v1/cdn/distribution/create",
        headers=ADMIN,
        json={"origin": str(folder) + "/", "domain": "cdn.shield.example"},
    )
    assert taken.status_code == 409
    # A signed upload's token is spent for good, even after its asset is deleted.
    signed = client.post(
        "/v1/uploads/sign", headers=ADMIN, json={"project": "demo", "filename": "a.jpg"}
    ).get_json()
    target = signed["upload_url"].split("cdn.shield.example", 1)[1]
    made = client.post(
        target, data={"file": (io.BytesIO(photo), "a.jpg")}, content_type="multipart/form-data"
    )
    assert made.status_code == 201
    client.delete(f"/v1/assets/{made.get_json()['asset']['_id']}", headers=ADMIN)
    again = client.post(
        target, data={"file": (io.BytesIO(photo), "a.jpg")}, content_type="multipart/form-data"
    )
    assert again.status_code == 401
    # A preflight from an unlisted origin gets no Access-Control-Allow-Origin.
    pre = {"Access-Control-Request-Method": "GET"}
    assert (
        "Access-Control-Allow-Origin"
        not in client.options("/demo/rocket.jpg", headers={**pre, "Origin": "https://evil.example"}).headers
    )
    listed = client.options("/demo/rocket.jpg", headers={**pre, "Origin": "https://shop.example"}).headers
    assert listed["Access-Control-Allow-Origin"] == "https://shop.example" and listed["Vary"] == "Origin"
    # Path-style URLs keep https_only and allowed_methods.
    key = client.post(
        "/v1/projects/sec/keys",
        headers={**ADMIN, "X-Forwarded-Proto": "https"},
        json={},
        base_url="https://x",
    ).get_json()
    image = f"127.0.0.1:{origin.port}/img/rocket.jpg"
    mac = hmac_b64(key["secret"], f"w_50/{image}")
    assert client.get(f"/api/v1/sec/w_50/{image}?key={key['id']}&sig={mac}").status_code == 301
    assert (
        client.head(f"/api/v1/sec/w_50/{image}?key={key['id']}&sig={mac}", base_url="https://x").status_code
        == 405
    )
    # Odd inputs that gave 500s.
    bad = client.post("/v1/assets/persist", headers=ADMIN, json={"tempAssetId": "temp_img_0123456789"})
    assert bad.status_code == 404
    bad = client.post(
        "/v1/cdn/cache/purge", headers=ADMIN, json={"distribution_id": "demo", "paths": ["http://[::1"]}
    )
    assert bad.status_code == 400


def hmac_b64(secret, message):
    import base64
    import hashlib
    import hmac

    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:32]
