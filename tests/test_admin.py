"""The /v1 admin API: auth, purge, stats, projects, health and metrics."""

import time

import pytest
import requests

from tests import imaging
from tests.conftest import server_config

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_app(make_app, folder, origin):
    origin.state.put("/tagged.jpg", imaging.sample("rocket.jpg"), **{"Surrogate-Key": "sale spring"})
    origin.state.put("/plain.jpg", imaging.sample("rocket.jpg"))
    (folder / "products").mkdir()
    (folder / "products" / "a.png").write_bytes(imaging.sample("coffee.png"))
    (folder / "products" / "b.png").write_bytes(imaging.sample("coffee.png"))
    return make_app(
        {
            "demo": {"origin": str(folder) + "/"},
            "web": {"origin": origin.url, "allow_private_origin": True},
            "other": {"origin": str(folder) + "/"},
        },
        admin_token=TOKEN,
    )


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def warm(c, *urls):
    for url in urls:
        assert c.get(url).status_code == 200
    for url in urls:
        assert c.get(url).headers["X-Cache"] == "HIT", url


def x_cache(c, url):
    return c.get(url).headers.get("X-Cache")


def test_auth(admin, make_app, folder):
    assert admin.get("/v1/stats").status_code == 401
    assert (
        admin.get("/v1/stats", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
    )
    assert admin.get("/v1/stats", headers={"Authorization": TOKEN}).status_code == 401
    resp = admin.post("/v1/purge", json={"tags": ["x"]})
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"
    assert admin.get("/v1/stats", headers=AUTH).status_code == 200
    no_token = make_app({"demo": {"origin": str(folder) + "/"}}).test_client()
    resp = no_token.get("/v1/projects", headers=AUTH)
    assert resp.status_code == 401 and "admin_token" in resp.get_json()["error"]["message"]
    assert no_token.get("/demo/coffee.png?w=10").status_code == 200  # public serving still works


def test_short_admin_token_refuses_to_start(make_app, folder):
    from shield.settings import ConfigError

    with pytest.raises(ConfigError, match="admin_token"):
        make_app({"demo": {"origin": str(folder) + "/"}}, admin_token="short")


def test_purge_by_tag_removes_exactly_the_tagged_variants(admin):
    tagged = ["/web/tagged.jpg?w=100", "/web/tagged.jpg?w=120&fmt=webp"]
    others = ["/web/plain.jpg?w=100", "/demo/coffee.png?w=100"]
    warm(admin, *tagged, *others)
    resp = admin.post("/v1/purge", headers=AUTH, json={"tags": ["sale"]})
    body = resp.get_json()
    assert resp.status_code == 200 and body["purged"] == 2 and body["status"] == "done" and body["purge_id"]
    assert [x_cache(admin, u) for u in tagged] == ["MISS", "MISS"]
    assert [x_cache(admin, u) for u in others] == ["HIT", "HIT"]


def test_purge_by_path_removes_every_variant_of_the_file(admin):
    mine = ["/demo/coffee.png?w=100", "/demo/coffee.png?w=90&fmt=avif", "/demo/coffee.png?w=90&fmt=webp"]
    others = ["/demo/rocket.jpg?w=100", "/other/coffee.png?w=100"]
    warm(admin, *mine, *others)
    body = admin.post("/v1/purge", headers=AUTH, json={"paths": ["/demo/coffee.png"]}).get_json()
    assert body["purged"] == 3
    assert [x_cache(admin, u) for u in mine] == ["MISS"] * 3
    assert [x_cache(admin, u) for u in others] == ["HIT", "HIT"]


def test_purge_by_prefix_and_by_project(admin):
    inside = ["/demo/products/a.png?w=50", "/demo/products/b.png?w=50"]
    outside = ["/demo/coffee.png?w=50", "/other/products/a.png?w=50"]
    warm(admin, *inside, *outside)
    assert (
        admin.post("/v1/purge", headers=AUTH, json={"prefixes": ["/demo/products/"]}).get_json()["purged"]
        == 2
    )
    assert [x_cache(admin, u) for u in inside] == ["MISS", "MISS"]
    assert [x_cache(admin, u) for u in outside] == ["HIT", "HIT"]
    body = admin.post("/v1/purge", headers=AUTH, json={"project": "demo", "everything": True}).get_json()
    assert body["purged"] == 3
    assert x_cache(admin, "/demo/coffee.png?w=50") == "MISS"
    assert x_cache(admin, "/other/products/a.png?w=50") == "HIT"


def test_purge_idempotency_key_answers_the_first_result(admin):
    warm(admin, "/demo/coffee.png?w=70")
    first = admin.post(
        "/v1/purge", headers=AUTH, json={"paths": ["/demo/coffee.png"], "idempotency_key": "k-1"}
    )
    warm(admin, "/demo/coffee.png?w=70")
    again = admin.post(
        "/v1/purge", headers=AUTH, json={"paths": ["/demo/coffee.png"], "idempotency_key": "k-1"}
    )
    assert again.get_json() == first.get_json() and first.get_json()["purged"] == 1
    assert x_cache(admin, "/demo/coffee.png?w=70") == "HIT"  # the repeat did not purge again
    other = admin.post("/v1/purge", headers=AUTH, json={"tags": ["x"], "idempotency_key": "k-1"})
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"tags": "sale"},
        {"tags": [""]},
        {"paths": ["demo/a.jpg"]},
        {"paths": ["/demo"]},
        {"everything": True},
        {"project": "demo"},
        {"tags": ["a"], "colour": "red"},
        [],
        "x",
    ],
)
def test_purge_rejects_malformed_bodies(admin, body):
    resp = admin.post("/v1/purge", headers=AUTH, json=body)
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_request"


def test_stats_add_up_and_filter(admin):
    for url in [
        "/demo/coffee.png?w=10",
        "/demo/coffee.png?w=10",
        "/demo/coffee.png?w=11",
        "/web/plain.jpg?w=10",
        "/demo/missing.png",
    ]:
        admin.get(url)
    s = admin.get("/v1/stats", headers=AUTH).get_json()
    assert (s["requests"], s["hits"], s["misses"], s["errors"]) == (5, 1, 3, 1)
    assert s["hit_ratio"] == 0.25 and s["origin_fetches"] == 3 and s["transforms"] == 3
    assert s["bytes_served"] > 0
    demo = admin.get("/v1/stats?project=demo", headers=AUTH).get_json()
    assert (demo["requests"], demo["hits"], demo["misses"]) == (4, 1, 2)
    future = admin.get("/v1/stats?from=2099-01-01T00:00:00Z", headers=AUTH).get_json()
    assert future["requests"] == 0
    past = admin.get("/v1/stats?from=2020-01-01T00:00:00Z&to=2099-01-01T00:00:00Z", headers=AUTH).get_json()
    assert past["requests"] == 5
    resp = admin.get("/v1/stats?from=yesterday", headers=AUTH)
    assert resp.status_code == 400 and "from" in resp.get_json()["error"]["message"]


def test_projects_crud(admin, folder):
    resp = admin.post(
        "/v1/projects", headers=AUTH, json={"name": "shop", "origin": str(folder) + "/", "quality": 70}
    )
    assert resp.status_code == 201 and resp.get_json()["quality"] == 70
    assert admin.get("/shop/coffee.png?w=40").status_code == 200
    assert admin.post("/v1/projects", headers=AUTH, json={"name": "shop", "origin": "x/"}).status_code == 409
    for bad in (
        {"name": "v1", "origin": "x/"},
        {"name": "Bad Name", "origin": "x/"},
        {"name": "ok", "origin": "ftp://x/"},
        {"name": "ok2", "origin": "x/", "quality": 500},
        {"name": "ok3", "origin": "x/", "colour": 1},
    ):
        resp = admin.post("/v1/projects", headers=AUTH, json=bad)
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_param", bad
    assert admin.get("/v1/projects/shop", headers=AUTH).get_json()["origin"] == str(folder) + "/"
    assert (
        admin.patch("/v1/projects/shop", headers=AUTH, json={"enabled": False}).get_json()["enabled"] is False
    )
    resp = admin.get("/shop/coffee.png?w=40")
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "project_not_found"
    names, cursor = [], None
    while True:
        page = admin.get(
            "/v1/projects?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=AUTH
        ).get_json()
        names += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert names == ["demo", "other", "shop", "web"]
    assert admin.delete("/v1/projects/shop", headers=AUTH).get_json() == {"ok": True}
    assert admin.get("/v1/projects/shop", headers=AUTH).status_code == 404
    assert admin.delete("/v1/projects/shop", headers=AUTH).status_code == 404


def test_signing_keys_are_never_echoed(admin, folder):
    body = admin.post(
        "/v1/projects",
        headers=AUTH,
        json={"name": "secret", "origin": str(folder) + "/", "signing_key": "a-very-long-signing-secret"},
    ).get_json()
    assert "a-very-long-signing-secret" not in str(body) and body["signing_key"] == ["***"]


def test_health_and_metrics(admin):
    assert admin.get("/health").get_json() == {"status": "ok", "cache": "ok"}
    admin.get("/demo/coffee.png?w=33")
    admin.get("/demo/coffee.png?w=33")
    text = admin.get("/metrics").data.decode()
    for name in (
        "shield_requests_total",
        "shield_request_seconds_bucket",
        "shield_bytes_served_total",
        "shield_origin_fetches_total",
        "shield_transforms_total",
        "shield_cache_bytes",
    ):
        assert name in text, name
    assert 'cache="hit"' in text and 'cache="miss"' in text


def test_metrics_count_each_request_once_and_at_once(admin):
    """Counts are added up in memory and written out before every exposition: none is late or twice."""
    admin.get("/demo/coffee.png?w=35")  # the miss: what follows are hits
    before = admin.get("/metrics").data.decode()
    for _ in range(3):
        assert admin.get("/demo/coffee.png?w=35").headers["X-Cache"] == "HIT"
    admin.get("/demo/missing.png?w=35")
    after = admin.get("/metrics").data.decode()

    def delta(name, labels=""):
        return metric_sum(after, name, labels) - metric_sum(before, name, labels)

    assert delta("shield_requests_total", 'cache="hit"') == 3
    assert delta("shield_requests_total", 'status="404"') == 1
    assert delta("shield_request_seconds_count", 'cache="hit"') == 3
    assert delta("shield_request_seconds_bucket", 'cache="hit",le="+Inf"') == 3
    assert delta("shield_bytes_served_total") > 0
    assert 0 < delta("shield_request_seconds_sum", 'cache="hit"') < 3


def metric_sum(text, name, labels=""):
    """The sum of a metric's samples, of those whose labels include `labels` when it is given."""
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_across_two_workers(gunicorn, tmp_path, folder, origin):
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    config = server_config(tmp_path, f'[projects.web]\norigin = "{origin.url}"\nallow_private_origin = true')
    server = gunicorn(config, workers=2)

    sent = []  # image requests made here: what the stats and the metrics must both count

    def get(url, **kw):
        if not url.startswith(("/v1/", "/health", "/metrics")):
            sent.append(url)
        return requests.get(
            server.url + url, headers={"Connection": "close", **kw.pop("headers", {})}, timeout=30, **kw
        )

    def from_both(url):
        seen = {}
        for _ in range(200):
            resp = get(url)
            seen.setdefault(resp.headers["X-Served-By"], resp)
            if len(seen) == 2:
                return seen
        raise AssertionError("only one worker answered")

    # A project created through one worker serves images in both.
    resp = requests.post(
        server.url + "/v1/projects",
        headers=AUTH,
        json={"name": "made", "origin": str(folder) + "/"},
        timeout=10,
    )
    assert resp.status_code == 201
    time.sleep(1.0)
    assert all(r.status_code == 200 for r in from_both("/made/coffee.png?w=44").values())

    # A purge answered by one worker is honoured by the other: with the origin down the
    # purged variant cannot come back, and neither worker serves it.
    warm_resp = from_both("/web/a.jpg?w=77")
    assert {r.headers["X-Cache"] for r in warm_resp.values()} <= {"HIT", "MISS"}
    origin.state.mode = "down"
    purge = requests.post(
        server.url + "/v1/purge",
        headers={**AUTH, "Connection": "close"},
        json={"paths": ["/web/a.jpg"]},
        timeout=10,
    )
    assert purge.json()["purged"] == 1
    after = from_both("/web/a.jpg?w=77")
    assert all(r.status_code == 502 for r in after.values())
    origin.state.mode = "ok"

    # Stats and metrics add up over both workers.
    time.sleep(1.0)
    counted = requests.get(server.url + "/v1/stats", headers=AUTH, timeout=10).json()
    metrics_text = requests.get(server.url + "/metrics", timeout=10).text
    assert counted["requests"] == len(sent) == metric_sum(metrics_text, "shield_requests_total")
    assert counted["requests"] == counted["hits"] + counted["misses"] + counted["errors"] + counted["stale"]

    # The project survives a restart.
    server.stop()
    again = gunicorn(config, workers=2)
    assert requests.get(again.url + "/made/coffee.png?w=44", timeout=30).status_code == 200
