"""Behaviour the rest of the suite took for granted: quality over HTTP, ETags tied to bytes,
origin_retry_interval, origins that chunk, trickle, redirect or date their answers, the
paths that only run under a real gevent worker, and purges of every kind across workers.
"""

import hashlib
import time

import pytest
import requests

from tests import imaging
from tests.conftest import ADMIN_TOKEN, server_config
from tests.security import client_of

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AVIF = "image/avif,image/webp,*/*"


@pytest.fixture
def client(make_app, folder, origin):
    origin.state.put("/rocket.jpg", imaging.sample("rocket.jpg"))
    app = make_app(
        {
            "demo": {"origin": str(folder) + "/"},
            "low": {"origin": str(folder) + "/", "quality": 40},
            "web": {"origin": origin.url, "allow_private_origin": True, "cache_ttl": 1},
        },
        origin_retry_interval=0.5,
        hot_cache_bytes=0,
    )
    return client_of(app)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_q_changes_the_bytes_monotonically(client, fmt):
    sizes = [len(client.get(f"/demo/rocket.jpg?w=300&fmt={fmt}&q={q}").data) for q in (20, 50, 90)]
    assert sizes[0] < sizes[1] < sizes[2], sizes


def test_a_projects_quality_is_the_default_q(client):
    default = client.get("/low/rocket.jpg?w=300&fmt=jpeg").data
    assert default == client.get("/low/rocket.jpg?w=300&fmt=jpeg&q=40").data
    assert default != client.get("/low/rocket.jpg?w=300&fmt=jpeg&q=80").data
    assert len(default) < len(client.get("/demo/rocket.jpg?w=300&fmt=jpeg").data)


def test_the_etag_is_the_bytes(client):
    seen = {}
    for accept in (AVIF, "image/webp,*/*", "image/jpeg"):
        resp = client.get("/demo/rocket.jpg?w=210", headers={"Accept": accept})
        expected = '"' + hashlib.blake2b(resp.data, digest_size=16).hexdigest() + '"'
        assert resp.headers["ETag"] == expected
        seen[resp.headers["Content-Type"]] = resp.headers["ETag"]
    assert len(set(seen.values())) == 3  # one URL, three formats, three validators


def test_origin_retry_interval_spaces_the_retries(client, origin):
    assert client.get("/web/rocket.jpg?w=50").status_code == 200
    time.sleep(1.1)
    origin.state.mode = "down"
    before = origin.state.count("/rocket.jpg")
    assert client.get("/web/rocket.jpg?w=50").headers["X-Cache"] == "STALE"
    assert origin.state.count("/rocket.jpg") == before + 1
    for _ in range(5):  # within the interval: answered without asking
        assert client.get("/web/rocket.jpg?w=50").headers["X-Cache"] == "STALE"
    assert origin.state.count("/rocket.jpg") == before + 1
    time.sleep(0.6)
    assert client.get("/web/rocket.jpg?w=50").headers["X-Cache"] == "STALE"
    deadline = time.time() + 3
    while origin.state.count("/rocket.jpg") < before + 2 and time.time() < deadline:
        time.sleep(0.05)
    assert origin.state.count("/rocket.jpg") == before + 2  # one retry, in the background
    origin.state.mode = "ok"


def test_chunked_redirected_and_dated_originals(client, origin):
    origin.state.put(
        "/c.jpg", imaging.sample("rocket.jpg"), **{"Last-Modified": "Mon, 02 Mar 2026 08:00:00 GMT"}
    )
    origin.state.chunked.add("/c.jpg")
    resp = client.get("/web/c.jpg?w=64")
    assert resp.status_code == 200 and imaging.decode(resp.data).size == (64, 43)
    assert resp.headers["Last-Modified"] == "Mon, 02 Mar 2026 08:00:00 GMT"
    origin.state.put("/r.jpg", imaging.sample("rocket.jpg"))
    hops = client.get("/web/redirect-here/redirect-here/r.jpg?w=32")  # two redirects on the origin's host
    assert hops.status_code == 200 and imaging.decode(hops.data).size == (32, 21)
    away = client.get("/web/redirect-away/r.jpg?w=32")
    assert away.status_code == 502  # never followed off the origin's host
    origin.state.put("/t.jpg", imaging.sample("rocket.jpg"))
    origin.state.trickle["/t.jpg"] = (8192, 0.01)  # slow, well within origin_timeout
    assert client.get("/web/t.jpg?w=40").status_code == 200


# -- what runs only under a real gevent worker


@pytest.mark.slow
def test_refresh_ahead_and_the_one_deadline_under_gevent(gunicorn, tmp_path, origin):
    origin.state.put("/f.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/slow.jpg", imaging.sample("rocket.jpg"))
    projects = f"""
[projects.web]
origin = "{origin.url}"
allow_private_origin = true
cache_ttl = 4
"""
    server = gunicorn(server_config(tmp_path, projects, extra="origin_timeout = 2"), workers=1)
    assert requests.get(server.url + "/web/f.jpg?w=50", timeout=30).headers["X-Cache"] == "MISS"
    time.sleep(3.7)  # into the last tenth of the original's freshness
    resp = requests.get(server.url + "/web/f.jpg?w=50", timeout=30)
    assert resp.headers["X-Cache"] == "HIT"  # answered from the cache, not after a fetch
    deadline = time.time() + 5
    while origin.state.count("/f.jpg") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert origin.state.count("/f.jpg") == 2  # revalidated in the background
    # A body that keeps trickling in: every read is quick, the whole is too slow. One
    # deadline over the whole answer ends it at origin_timeout.
    origin.state.trickle["/slow.jpg"] = (2048, 0.1)  # 112 KB at 20 KB/s: about 5.5 s
    started = time.monotonic()
    slow = requests.get(server.url + "/web/slow.jpg?w=50", timeout=30)
    took = time.monotonic() - started
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "origin_timeout"
    assert took < 4.5, took


@pytest.mark.slow
@pytest.mark.parametrize(
    "purge",
    [
        {"tags": ["team-x"]},
        {"paths": ["/web/p.jpg"]},
        {"prefixes": ["/web/"]},
        {"project": "web", "everything": True},
    ],
    ids=["tag", "path", "prefix", "project"],
)
def test_every_kind_of_purge_reaches_both_workers(gunicorn, tmp_path, origin, purge):
    red, blue = (
        imaging.encode(imaging.halves(120, 80, c, c), "JPEG") for c in ((220, 30, 30), (30, 30, 220))
    )
    origin.state.put("/p.jpg", red, **{"Surrogate-Key": "team-x"})
    projects = f'[projects.web]\norigin = "{origin.url}"\nallow_private_origin = true\n'
    server = gunicorn(server_config(tmp_path, projects))
    url = server.url + "/web/p.jpg?w=60"
    workers = set()
    for _ in range(2000):  # until both workers hold it (in memory too)
        resp = requests.get(url, headers={"Connection": "close"}, timeout=30)
        assert imaging.close_color(imaging.mean_color(imaging.decode(resp.content)), (220, 30, 30), 40)
        workers.add(resp.headers["X-Served-By"])
        if len(workers) == 2 and resp.headers["X-Cache"] == "HIT":
            break
    assert len(workers) == 2
    origin.state.put("/p.jpg", blue, **{"Surrogate-Key": "team-x"})
    answer = requests.post(server.url + "/v1/purge", headers=ADMIN, json=purge, timeout=30)
    assert answer.status_code == 200 and answer.json()["purged"] >= 1
    seen = set()
    for _ in range(2000):  # until both workers have answered (the kernel may favour one for a while)
        resp = requests.get(url, headers={"Connection": "close"}, timeout=30)
        seen.add(resp.headers["X-Served-By"])
        assert imaging.close_color(imaging.mean_color(imaging.decode(resp.content)), (30, 30, 220), 40)
        if len(seen) == 2:
            break
    assert len(seen) == 2
