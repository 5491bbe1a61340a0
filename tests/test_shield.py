"""The origin shield: one fetch per original, coalesced misses, freshness, stale-if-error."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import imaging
from tests.conftest import server_config

TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def shielded(make_app, origin):
    origin.state.put("/rocket.jpg", imaging.sample("rocket.jpg"))
    app = make_app(
        {"web": {"origin": origin.url, "allow_private_origin": True, "cache_ttl": 1, "negative_ttl": 2}},
        admin_token=TOKEN,
    )
    return app, app.test_client()


def stats(client_or_url):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if isinstance(client_or_url, str):
        return requests.get(client_or_url + "/v1/stats", headers=headers, timeout=10).json()
    return client_or_url.get("/v1/stats", headers=headers).get_json()


def test_twenty_sizes_cost_one_origin_request(make_app, origin):
    # Fresh for an hour: twenty transforms may take longer than a second on a loaded machine.
    origin.state.put("/rocket.jpg", imaging.sample("rocket.jpg"))
    app = make_app(
        {"web": {"origin": origin.url, "allow_private_origin": True, "cache_ttl": 3600}}, admin_token=TOKEN
    )
    c = app.test_client()
    for w in range(100, 500, 20):
        resp = c.get(f"/web/rocket.jpg?w={w}")
        assert resp.status_code == 200 and imaging.decode(resp.data).size[0] == w
    assert origin.state.count("/rocket.jpg") == 1
    assert stats(c)["transforms"] == 20 and stats(c)["origin_fetches"] == 1


def test_expired_original_is_revalidated_and_304_keeps_variants(shielded, origin):
    _app, c = shielded
    first = c.get("/web/rocket.jpg?w=150")
    assert first.headers["X-Cache"] == "MISS"
    time.sleep(1.2)
    again = c.get("/web/rocket.jpg?w=150")
    assert again.headers["X-Cache"] == "HIT" and again.data == first.data
    assert origin.state.count("/rocket.jpg") == 2
    conditional = origin.state.requests[-1][2]
    assert conditional.get("If-None-Match")
    assert stats(c)["transforms"] == 1


def test_changed_original_after_its_ttl_serves_new_bytes_and_drops_old_variants(shielded, origin):
    app, c = shielded
    old = c.get("/web/rocket.jpg?w=160")
    c.get("/web/rocket.jpg?w=170")
    store = app.extensions["shield"].store
    assert store.count_variants("web") == 2
    origin.state.put("/rocket.jpg", imaging.encode(imaging.halves(640, 427), "JPEG"))
    time.sleep(1.2)
    new = c.get("/web/rocket.jpg?w=160")
    assert new.headers["X-Cache"] == "MISS" and new.data != old.data
    assert imaging.close_color(
        imaging.mean_color(imaging.decode(new.data), (0, 0, 60, 100)), (220, 30, 30), 40
    )
    assert store.count_variants("web") == 1  # the w=170 of the old bytes is gone, w=160 is new
    assert c.get("/web/rocket.jpg?w=170").headers["X-Cache"] == "MISS"


def test_origin_down_serves_stale_then_fresh_again(shielded, origin):
    _app, c = shielded
    warm = c.get("/web/rocket.jpg?w=140")
    c.get("/web/rocket.jpg?w=141")
    origin.state.mode = "down"
    time.sleep(1.2)
    for w in (140, 141, 140):
        resp = c.get(f"/web/rocket.jpg?w={w}")
        assert resp.status_code == 200
        assert resp.headers["X-Cache"] == "STALE"
        # RFC 9211: fwd-status is what the origin sent (the test origin's "down" is a 503).
        assert resp.headers["Cache-Status"].startswith("shield; fwd=stale; fwd-status=503")
    assert c.get("/web/rocket.jpg?w=140").data == warm.data
    # A variant never made before is made from the stored original, also stale.
    resp = c.get("/web/rocket.jpg?w=142")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "STALE"
    down_count = origin.state.count("/rocket.jpg")
    origin.state.mode = "ok"
    time.sleep(0.4)  # origin_retry_interval
    # The first request after that is still answered stale, at once; the origin is asked
    # again in the background, and once it has answered the copy is fresh again.
    assert c.get("/web/rocket.jpg?w=140").headers["X-Cache"] == "STALE"
    deadline = time.time() + 5
    while time.time() < deadline:
        resp = c.get("/web/rocket.jpg?w=140")
        if resp.headers["X-Cache"] == "HIT":
            break
        time.sleep(0.05)
    assert resp.headers["X-Cache"] == "HIT" and resp.headers["Cache-Status"] == "shield; hit"
    assert origin.state.count("/rocket.jpg") == down_count + 1


def test_stale_if_error_has_a_limit(make_app, origin):
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    c = make_app(
        {"web": {"origin": origin.url, "allow_private_origin": True, "cache_ttl": 1, "stale_if_error": 1}}
    ).test_client()
    assert c.get("/web/a.jpg?w=50").status_code == 200
    origin.state.mode = "down"
    time.sleep(2.2)
    resp = c.get("/web/a.jpg?w=50")
    assert resp.status_code == 502


def test_truncated_origin_body_gives_502_and_is_never_stored(shielded, origin):
    _app, c = shielded
    origin.state.mode = "truncate"
    resp = c.get("/web/rocket.jpg?w=120")
    assert resp.status_code == 502 and resp.get_json()["error"]["code"] == "origin_error"
    origin.state.mode = "ok"
    resp = c.get("/web/rocket.jpg?w=120")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
    assert origin.state.count("/rocket.jpg") == 2


def test_body_that_does_not_decode_is_never_stored(shielded, origin):
    _app, c = shielded
    good = imaging.sample("coffee.png")
    origin.state.put("/broken.png", good[:100] + bytes(len(good) - 120) + good[-20:])
    assert c.get("/web/broken.png?w=50").status_code == 502
    origin.state.put("/broken.png", good)
    resp = c.get("/web/broken.png?w=50")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"


def test_origin_404_is_remembered_for_negative_ttl(shielded, origin):
    _app, c = shielded
    for _ in range(10):
        assert c.get("/web/nope.jpg?w=10").status_code == 404
    assert origin.state.count("/nope.jpg") == 1
    time.sleep(2.1)
    assert c.get("/web/nope.jpg?w=10").status_code == 404
    assert origin.state.count("/nope.jpg") == 2


def test_origin_max_age_sets_freshness(make_app, origin):
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"), **{"Cache-Control": "public, max-age=1"})
    origin.state.put("/b.jpg", imaging.sample("rocket.jpg"), **{"Cache-Control": "max-age=60, s-maxage=3600"})
    c = make_app({"web": {"origin": origin.url, "allow_private_origin": True}}).test_client()
    c.get("/web/a.jpg?w=10")
    c.get("/web/b.jpg?w=10")
    time.sleep(1.2)
    c.get("/web/a.jpg?w=10")
    c.get("/web/b.jpg?w=10")
    assert origin.state.count("/a.jpg") == 2  # revalidated after max-age
    assert origin.state.count("/b.jpg") == 1  # s-maxage wins for a shared cache


def test_unwritable_cache_dir_serves_straight_from_the_origin(make_app, origin, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    c = make_app(
        {"web": {"origin": origin.url, "allow_private_origin": True}}, cache_dir=str(blocker / "cache")
    ).test_client()
    for _ in range(3):
        resp = c.get("/web/a.jpg?w=90")
        assert resp.status_code == 200 and imaging.decode(resp.data).size == (90, 60)
        assert resp.headers["X-Cache"] == "MISS" and resp.headers["Cache-Status"] == "shield; fwd=miss"
    assert origin.state.count("/a.jpg") == 3
    assert c.get("/health").get_json()["cache"] == "unavailable"


def test_damaged_or_missing_cache_files_are_misses(make_app, folder, tmp_path):
    app = make_app({"demo": {"origin": str(folder) + "/"}})
    c = app.test_client()
    first = c.get("/demo/coffee.png?w=400&fmt=png")  # large enough to live in its own file
    assert first.headers["X-Cache"] == "MISS"
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".val")]
    assert files
    for path in files:
        with open(path, "r+b") as fh:
            fh.truncate(100)
    resp = c.get("/demo/coffee.png?w=400&fmt=png")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS" and resp.data == first.data
    for path in [
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".val")
    ]:
        os.remove(path)
    resp = c.get("/demo/coffee.png?w=400&fmt=png")
    assert resp.status_code == 200 and resp.data == first.data


@pytest.mark.slow
def test_fifty_concurrent_requests_one_fetch_one_transform(gunicorn, tmp_path, origin):
    origin.state.put("/photo.jpg", imaging.sample("coffee.png"))
    origin.state.put(
        "/photo.jpg", imaging.encode(imaging.decode(imaging.sample("coffee.png")).convert("RGB"), "JPEG")
    )
    origin.state.delay = 0.3  # a slow origin makes the 50 overlap
    server = gunicorn(
        server_config(tmp_path, f'[projects.web]\norigin = "{origin.url}"\nallow_private_origin = true'),
        workers=2,
    )

    def get(url):
        return requests.get(server.url + url, headers={"Connection": "close"}, timeout=30)

    # The kernel picks which worker accepts each connection: repeat the burst with a new
    # variant (at most 8 times) until both workers took part in one.
    for burst in range(1, 9):
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(get, [f"/web/photo.jpg?w={330 + burst}&fmt=webp"] * 50))
        assert all(r.status_code == 200 for r in answers)
        assert len({r.content for r in answers}) == 1
        assert origin.state.count("/photo.jpg") == 1
        time.sleep(1.0)  # workers write their counters twice a second
        counted = stats(server.url)
        assert counted["origin_fetches"] == 1 and counted["transforms"] == burst
        assert counted["requests"] == 50 * burst
        if len({r.headers["X-Served-By"] for r in answers}) == 2:
            break
    assert len({r.headers["X-Served-By"] for r in answers}) == 2, "both workers should have taken requests"

    # 20 different sizes of a new file, all at once: still one origin request.
    origin.state.put("/other.jpg", imaging.sample("rocket.jpg"))
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(get, [f"/web/other.jpg?w={100 + 10 * i}" for i in range(20)]))
    assert [imaging.decode(r.content).size[0] for r in answers] == [100 + 10 * i for i in range(20)]
    assert origin.state.count("/other.jpg") == 1


@pytest.mark.slow
def test_coalesced_followers_each_get_a_whole_file_backed_variant(gunicorn, tmp_path, origin):
    """A variant big enough to be a file in the cache, asked for at once through both
    workers: the followers in the worker that did not make it each open the stored entry
    for themselves, so each is sent whole (one open file can be sent once)."""
    origin.state.put("/big.png", imaging.sample("coffee.png"))
    origin.state.delay = 0.3
    server = gunicorn(
        server_config(tmp_path, f'[projects.web]\norigin = "{origin.url}"\nallow_private_origin = true'),
        workers=2,
    )

    def get(url):
        return requests.get(server.url + url, headers={"Connection": "close"}, timeout=60)

    for burst in range(8):
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(get, [f"/web/big.png?w={500 + burst}&fmt=png"] * 30))
        assert [r.status_code for r in answers] == [200] * 30
        sizes = {len(r.content) for r in answers}
        assert len(sizes) == 1 and sizes.pop() > 200 * 1024
        assert all(int(r.headers["Content-Length"]) == len(r.content) for r in answers)
        assert len({r.content for r in answers}) == 1
        assert imaging.decode(answers[0].content).size[0] == 500 + burst
        assert {r.headers["X-Cache"] for r in answers} <= {"MISS", "HIT"}
        if len({r.headers["X-Served-By"] for r in answers}) == 2:
            break
    assert len({r.headers["X-Served-By"] for r in answers}) == 2, "both workers should have taken requests"
    assert origin.state.count("/big.png") == 1
