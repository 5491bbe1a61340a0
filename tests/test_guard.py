"""Signed and private URLs, referers, rate limits and the miss queue, through HTTP."""

import hashlib
import hmac
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import imaging
from tests.conftest import server_config

KEY = "first-signing-secret-0123456789"
OLD_KEY = "older-signing-secret-0123456789"


def sign(key, path, params):
    query = urllib.parse.urlencode(sorted((k, v) for k, v in params.items() if k != "sig"))
    sig = hmac.new(key.encode(), f"{path}?{query}".encode(), hashlib.sha256).hexdigest()
    return f"{path}?{query}&sig={sig}" if query else f"{path}?sig={sig}"


def token(key, path, exp):
    return f"{exp}." + hmac.new(key.encode(), f"{path}:{exp}".encode(), hashlib.sha256).hexdigest()


def code(resp):
    return resp.get_json()["error"]["code"]


@pytest.fixture
def guarded(make_app, folder, origin):
    origin.state.put("/p.jpg", imaging.sample("rocket.jpg"))
    return make_app(
        {
            "signed": {"origin": str(folder) + "/", "signing_key": [KEY, OLD_KEY]},
            "private": {
                "origin": origin.url,
                "allow_private_origin": True,
                "private": True,
                "signing_key": KEY,
            },
            "shop": {"origin": str(folder) + "/", "allowed_referers": ["shop.example"]},
            "strict": {
                "origin": str(folder) + "/",
                "allowed_referers": ["shop.example"],
                "require_referer": True,
            },
            "limited": {"origin": str(folder) + "/", "rate_limit": 5, "rate_limit_miss": 3},
        }
    ).test_client()


def test_signed_urls(guarded):
    good = sign(KEY, "/signed/coffee.png", {"w": "100"})
    assert guarded.get(good).status_code == 200
    assert guarded.get(sign(OLD_KEY, "/signed/coffee.png", {"w": "100"})).status_code == 200  # rotation
    for bad in (
        "/signed/coffee.png?w=100",
        good.replace("w=100", "w=101"),
        sign("some-other-secret-012345", "/signed/coffee.png", {"w": "100"}),
        sign(KEY, "/signed/rocket.jpg", {"w": "100"}).replace("rocket", "coffee"),
    ):
        resp = guarded.get(bad)
        assert (resp.status_code, code(resp)) == (403, "invalid_signature"), bad
    # Parameter order does not matter; the signature covers exp.
    future = int(time.time()) + 600
    url = sign(KEY, "/signed/coffee.png", {"w": "90", "exp": str(future)})
    path, query = url.split("?")
    reordered = path + "?" + "&".join(reversed(query.split("&")))
    assert guarded.get(reordered).status_code == 200
    expired = sign(KEY, "/signed/coffee.png", {"w": "90", "exp": str(int(time.time()) - 5)})
    resp = guarded.get(expired)
    assert (resp.status_code, code(resp)) == (403, "expired")


def test_private_projects_need_a_token_and_never_enter_the_cache(guarded, origin):
    exp = int(time.time()) + 600
    url = f"/private/p.jpg?w=80&token={token(KEY, '/private/p.jpg', exp)}"
    for _ in range(2):
        resp = guarded.get(url)
        assert resp.status_code == 200 and imaging.decode(resp.data).size == (80, 53)
        assert resp.headers["X-Cache"] == "BYPASS"
        assert resp.headers["Cache-Control"] == "private, max-age=300"
    assert origin.state.count("/p.jpg") == 2
    for bad in (
        "/private/p.jpg?w=80",
        f"/private/p.jpg?token={token(KEY, '/private/other.jpg', exp)}",
        f"/private/p.jpg?token={exp}.deadbeef",
        "/private/p.jpg?token=garbage",
    ):
        resp = guarded.get(bad)
        assert (resp.status_code, code(resp)) == (403, "invalid_signature"), bad
    old = int(time.time()) - 1
    resp = guarded.get(f"/private/p.jpg?token={token(KEY, '/private/p.jpg', old)}")
    assert (resp.status_code, code(resp)) == (403, "expired")


def test_referer_allowlist(guarded):
    ok = ["https://shop.example/page", "https://www.shop.example/x", "http://a.b.shop.example:8080/", ""]
    for referer in ok:
        headers = {"Referer": referer} if referer else {}
        assert guarded.get("/shop/coffee.png?w=10", headers=headers).status_code == 200, referer
    for referer in (
        "https://evil.example/",
        "https://shop.example.evil.com/",
        "https://notshop.example/",
        "garbage",
    ):
        resp = guarded.get("/shop/coffee.png?w=10", headers={"Referer": referer})
        assert (resp.status_code, code(resp)) == (403, "forbidden_referer"), referer
    resp = guarded.get("/strict/coffee.png?w=10")
    assert (resp.status_code, code(resp)) == (403, "forbidden_referer")
    assert (
        guarded.get("/strict/coffee.png?w=10", headers={"Referer": "https://shop.example/"}).status_code
        == 200
    )


def test_rate_limits_per_client_and_for_misses(guarded):
    statuses = [guarded.get(f"/limited/coffee.png?w={10 + i}").status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # the fourth miss in a minute is over rate_limit_miss
    resp = guarded.get("/limited/coffee.png?w=10")  # a hit: still within rate_limit (5)
    assert resp.status_code == 200
    resp = guarded.get("/limited/coffee.png?w=10")
    assert (resp.status_code, code(resp)) == (429, "rate_limited")
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    # Another client has its own budget.
    other = guarded.get("/limited/coffee.png?w=10", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 200


def test_bad_signatures_spend_no_quota(make_app, folder):
    c = make_app({"s": {"origin": str(folder) + "/", "signing_key": KEY, "rate_limit": 3}}).test_client()
    for _ in range(10):
        assert c.get("/s/coffee.png?w=10&sig=bad").status_code == 403
    assert c.get(sign(KEY, "/s/coffee.png", {"w": "10"})).status_code == 200


def test_forwarded_for_is_believed_only_from_trusted_proxies(make_app, folder):
    projects = {"l": {"origin": str(folder) + "/", "rate_limit": 2}}
    trusting = make_app(projects, trusted_proxies=["127.0.0.1"]).test_client()
    for ip in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        for _ in range(2):
            resp = trusting.get("/l/coffee.png?w=10", headers={"X-Forwarded-For": f"{ip}, 127.0.0.1"})
            assert resp.status_code == 200, ip
    assert trusting.get("/l/coffee.png?w=10", headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 429


def test_forwarded_for_is_ignored_without_trusted_proxies(make_app, folder, tmp_path):
    c = make_app({"l": {"origin": str(folder) + "/", "rate_limit": 2}}).test_client()
    statuses = [
        c.get("/l/coffee.png?w=10", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_private_project_without_key_refuses_to_start(make_app, folder):
    from shield.settings import ConfigError

    with pytest.raises(ConfigError, match="signing_key"):
        make_app({"p": {"origin": str(folder) + "/", "private": True}})


def test_huge_outputs_are_refused(guarded):
    resp = guarded.get("/shop/coffee.png?w=8192&h=8192&fit=fill")
    assert (resp.status_code, code(resp)) == (400, "invalid_param")


def test_security_headers_everywhere(guarded):
    for url in ("/shop/coffee.png?w=10", "/nope/x.jpg", "/shop/coffee.png?w=0", "/health"):
        resp = guarded.get(url)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", url
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'", url


def gunicorn_config(tmp_path, folder, shield_extra="", project_extra=""):
    return server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n{project_extra}', shield_extra)


@pytest.mark.slow
def test_rate_limit_counts_across_two_workers(gunicorn, tmp_path, folder):
    server = gunicorn(gunicorn_config(tmp_path, folder, project_extra="rate_limit = 10"), workers=2)
    answers = []
    # New connections until both workers have answered (the kernel picks the worker).
    while len(answers) < 16 or len({r.headers["X-Served-By"] for r in answers}) < 2:
        answers.append(
            requests.get(server.url + "/demo/coffee.png?w=20", headers={"Connection": "close"}, timeout=10)
        )
        assert len(answers) < 200, "only one worker answered"
    assert [r.status_code for r in answers] == [200] * 10 + [429] * (len(answers) - 10)
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in answers[10:])


@pytest.mark.slow
def test_miss_queue_bound_gives_503_beyond_it(gunicorn, tmp_path, folder):
    big = imaging.decode(imaging.sample("coffee.png")).convert("RGB").resize((2400, 1600))
    (folder / "big.jpg").write_bytes(imaging.encode(big, "JPEG", quality=90))
    config = gunicorn_config(
        tmp_path, folder, "transform_threads = 1\ntransform_queue = 2", "rate_limit = 0\nrate_limit_miss = 0"
    )
    server = gunicorn(config, workers=1)
    requests.get(server.url + "/demo/big.jpg?w=10", timeout=30)  # the original is cached

    def get(w):
        return requests.get(server.url + f"/demo/big.jpg?w={w}&fmt=avif", timeout=60)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(get, range(500, 524)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {200, 503}, statuses
    refused = [r for r in answers if r.status_code == 503]
    assert all(
        r.json()["error"]["code"] == "overloaded" and int(r.headers["Retry-After"]) >= 1 for r in refused
    )
    assert statuses.count(200) >= 3


@pytest.mark.slow
def test_a_burst_of_fifty_distinct_misses_is_queued_and_served(gunicorn, tmp_path, folder):
    server = gunicorn(gunicorn_config(tmp_path, folder, project_extra="rate_limit_miss = 0"), workers=2)
    with ThreadPoolExecutor(50) as pool:
        answers = list(
            pool.map(
                lambda w: requests.get(server.url + f"/demo/rocket.jpg?w={w}", timeout=60), range(100, 150)
            )
        )
    assert [r.status_code for r in answers] == [200] * 50
    assert [imaging.decode(r.content).size[0] for r in answers] == list(range(100, 150))


@pytest.mark.slow
def test_admin_bind_moves_the_admin_api(gunicorn, tmp_path, folder):
    from tests.conftest import free_port

    admin_port = free_port()
    server = gunicorn(gunicorn_config(tmp_path, folder, f'admin_bind = "127.0.0.1:{admin_port}"'), workers=1)
    auth = {"Authorization": "Bearer test-admin-token-0123456789"}
    assert requests.get(server.url + "/v1/stats", headers=auth, timeout=10).status_code == 404
    spoofed = {**auth, "Host": f"127.0.0.1:{admin_port}"}
    assert requests.get(server.url + "/v1/stats", headers=spoofed, timeout=10).status_code == 404
    assert (
        requests.get(f"http://127.0.0.1:{admin_port}/v1/stats", headers=auth, timeout=10).status_code == 200
    )
    assert requests.get(server.url + "/demo/coffee.png?w=10", timeout=10).status_code == 200


def test_admin_can_be_turned_off(make_app, folder):
    c = make_app(
        {"demo": {"origin": str(folder) + "/"}}, admin_token="x" * 20, admin_enabled=False
    ).test_client()
    assert c.get("/v1/stats", headers={"Authorization": "Bearer " + "x" * 20}).status_code == 404
