"""Faults an operator meets: damaged originals and cache files, purges during fetches,
a damaged cache folder, origins that fail or lie. Nothing broken is stored or served,
no purge is undone, no worker dies.
"""

import glob
import os
import random
import threading
import time

import pytest
import requests
from PIL import Image

from shield.image import jpegmeta
from tests import imaging
from tests.conftest import ADMIN_TOKEN, server_config
from tests.security import client_of

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def damaged_jpeg(seed=1, length=1000):
    """rocket.jpg with bytes in its middle replaced: same length, end marker intact."""
    data = bytearray(imaging.sample("rocket.jpg"))
    rng = random.Random(seed)
    middle = len(data) // 2
    for i in range(middle - length // 2, middle + length // 2):
        data[i] = rng.randrange(256)
    assert data[-2:] == b"\xff\xd9"
    return bytes(data)


@pytest.fixture
def web(make_app, origin):
    def build(**project):
        app = make_app(
            {"web": {"origin": origin.url, "allow_private_origin": True, **project}},
            origin_retry_interval=0.3,
            hot_cache_bytes=0,
        )
        return app, client_of(app)

    return build


# 1. A damaged JPEG is never stored, and never replaces a good copy.


def test_a_damaged_jpeg_is_refused_and_not_stored(web, origin):
    _app, client = web()
    origin.state.put("/bad.jpg", damaged_jpeg())
    for _ in range(2):
        resp = client.get("/web/bad.jpg?w=100")
        assert resp.status_code == 502 and resp.get_json()["error"]["code"] == "origin_error"
    assert origin.state.count("/bad.jpg") == 2  # asked again: nothing was kept


def test_a_damaged_jpeg_on_revalidation_keeps_the_good_copy(web, origin):
    _app, client = web(cache_ttl=1)
    origin.state.put("/a.jpg", imaging.sample("rocket.jpg"))
    good = client.get("/web/a.jpg?w=120")
    assert good.status_code == 200
    origin.state.put("/a.jpg", damaged_jpeg(seed=2))
    time.sleep(1.2)
    for query in ("w=120", "w=121"):
        resp = client.get(f"/web/a.jpg?{query}")
        assert resp.status_code == 200 and resp.headers["X-Cache"] == "STALE"
    assert client.get("/web/a.jpg?w=120").data == good.data
    original = client.get("/web/a.jpg?fmt=original")
    assert original.data == jpegmeta.strip(imaging.sample("rocket.jpg"))


# 2. A fetch that started before a purge never stores what it got.


@pytest.mark.slow
def test_a_purge_during_a_slow_fetch_is_not_undone(gunicorn, tmp_path, origin):
    projects = f'[projects.web]\norigin = "{origin.url}"\nallow_private_origin = true\n'
    server = gunicorn(server_config(tmp_path, projects))
    old, new = (
        imaging.halves(200, 100, (220, 30, 30), (220, 30, 30)),
        imaging.halves(200, 100, (30, 30, 220), (30, 30, 220)),
    )
    origin.state.put("/p.jpg", imaging.encode(old, "JPEG"))
    origin.state.delays["/p.jpg"] = 1.5
    slow = {}
    thread = threading.Thread(
        target=lambda: slow.update(r=requests.get(server.url + "/web/p.jpg?w=50", timeout=30))
    )
    thread.start()
    time.sleep(0.5)  # the fetch is under way, holding the old bytes
    origin.state.delays.clear()
    origin.state.put("/p.jpg", imaging.encode(new, "JPEG"))
    purged = requests.post(
        server.url + "/v1/purge", headers=ADMIN, json={"paths": ["/web/p.jpg"]}, timeout=30
    )
    assert purged.status_code == 200
    thread.join(30)
    assert slow["r"].status_code == 200  # the request in flight is answered
    for _ in range(6):  # whichever worker answers: never the purged bytes
        after = requests.get(server.url + "/web/p.jpg?w=50", timeout=30)
        assert after.status_code == 200
        assert imaging.close_color(imaging.mean_color(imaging.decode(after.content)), (30, 30, 220), 40)


# 3. The shared counter files survive truncation, deletion and replacement.


@pytest.mark.slow
def test_damaged_counter_files_never_kill_a_worker(gunicorn, tmp_path, folder):
    cache = tmp_path / "cache"
    server = gunicorn(server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n'))
    url = server.url + "/demo/rocket.jpg?w=90"
    for _ in range(20):
        assert requests.get(url, timeout=30).status_code == 200
    pids = set(server.worker_pids())
    for name in ("generation", "purges", "ratelimit.bin"):
        with open(cache / name, "r+b") as fh:
            fh.truncate(0)
    for _ in range(40):
        assert requests.get(url, timeout=30).status_code == 200
    assert set(server.worker_pids()) == pids  # no worker died (a SIGBUS would have killed it)
    assert "SIGBUS" not in (server.proc.stderr.peek() if hasattr(server.proc.stderr, "peek") else b"").decode(
        errors="replace"
    )


@pytest.mark.slow
def test_a_deleted_generation_file_is_noticed_by_every_worker(gunicorn, tmp_path, folder):
    server = gunicorn(server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n'))
    url = server.url + "/demo/coffee.png?w=70"
    first = None
    for _ in range(200):  # both workers keep it in memory
        resp = requests.get(url, timeout=30)
        first = first or resp.content
        assert resp.headers["X-Cache"] in ("MISS", "HIT")
    os.unlink(tmp_path / "cache" / "generation")
    (folder / "coffee.png").write_bytes(imaging.sample("astronaut.png"))
    purged = requests.post(
        server.url + "/v1/purge", headers=ADMIN, json={"paths": ["/demo/coffee.png"]}, timeout=30
    )
    assert purged.status_code == 200
    time.sleep(0.6)  # past Generation.CHECK_EVERY in every worker
    for _ in range(100):
        resp = requests.get(url, timeout=30)
        assert resp.status_code == 200 and resp.content != first


# 4. Damage that keeps a stored file's length is a miss, never served.


@pytest.mark.parametrize("size", [(60, 40), (600, 400)], ids=["in-the-index", "a-file"])
def test_damaged_stored_variants_are_misses(web, origin, size):
    app, client = web()
    noise = Image.frombytes("RGB", size, random.Random(7).randbytes(size[0] * size[1] * 3))
    origin.state.put("/d.png", imaging.encode(noise, "PNG"))
    url = f"/web/d.png?w={size[0]}&fmt=png"
    good = client.get(url)
    assert good.status_code == 200 and good.headers["X-Cache"] == "MISS"
    store = app.extensions["shield"].store
    files = [f for f in glob.glob(str(store.cache_dir) + "/**/*.val", recursive=True)]
    if size == (600, 400):
        (path,) = [f for f in files if os.path.getsize(f) > len(good.data)]
        with open(path, "r+b") as fh:  # flip bytes in the body, keeping the length
            fh.seek(os.path.getsize(path) - 100)
            fh.write(b"\x00" * 50)
    else:
        ((key,),) = store._index.execute("SELECT key FROM variants").fetchall()
        raw = bytearray(store._open().get(key))
        raw[-20:-10] = b"\x00" * 10
        store._open().set(key, bytes(raw))
    again = client.get(url)
    assert again.status_code == 200 and again.headers["X-Cache"] == "MISS"  # re-made
    assert again.data == good.data


def test_a_damaged_stored_original_is_fetched_again(web, origin):
    app, client = web()
    origin.state.put("/o.jpg", imaging.sample("rocket.jpg"))
    assert client.get("/web/o.jpg?w=100").status_code == 200
    cache = app.extensions["shield"].store._open()
    key = next(k for k in cache.iterkeys() if k.startswith("o|"))
    raw = bytearray(cache.get(key))
    raw[5000:5010] = b"\x00" * 10
    cache.set(key, bytes(raw))
    resp = client.get("/web/o.jpg?w=101")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
    assert origin.state.count("/o.jpg") == 2  # the damaged copy was not used


# 5. A 200 that is not an image serves the stored copy stale.


def test_an_html_page_from_the_origin_serves_the_stored_copy(web, origin):
    _app, client = web(cache_ttl=1)
    origin.state.put("/h.jpg", imaging.sample("rocket.jpg"))
    good = client.get("/web/h.jpg?w=80")
    origin.state.put("/h.jpg", b"<!doctype html><title>Maintenance</title>", **{"Content-Type": "text/html"})
    time.sleep(1.2)
    resp = client.get("/web/h.jpg?w=80")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "STALE" and resp.data == good.data
    never = client.get("/web/never.jpg")
    assert never.status_code == 404


# 6. After a failure, stale answers go out at once; the origin is retried off the request.


def test_stale_answers_do_not_wait_for_a_hanging_origin(make_app, origin):
    app = make_app(
        {"web": {"origin": origin.url, "allow_private_origin": True, "cache_ttl": 1}},
        origin_retry_interval=0.2,
        origin_timeout=2,
        hot_cache_bytes=0,
    )
    client = client_of(app)
    origin.state.put("/s.jpg", imaging.sample("rocket.jpg"))
    assert client.get("/web/s.jpg?w=60").status_code == 200
    time.sleep(1.1)
    origin.state.delay = 3  # longer than origin_timeout
    first = client.get("/web/s.jpg?w=60")  # waits for the timeout once
    assert first.status_code == 200 and first.headers["X-Cache"] == "STALE"
    assert "fwd-status=504" in first.headers["Cache-Status"]
    slowest = 0.0
    for _ in range(8):
        time.sleep(0.25)  # past origin_retry_interval each time
        started = time.monotonic()
        resp = client.get("/web/s.jpg?w=60")
        slowest = max(slowest, time.monotonic() - started)
        assert resp.status_code == 200 and resp.headers["X-Cache"] == "STALE"
    assert slowest < 1.0  # never the 2 s origin_timeout: the retries ran in the background
    origin.state.delay = 0


# 7. A 304 without Cache-Control keeps the stored response's lifetime (RFC 9111 4.3.4).


def test_a_bare_304_keeps_the_stored_lifetime(web, origin):
    _app, client = web(cache_ttl=3600)
    origin.state.put("/r.jpg", imaging.sample("rocket.jpg"), **{"Cache-Control": "max-age=1"})
    origin.state.headers_304["/r.jpg"] = {}  # no Cache-Control on its 304s
    assert client.get("/web/r.jpg?w=40").status_code == 200
    time.sleep(1.2)
    assert client.get("/web/r.jpg?w=40").status_code == 200  # revalidated: 304
    assert origin.state.count("/r.jpg") == 2
    time.sleep(1.2)  # one second again, not cache_ttl's hour
    assert client.get("/web/r.jpg?w=40").status_code == 200
    assert origin.state.count("/r.jpg") == 3


# 8. /health tells a cache that cannot be written; the folder stays within cache_max_bytes.


def test_health_is_degraded_when_the_cache_index_is_damaged(make_app, folder, tmp_path):
    app = make_app({"demo": {"origin": str(folder) + "/"}}, hot_cache_bytes=0)
    client = client_of(app)
    assert client.get("/health").get_json() == {"status": "ok", "cache": "ok"}
    assert client.get("/demo/rocket.jpg?w=50").status_code == 200
    store = app.extensions["shield"].store
    store.upkeep._probed_at = 0.0
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        target = tmp_path / "cache" / name
        if target.exists():
            target.write_bytes(b"this is not a database" * 500)
    store._index.close()
    import sqlite3

    store._index = sqlite3.connect(
        str(tmp_path / "cache" / "index.db"), isolation_level=None, check_same_thread=False
    )
    health = client.get("/health").get_json()
    assert health == {"status": "degraded", "cache": "unwritable"}
    for w in (60, 61):  # images still served, from the origin
        resp = client.get(f"/demo/rocket.jpg?w={w}")
        assert resp.status_code == 200 and imaging.decode(resp.data).size == (w, round(427 * w / 640))


def test_the_cache_folder_stays_within_cache_max_bytes(make_app, folder, tmp_path):
    from shield.cache import upkeep

    app = make_app({"demo": {"origin": str(folder) + "/"}}, cache_max_bytes=10_000_000)
    store = app.extensions["shield"].store
    rng = random.Random(3)
    upkeep.EVERY, saved = 0.0, upkeep.EVERY
    try:
        keys = []
        for i in range(120):  # 36 MB of variants into a 10 MB cache
            key = f"v|demo|/f{i}.jpg|v1|img:{i}|other"
            body = rng.randbytes(300_000)
            assert store.put_variant(
                key, {"content_type": "image/jpeg", "etag": '"x"'}, body, "demo", f"/f{i}.jpg", [f"t{i % 3}"]
            )
            keys.append(key)
    finally:
        upkeep.EVERY = saved
    total = sum(
        os.path.getsize(p)
        for p in glob.glob(str(tmp_path / "cache") + "/**", recursive=True)
        if os.path.isfile(p)
    )
    assert total <= 10_000_000 * 1.05, total
    assert store.get_variant(keys[0]) is None  # the least recently used went first
    newest = store.get_variant(keys[-1])
    assert newest is not None and newest.read_body()
    indexed = store._index.execute("SELECT count(*) FROM variants").fetchone()[0]
    held = sum(1 for k in keys if k in store._open())
    assert held < 40 and indexed <= held + upkeep.PRUNE_BATCH  # evicted rows leave the index
    store.upkeep.prune(store._open(), store._index)
    assert store._index.execute("SELECT count(*) FROM variants").fetchone()[0] == held
    assert store.purge_tag("t0") <= held


# 10. Carried over: purges counted under their projects; a short read is a miss.


def test_purges_of_every_kind_are_counted_under_their_projects(make_app, folder):
    app = make_app(
        {
            "a": {"origin": str(folder) + "/", "tags": ["shared"]},
            "b": {"origin": str(folder) + "/", "tags": ["shared"]},
        },
        admin_token=ADMIN_TOKEN,
    )
    client = client_of(app)
    for project in ("a", "b"):
        for w in (10, 20, 30):
            assert client.get(f"/{project}/rocket.jpg?w={w}").status_code == 200
    resp = client.post("/v1/purge", headers=ADMIN, json={"tags": ["shared"]})
    assert resp.get_json()["purged"] == 6
    app.extensions["shield"].stats.flush()
    for project in ("a", "b"):
        stats = client.get(f"/v1/stats?project={project}", headers=ADMIN).get_json()
        assert stats["purged"] == 3, (project, stats)
    assert client.get("/a/rocket.jpg?w=10").headers["X-Cache"] == "MISS"
    client.post("/v1/purge", headers=ADMIN, json={"prefixes": ["/a/"]})
    client.post("/v1/purge", headers=ADMIN, json={"paths": ["/b/rocket.jpg"]})
    app.extensions["shield"].stats.flush()
    assert client.get("/v1/stats?project=a", headers=ADMIN).get_json()["purged"] == 4
    assert client.get("/v1/stats?project=b", headers=ADMIN).get_json()["purged"] == 3


def test_a_short_read_of_a_cached_file_is_a_miss(make_app, folder, monkeypatch):
    from shield.cache.entries import Entry

    app = make_app({"demo": {"origin": str(folder) + "/"}})
    client = client_of(app)
    url = "/demo/astronaut.png?w=220&fmt=png"  # a file in the cache, small enough for the hot set
    good = client.get(url)
    assert good.headers["X-Cache"] == "MISS" and 40_000 < len(good.data) < 128_000
    real = Entry.read_body
    monkeypatch.setattr(Entry, "read_body", lambda self: real(self)[:1000])  # the disk gives less
    again = client.get(url)
    monkeypatch.setattr(Entry, "read_body", real)
    assert again.status_code == 200 and again.headers["X-Cache"] == "MISS"
    assert again.data == good.data and int(again.headers["Content-Length"]) == len(good.data)


def test_a_patch_of_a_file_project_does_not_shadow_later_file_edits(make_app, folder):
    first = client_of(
        make_app({"demo": {"origin": str(folder) + "/", "quality": 80}}, admin_token=ADMIN_TOKEN)
    )
    patched = first.patch("/v1/projects/demo", headers=ADMIN, json={"quality": 50})
    assert patched.status_code == 200 and patched.get_json()["quality"] == 50
    # The file is edited and shield restarts (same state_dir): both changes hold.
    edited = {"demo": {"origin": str(folder) + "/", "quality": 80, "max_width": 100}}
    second = client_of(make_app(edited, admin_token=ADMIN_TOKEN))
    project = second.get("/v1/projects/demo", headers=ADMIN).get_json()
    assert project["quality"] == 50 and project["max_width"] == 100
    assert imaging.decode(second.get("/demo/rocket.jpg?w=400").data).size == (100, 67)


@pytest.mark.slow
def test_a_full_disk_serves_from_the_origin_and_says_degraded(gunicorn, tmp_path, folder):
    # RLIMIT_FSIZE: no file of the server may grow past 300 KB, as on a disk that is full
    # (writes fail with EFBIG; Python ignores SIGXFSZ). The original astronaut.png and its
    # full-size PNG are larger, so neither can be stored.
    server = gunicorn(
        server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"\n'),
        workers=1,
        prefix=["prlimit", "--fsize=300000"],
    )
    assert requests.get(server.url + "/health", timeout=10).json()["status"] == "ok"
    for _ in range(2):
        resp = requests.get(server.url + "/demo/astronaut.png?fmt=png&q=79", timeout=60)
        assert resp.status_code == 200 and len(resp.content) > 300_000
        assert resp.headers["X-Cache"] == "MISS"  # nothing could be stored: made again
        assert imaging.decode(resp.content).size == (512, 512)
    assert requests.get(server.url + "/demo/rocket.jpg?w=40", timeout=30).status_code == 200
    health = requests.get(server.url + "/health", timeout=10).json()
    assert health == {"status": "degraded", "cache": "unwritable"}
    server.proc.terminate()
    server.proc.wait(15)
    logged = server.proc.stderr.read().decode(errors="replace")
    assert "cannot rollback" not in logged
    assert "cache_write" in logged or "cache_upkeep" in logged or "File too large" in logged
