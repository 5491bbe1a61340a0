"""The distribution API and hostnames (contract section 9), through gunicorn with two workers."""

import os
import re
import shutil
import time
from types import SimpleNamespace

import pytest
import requests

from tests import imaging
from tests.conftest import ADMIN_TOKEN, ROOT, Gunicorn, server_config

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DOMAIN = "img.shop.example"


@pytest.fixture(scope="module")
def cdn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cdn")
    folder = tmp / "images"
    shutil.copytree(os.path.join(ROOT, "samples"), folder)
    (folder / "products").mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(folder / "coffee.png", folder / "products" / name)
    config = tmp / "shield.toml"
    config.write_text(
        server_config(
            tmp, f'[projects.demo]\norigin = "{folder}/"\n', extra='trusted_proxies = ["127.0.0.1"]'
        )
    )
    server = Gunicorn(config, workers=2).start()
    try:
        yield SimpleNamespace(url=server.url, folder=folder, server=server)
    finally:
        server.stop()


def api(cdn, method, path, **kw):
    headers = {**ADMIN, "X-Forwarded-Proto": "https", "Connection": "close", **kw.pop("headers", {})}
    return requests.request(method, cdn.url + path, headers=headers, timeout=30, **kw)


def get(cdn, path, host=DOMAIN, **headers):
    return requests.get(
        cdn.url + path,
        headers={"Host": host, "Connection": "close", **headers},
        timeout=30,
        allow_redirects=False,
    )


def each_worker(cdn, path, host=DOMAIN, tries=2000):
    seen = {}
    for _ in range(tries):
        resp = get(cdn, path, host)
        seen.setdefault(resp.headers.get("X-Served-By"), resp)
        if len(seen) == 2:
            break
    assert len(seen) == 2, "both workers should have answered"
    return list(seen.values())


@pytest.fixture(scope="module")
def shop(cdn):
    body = {
        "name": "shop",
        "origin": f"{cdn.folder}/",
        "domain": DOMAIN.upper() + ":443",
        "cache_ttl_seconds": 3600,
        "tags": ["shop-all"],
        "vendor": "shield",
    }
    resp = api(cdn, "POST", "/v1/cdn/distribution/create", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_a_distribution_is_a_project_and_its_domain_routes_to_it(cdn, shop):
    assert shop["distribution_id"] == "shop" and shop["domain"] == DOMAIN
    assert (shop["status"], shop["vendor"], shop["cache_ttl_seconds"], shop["tags"]) == (
        "deployed",
        "shield",
        3600,
        ["shop-all"],
    )
    assert shop["allowed_methods"] == ["GET", "HEAD", "OPTIONS"] and shop["https_only"] is False
    assert shop["cname"] == "127.0.0.1" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shop["created_at"]
    )
    project = api(cdn, "GET", "/v1/projects/shop").json()
    assert (project["domain"], project["cache_ttl"], project["tags"]) == (DOMAIN, 3600, ["shop-all"])

    through_domain = get(cdn, "/rocket.jpg?w=120", host=f"{DOMAIN}:8443", Accept="image/jpeg")
    assert through_domain.status_code == 200 and imaging.decode(through_domain.content).size == (120, 80)
    assert "project-shop" in through_domain.headers["Cache-Tag"]
    through_prefix = get(cdn, "/shop/rocket.jpg?w=120", host="127.0.0.1", Accept="image/jpeg")
    assert through_prefix.content == through_domain.content and through_prefix.headers["X-Cache"] == "HIT"
    other = get(cdn, "/rocket.jpg?w=120", host="elsewhere.example")
    assert other.status_code == 404
    assert get(cdn, "/health").status_code == 200  # reserved paths keep their routes on a domain

    taken = api(
        cdn, "POST", "/v1/cdn/distribution/create", json={"origin": f"{cdn.folder}/", "domain": DOMAIN}
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    taken = api(
        cdn, "POST", "/v1/projects", json={"name": "thief", "origin": f"{cdn.folder}/", "domain": DOMAIN}
    )
    assert taken.status_code == 409
    vendor = api(
        cdn, "POST", "/v1/cdn/distribution/create", json={"origin": f"{cdn.folder}/", "vendor": "akamai"}
    )
    assert vendor.status_code == 400 and vendor.json()["error"]["code"] == "invalid_param"
    missing = api(cdn, "POST", "/v1/cdn/distribution/create", json={"domain": "x.example"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_param"


def test_list_update_delete_round_trip(cdn, shop):
    made = api(cdn, "POST", "/v1/cdn/distribution/create", json={"origin": f"{cdn.folder}/"}).json()
    generated = made["distribution_id"]
    assert re.fullmatch(r"d[a-z0-9]{9}", generated)
    ids = [
        d["distribution_id"] for d in api(cdn, "GET", "/v1/cdn/distribution/list?limit=100").json()["items"]
    ]
    assert {"demo", "shop", generated} <= set(ids)
    names = [p["name"] for p in api(cdn, "GET", "/v1/projects?limit=100").json()["items"]]
    assert set(ids) == set(names)
    page = api(cdn, "GET", "/v1/cdn/distribution/list?limit=1").json()
    assert len(page["items"]) == 1 and page["next_cursor"] == page["items"][0]["distribution_id"]

    updated = api(
        cdn,
        "PATCH",
        f"/v1/cdn/distribution/update/{generated}",
        json={"enabled": False, "cache_ttl_seconds": 5},
    )
    assert updated.status_code == 200 and (updated.json()["status"], updated.json()["cache_ttl_seconds"]) == (
        "disabled",
        5,
    )
    assert api(cdn, "GET", f"/v1/projects/{generated}").json()["cache_ttl"] == 5
    bad = api(cdn, "PATCH", f"/v1/cdn/distribution/update/{generated}", json={"cache_ttl_seconds": -1})
    assert bad.status_code == 400 and "cache_ttl_seconds" in bad.json()["error"]["message"]
    assert api(cdn, "DELETE", f"/v1/cdn/distribution/delete/{generated}").json() == {"ok": True}
    assert api(cdn, "GET", f"/v1/cdn/distribution/get/{generated}").status_code == 404
    assert api(cdn, "GET", f"/v1/projects/{generated}").status_code == 404


@pytest.mark.parametrize(
    ("purge", "path"),
    [
        ({"paths": [f"https://{DOMAIN}/rocket.jpg"]}, "/rocket.jpg?w=90"),
        ({"paths": ["/products/*"]}, "/products/a.png?w=90"),
        ({"tags": ["shop-all"]}, "/coffee.png?w=91"),
        ({"purge_everything": True}, "/products/b.png?w=92"),
    ],
)
def test_purges_are_misses_next_in_both_workers(cdn, shop, purge, path):
    for resp in each_worker(cdn, path):
        assert resp.status_code == 200
    assert all(r.headers["X-Cache"] == "HIT" for r in each_worker(cdn, path))
    resp = api(cdn, "POST", "/v1/cdn/cache/purge", json={"distribution_id": "shop", **purge})
    assert resp.status_code == 200 and resp.json()["ok"] is True and resp.json()["purged"] >= 1
    assert re.fullmatch(r"[0-9a-f]{32}", resp.json()["purge_id"])
    assert get(cdn, path).headers["X-Cache"] == "MISS"
    assert all(r.status_code == 200 for r in each_worker(cdn, path))


def test_stats_sum_both_workers(cdn, shop):
    before = api(cdn, "GET", "/v1/cdn/cache/stats?distribution_id=shop").json()["requests"]
    answered = each_worker(cdn, "/rocket.jpg?w=60")
    extra = 10
    for _ in range(extra):
        get(cdn, "/rocket.jpg?w=60")
    sent = len(answered) + extra
    workers = {r.headers["X-Served-By"] for r in answered}
    assert len(workers) == 2
    deadline = time.time() + 5
    while True:
        stats = api(cdn, "GET", "/v1/cdn/cache/stats?distribution_id=shop").json()
        if stats["requests"] - before >= sent or time.time() > deadline:
            break
        time.sleep(0.1)
    assert stats["requests"] - before >= sent and stats["distribution_id"] == "shop"
    assert {"bytes_served", "hit_ratio"} <= set(stats)


def test_https_only_and_forwarded_proto(cdn, shop):
    api(cdn, "PATCH", "/v1/cdn/distribution/update/shop", json={"https_only": True})
    try:
        plain = get(cdn, "/rocket.jpg?w=50")
        assert plain.status_code == 301 and plain.headers["Location"] == f"https://{DOMAIN}/rocket.jpg?w=50"
        proxied = get(cdn, "/rocket.jpg?w=50", **{"X-Forwarded-Proto": "https"})
        assert proxied.status_code == 200
        refused = requests.get(
            cdn.url + "/v1/cdn/cache/stats?distribution_id=shop", headers=ADMIN, timeout=30
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "https_required"
        assert api(cdn, "GET", "/v1/cdn/cache/stats?distribution_id=shop").status_code == 200
    finally:
        api(cdn, "PATCH", "/v1/cdn/distribution/update/shop", json={"https_only": False})


def test_an_untrusted_forwarded_proto_is_not_believed(make_app, folder):
    app = make_app({"shop": {"origin": str(folder) + "/", "https_only": True}}, trusted_proxies=["10.0.0.1"])
    client = app.test_client()
    untrusted = client.get(
        "/shop/rocket.jpg?w=40",
        headers={"X-Forwarded-Proto": "https"},
        environ_overrides={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert untrusted.status_code == 301 and untrusted.headers["Location"].startswith("https://")
    trusted = client.get(
        "/shop/rocket.jpg?w=40",
        headers={"X-Forwarded-Proto": "https"},
        environ_overrides={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert trusted.status_code == 200


def test_allowed_methods_answer_405_with_allow(cdn, shop):
    api(cdn, "PATCH", "/v1/cdn/distribution/update/shop", json={"allowed_methods": ["GET", "HEAD"]})
    try:
        options = requests.options(cdn.url + "/rocket.jpg", headers={"Host": DOMAIN}, timeout=30)
        assert options.status_code == 405 and options.headers["Allow"] == "GET, HEAD"
        assert options.json()["error"]["code"] == "method_not_allowed"
        post = requests.post(cdn.url + "/shop/rocket.jpg", timeout=30)
        assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"
        assert requests.head(cdn.url + "/shop/rocket.jpg?w=20", timeout=30).status_code == 200
        default = requests.options(
            cdn.url + "/demo/rocket.jpg",
            headers={"Origin": "https://page.example", "Access-Control-Request-Method": "GET"},
            timeout=30,
        )
        assert default.status_code == 204 and default.headers["Allow"] == "GET, HEAD, OPTIONS"
        assert default.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        api(
            cdn,
            "PATCH",
            "/v1/cdn/distribution/update/shop",
            json={"allowed_methods": ["GET", "HEAD", "OPTIONS"]},
        )


def test_a_key_purges_and_reads_its_own_distribution_only(cdn, shop):
    key = api(cdn, "POST", "/v1/projects/shop/keys", json={"scopes": ["purge", "stats"]}).json()["secret"]
    auth = {"Authorization": f"Bearer {key}", "X-Forwarded-Proto": "https"}
    ok = requests.post(
        cdn.url + "/v1/cdn/cache/purge",
        headers=auth,
        json={"distribution_id": "shop", "tags": ["x"]},
        timeout=30,
    )
    assert ok.status_code == 200
    other = requests.post(
        cdn.url + "/v1/cdn/cache/purge",
        headers=auth,
        json={"distribution_id": "demo", "tags": ["x"]},
        timeout=30,
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "forbidden_scope"
    assert (
        requests.get(
            cdn.url + "/v1/cdn/cache/stats?distribution_id=shop", headers=auth, timeout=30
        ).status_code
        == 200
    )
    listing = requests.get(cdn.url + "/v1/cdn/distribution/list", headers=auth, timeout=30)
    assert listing.status_code == 403
