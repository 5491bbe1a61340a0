"""Image URLs answered in front of Flask, and each worker's in-memory hot set."""

import io
import json
import logging
import multiprocessing
import os
import time
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client
from werkzeug.wrappers import Request as WerkzeugRequest

from shield import logs, params, pid
from shield.api.web import create_app
from shield.cache.hot import ENTRY_OVERHEAD, Generation, HotEntry, HotSet
from shield.cache.purge import parse as purge_request
from shield.delivery import Request as DeliveryRequest
from shield.guard import signing
from tests import imaging
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WEBP = "image/avif,image/webp,*/*"


def build(tmp_path, name, folder, hot_cache_bytes=8 * 1024 * 1024, **project):
    return create_app(
        {
            "shield": {
                "cache_dir": str(tmp_path / name / "cache"),
                "state_dir": str(tmp_path / name / "state"),
                "admin_token": ADMIN_TOKEN,
                "served_by_header": True,
                "hot_cache_bytes": hot_cache_bytes,
            },
            "projects": {"demo": {"origin": str(folder) + "/", **project}},
        }
    )


def shared(tmp_path, folder, **project):
    """Two apps on one cache and state folder, as two gunicorn workers are."""
    return build(tmp_path, "one", folder, **project), build(tmp_path, "one", folder, **project)


def hot(app):
    return app.extensions["shield"].delivery.hot


# -- the front door answers exactly as the Flask route does

EXCHANGES = [
    ("GET", "/demo/coffee.png?w=100", {}),
    ("GET", "/demo/coffee.png?w=100", {}),
    ("GET", "/demo/coffee.png?w=100", {}),
    ("HEAD", "/demo/coffee.png?w=100", {}),
    ("GET", "/demo/coffee.png?w=100&fmt=auto", {"Accept": WEBP}),
    ("GET", "/demo/coffee.png?w=100&fmt=auto", {"Accept": WEBP}),
    ("GET", "/demo/coffee.png?w=120&w=999&q=50", {}),
    ("GET", "/demo/coffee.png?w=120&w=999&q=50", {}),
    ("GET", "/demo/coffee.png?w=abc", {}),
    ("GET", "/demo/coffee.png?w=%FF", {}),
    ("GET", "/demo/coffee.png?fmt=webp+", {}),
    ("HEAD", "/demo/coffee.png?w=abc", {}),
    ("GET", "/demo/missing.png?w=10", {}),
    ("GET", "/nope/coffee.png", {}),
    ("GET", "/demo/caf%C3%A9.png", {}),
    ("GET", "/demo/%2e%2e/secret.png", {}),
    ("GET", "/demo/rocket.jpg", {}),
    ("GET", "/demo/rocket.jpg", {}),
    ("GET", "/demo//rocket.jpg", {}),
    ("GET", "/demo/", {}),
    ("POST", "/demo/coffee.png", {}),
    ("GET", "/v1/stats", {}),
    ("GET", "/v1/nothing", {}),
    ("GET", "/health", {}),
    ("GET", "/demo/coffee.png?w=100&fmt=webp&x=%FF%FE", {}),
    ("GET", "/demo/coffee.png?w=100&fmt=webp&x=%FF%FE", {}),
]


def _exchange(client, method, url, headers):
    with client.open(url, method=method, headers=headers) as resp:
        body = resp.get_data()
        kept = {k: v for k, v in resp.headers.items() if k not in ("Server-Timing",)}
        return resp.status_code, kept, body


def test_front_door_answers_as_the_flask_route(tmp_path, folder):
    front = build(tmp_path, "front", folder)
    behind = build(tmp_path, "behind", folder, hot_cache_bytes=0)  # Flask's route, disk hits only
    flask_only = Client(behind.wsgi_app.flask_wsgi)
    front_client = front.test_client()
    etags = set()
    for method, url, headers in EXCHANGES:
        a = _exchange(front_client, method, url, headers)
        b = _exchange(flask_only, method, url, headers)
        assert a == b, (method, url)
        if "ETag" in a[1]:
            etags.add(a[1]["ETag"])
    assert len(hot(front)) >= 3  # the repeated hits were kept
    # Conditional requests, with the validators the first round handed out.
    for etag in sorted(etags):
        for method, url, headers in EXCHANGES[:8]:
            a = _exchange(front_client, method, url, {**headers, "If-None-Match": etag})
            b = _exchange(flask_only, method, url, {**headers, "If-None-Match": etag})
            assert a == b, (method, url, etag)


def test_front_door_hit_kinds(tmp_path, folder):
    c = build(tmp_path, "a", folder).test_client()
    first = c.get("/demo/coffee.png?w=100&fmt=webp")
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    for _ in range(2):
        again = c.get("/demo/coffee.png?w=100&fmt=webp")
        assert again.status_code == 200 and again.headers["X-Cache"] == "HIT"
        assert again.headers["Cache-Status"] == "shield; hit"
        assert again.headers["Server-Timing"].startswith('cache;desc="HIT";dur=')
        assert again.get_data() == first.get_data()
        assert imaging.decode(again.get_data()).size == (100, 67)
    head = c.head("/demo/coffee.png?w=100&fmt=webp")
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Length"] == str(len(first.get_data()))
    cond = c.get("/demo/coffee.png?w=100&fmt=webp", headers={"If-None-Match": first.headers["ETag"]})
    assert cond.status_code == 304 and cond.get_data() == b""
    assert cond.headers["ETag"] == first.headers["ETag"] and "Content-Type" not in cond.headers
    bad_head = c.head("/demo/coffee.png?w=0")
    assert bad_head.status_code == 400 and bad_head.get_data() == b""


# -- the hot set


def test_kept_answer_survives_its_disk_entry_but_not_a_purge_elsewhere(tmp_path, folder):
    a, b = shared(tmp_path, folder)
    ca, cb = a.test_client(), b.test_client()
    url = "/demo/coffee.png?w=90&fmt=webp"
    made = ca.get(url)
    assert made.headers["X-Cache"] == "MISS"
    assert ca.get(url).headers["X-Cache"] == "HIT"
    assert len(hot(a)) == 1
    # The disk entry goes (as LRU eviction would): the kept answer still serves the same bytes.
    store = a.extensions["shield"].store
    cache = store._open()
    for key in list(cache.iterkeys()):
        if key.startswith("v|"):
            cache.delete(key)
    kept = ca.get(url)
    assert (kept.status_code, kept.headers["X-Cache"]) == (200, "HIT")
    assert kept.get_data() == made.get_data()
    # A purge through the other worker reaches this one at its next request.
    purged = cb.post("/v1/purge", headers=AUTH, json={"paths": ["/demo/coffee.png"]})
    assert purged.status_code == 200
    after = ca.get(url)
    assert (after.status_code, after.headers["X-Cache"]) == (200, "MISS")
    assert len(hot(a)) == 0


@pytest.mark.parametrize(
    "purge",
    [{"tags": ["project-demo"]}, {"prefixes": ["/demo/"]}, {"project": "demo", "everything": True}],
)
def test_every_kind_of_purge_lets_go_of_kept_answers(tmp_path, folder, purge):
    a, b = shared(tmp_path, folder)
    ca = a.test_client()
    url = "/demo/rocket.jpg?w=80"
    ca.get(url)
    assert ca.get(url).headers["X-Cache"] == "HIT" and len(hot(a)) == 1
    assert b.test_client().post("/v1/purge", headers=AUTH, json=purge).status_code == 200
    assert ca.get(url).headers["X-Cache"] == "MISS"


def http_app(make_app, origin, cache_ttl):
    """A project on the test HTTP origin serving rocket.jpg as /h/p.jpg."""
    origin.state.put("/p.jpg", imaging.sample("rocket.jpg"))
    app = make_app({"h": {"origin": origin.url + "/", "cache_ttl": cache_ttl, "allow_private_origin": True}})
    return app, app.test_client()


def test_kept_answer_ends_with_the_originals_freshness(make_app, origin):
    app, c = http_app(make_app, origin, cache_ttl=1)
    assert c.get("/h/p.jpg?w=50").headers["X-Cache"] == "MISS"
    assert c.get("/h/p.jpg?w=50").headers["X-Cache"] == "HIT"
    assert origin.state.count("/p.jpg") == 1
    entry = next(iter(hot(app)._entries.values()))
    assert entry.valid_until <= time.time() + 1
    time.sleep(1.1)
    resp = c.get("/h/p.jpg?w=50")
    assert resp.status_code == 200
    assert origin.state.count("/p.jpg") == 2  # revalidated, not answered from memory


def test_changed_original_replaces_kept_answers(make_app, origin):
    app, c = http_app(make_app, origin, cache_ttl=1)
    c.get("/h/p.jpg?w=60")
    old = c.get("/h/p.jpg?w=60")
    assert old.headers["X-Cache"] == "HIT"
    origin.state.put("/p.jpg", imaging.encode(imaging.halves(300, 200), "JPEG"))
    time.sleep(1.1)
    new = c.get("/h/p.jpg?w=60")
    assert new.headers["X-Cache"] == "MISS" and new.headers["ETag"] != old.headers["ETag"]
    assert imaging.decode(new.get_data()).size == (60, 40)
    assert c.get("/h/p.jpg?w=60").get_data() == new.get_data()


def test_project_change_elsewhere_is_not_answered_from_memory(tmp_path, folder):
    a, b = shared(tmp_path, folder)
    ca, cb = a.test_client(), b.test_client()
    cb.post("/v1/projects", headers=AUTH, json={"name": "site", "origin": str(folder) + "/"})
    time.sleep(0.6)
    url = "/site/coffee.png?w=70"
    ca.get(url)
    assert ca.get(url).headers["X-Cache"] == "HIT" and len(hot(a)) == 1
    assert cb.patch("/v1/projects/site", headers=AUTH, json={"enabled": False}).status_code == 200
    time.sleep(0.6)
    resp = ca.get(url)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "project_not_found"


def test_rate_limits_and_expiry_still_apply_to_kept_answers(tmp_path, folder):
    key = "hot-signing-secret-0123456789"
    app = build(tmp_path, "a", folder, signing_key=key, rate_limit=4)
    c = app.test_client()
    exp = int(time.time()) + 600
    url = signing.signed_url(key, "/demo/coffee.png", {"w": "40", "exp": str(exp)})
    assert [c.get(url).status_code for _ in range(4)] == [200, 200, 200, 200]
    assert len(hot(app)) == 1
    limited = c.get(url)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limited"
    forged = c.get(url[:-1] + ("0" if url[-1] != "0" else "1"))
    assert forged.status_code == 403

    app2 = build(tmp_path, "b", folder, signing_key=key)
    c2 = app2.test_client()
    warm = c2.get(signing.signed_url(key, "/demo/coffee.png", {"w": "1"}))
    assert warm.status_code == 200  # the original is in the cache: the next requests are quick
    exp = int(time.time()) + 3
    url = signing.signed_url(key, "/demo/coffee.png", {"w": "40", "exp": str(exp)})
    assert [c2.get(url).status_code for _ in range(2)] == [200, 200]
    assert len(hot(app2)) == 1
    while time.time() <= exp + 0.05:
        time.sleep(0.1)
    expired = c2.get(url)
    assert expired.status_code == 403 and expired.get_json()["error"]["code"] == "expired"


def test_private_and_large_answers_are_not_kept(tmp_path, folder):
    key = "hot-signing-secret-0123456789"
    app = build(tmp_path, "a", folder, signing_key=key, private=True)
    c = app.test_client()
    path = "/demo/coffee.png"
    url = f"{path}?w=40&token={signing.private_token(key, path, time.time() + 60)}"
    assert [c.get(url).status_code for _ in range(2)] == [200, 200]
    assert len(hot(app)) == 0

    big = build(tmp_path, "b", folder).test_client()
    url = "/demo/astronaut.png?w=700&fmt=png"
    made = big.get(url)
    assert len(made.get_data()) > HotSet().max_body
    with big.get(url) as again:
        assert again.headers["X-Cache"] == "HIT" and again.get_data() == made.get_data()
    assert len(hot(big.application)) == 0


def test_file_backed_hit_is_kept_whole(tmp_path, folder):
    app = build(tmp_path, "a", folder)
    c = app.test_client()
    url = "/demo/astronaut.png?w=200&fmt=png"
    made = c.get(url).get_data()
    assert 32 * 1024 < len(made) <= HotSet().max_body  # a file in the disk cache, small enough to keep
    assert c.get(url).get_data() == made
    assert len(hot(app)) == 1 and len(made) < hot(app).bytes <= len(made) + 2048
    assert c.get(url).get_data() == made


def test_hot_set_is_bounded_by_what_it_holds_least_recently_used_first():
    def entry(size):
        return HotEntry(0, time.time() + 9, None, {}, '"e"', b"x" * size)

    each = ENTRY_OVERHEAD + 40 + 1  # body, one-character key, overhead
    kept = HotSet(max_bytes=2 * each + 10, max_body=60)
    kept.put(("a",), entry(40))
    kept.put(("b",), entry(40))
    assert kept.get(("a",)) is not None  # a is now the most recently used
    kept.put(("c",), entry(40))
    assert kept.get(("b",)) is None and kept.get(("a",)) is not None and kept.get(("c",)) is not None
    assert kept.bytes == 2 * each
    kept.put(("d",), entry(61))  # over max_body
    assert kept.get(("d",)) is None and kept.bytes == 2 * each
    kept.put(("a",), entry(10))
    assert kept.bytes == 2 * each - 30 and len(kept) == 2
    kept.discard(("c",))
    assert kept.bytes == each - 30
    kept.clear()
    assert (len(kept), kept.bytes) == (0, 0)
    # Tiny bodies under many keys are bounded by their count, not by their bytes alone.
    many = HotSet(max_bytes=100 * ENTRY_OVERHEAD, max_body=60)
    for i in range(1000):
        many.put(("k", str(i)), entry(1))
    assert len(many) < 100 and many.bytes <= many.max_bytes
    assert not many.admits(10, ("x" * 3000,))  # a padded key is never kept


def _bump(path, times):
    counter = Generation(path)
    for _ in range(times):
        counter.bump()


def test_generation_moves_across_processes(tmp_path):
    path = str(tmp_path / "gen" / "generation")
    counter = Generation(path)
    start = counter.current()
    assert start > 0  # a new file starts from the clock: no earlier file's value comes back
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(path, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    _bump(path, 100)
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    assert counter.current() == start + 500  # no increment lost to a race


def _report_pids(counter, queue):
    counter.current()
    queue.put((pid.current(), os.getpid(), counter._pid))


def test_a_forked_child_knows_its_own_pid_and_opens_its_own_counter(tmp_path):
    counter = Generation(str(tmp_path / "generation"))
    counter.current()
    parent = os.getpid()
    assert pid.current() == parent and counter._pid == parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_report_pids, args=(counter, queue))
    child.start()
    seen, real, opened_by = queue.get(timeout=20)
    child.join(20)
    assert child.exitcode == 0
    assert seen == real == opened_by != parent  # the child's own id, and its own descriptor
    assert pid.current() == parent


def test_generation_unavailable_means_nothing_is_kept(tmp_path):
    (tmp_path / "file").write_text("x")
    counter = Generation(str(tmp_path / "file" / "generation"))  # its folder is a file
    assert counter.current() is None
    counter.bump()  # does not raise


# -- helpers of the fast path


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aw=&;+%2FFé0x\x00 ?#", max_size=30))
def test_parse_query_matches_werkzeug(query):
    raw = urllib.parse.quote(query, safe="=&;+%?") if not query.isascii() else query
    environ = {"QUERY_STRING": raw, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    expected = {k: WerkzeugRequest(environ).args.get(k) for k in WerkzeugRequest(environ).args}
    assert params.parse_query(raw) == expected
    assert list(params.parse_query(raw)) == list(expected)


def test_request_log_line_is_the_json_event(capsys):
    logs.configure("info")
    handler = logs.logger.handlers[0]
    stream = io.StringIO()
    old, handler.stream = handler.stream, stream
    try:
        logs.request("GET", "/demo/x.png", 200, "HIT", 12, 0.5)
        logs.event("request", method="GET", path="/demo/x.png", status=200, cache="HIT", bytes=12, ms=0.5)
        logs.request("GET", '/d\u00e9mo/"x".png', 404, "", 0, 1.25)
        logs.event(
            "request", method="GET", path='/d\u00e9mo/"x".png', status=404, cache=None, bytes=0, ms=1.25
        )
        logs.configure("warning")
        logs.request("GET", "/demo/x.png", 200, "HIT", 12, 0.5)
    finally:
        handler.stream = old
        logs.configure("info")
    written = stream.getvalue().splitlines()
    lines = [json.loads(line) for line in written]
    assert len(lines) == 4
    for line in lines:
        line.pop("ts")
    # Byte for byte as the logging machinery writes it (but for the time), escapes included.
    assert [line.partition(",")[2] for line in written[::2]] == [
        line.partition(",")[2] for line in written[1::2]
    ]
    assert lines[2] == lines[3] and lines[2]["path"] == '/d\u00e9mo/"x".png' and lines[2]["cache"] is None
    assert (
        lines[0]
        == lines[1]
        == {
            "level": "info",
            "event": "request",
            "method": "GET",
            "path": "/demo/x.png",
            "status": 200,
            "cache": "HIT",
            "bytes": 12,
            "ms": 0.5,
        }
    )


def test_request_log_line_goes_through_logging_when_other_handlers_listen():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    extra = Keep()
    logs.logger.addHandler(extra)
    try:
        logs.request("GET", "/demo/x.png", 204, "", 0, 0.25)
    finally:
        logs.logger.removeHandler(extra)
    fields = {"method": "GET", "path": "/demo/x.png", "status": 204, "cache": None, "bytes": 0, "ms": 0.25}
    assert [(r.getMessage(), r.fields) for r in records] == [("request", fields)]


def test_hot_set_can_be_turned_off(tmp_path, folder):
    app = create_app(
        {
            "shield": {
                "cache_dir": str(tmp_path / "cache"),
                "state_dir": str(tmp_path / "state"),
                "hot_cache_bytes": 0,
            },
            "projects": {"demo": {"origin": str(folder) + "/"}},
        }
    )
    c = app.test_client()
    assert [c.get("/demo/coffee.png?w=30").headers["X-Cache"] for _ in range(3)] == ["MISS", "HIT", "HIT"]
    assert len(hot(app)) == 0


def test_hot_set_off_keeps_file_backed_hits_as_files(tmp_path, folder):
    app = build(tmp_path, "a", folder, hot_cache_bytes=0)
    c = app.test_client()
    url = "/demo/astronaut.png?w=200&fmt=png"
    made = c.get(url).get_data()
    assert len(made) > 32 * 1024
    with c.get(url) as again:
        assert again.headers["X-Cache"] == "HIT" and again.get_data() == made
    reply = app.extensions["shield"].delivery.serve(
        DeliveryRequest(project="demo", path="astronaut.png", query="w=200&fmt=png")
    )
    assert reply.x_cache == "HIT" and hasattr(reply.body, "read")  # sent from its file, not read
    assert reply.body.read() == made
    reply.body.close()
    assert len(hot(app)) == 0


def test_refetched_original_with_new_bytes_drops_kept_answers(make_app, origin):
    from shield.cache.store import meta_key_of, original_key_of

    app, c = http_app(make_app, origin, cache_ttl=3600)
    c.get("/h/p.jpg?w=60")
    old = c.get("/h/p.jpg?w=60")
    assert old.headers["X-Cache"] == "HIT" and len(hot(app)) == 1
    # The original's body leaves the disk cache (LRU) while its metadata stays; the origin changed.
    store = app.extensions["shield"].store
    meta = store.get(meta_key_of("h", "p.jpg"))
    store.delete(original_key_of("h", "p.jpg", meta["version"]))
    origin.state.put("/p.jpg", imaging.encode(imaging.halves(300, 200), "JPEG"))
    assert c.get("/h/p.jpg?w=80").headers["X-Cache"] == "MISS"  # refetches: a new version
    assert store.get(meta_key_of("h", "p.jpg"))["version"] != meta["version"]
    new = c.get("/h/p.jpg?w=60")
    assert new.headers["X-Cache"] == "MISS" and new.headers["ETag"] != old.headers["ETag"]
    assert imaging.decode(new.get_data()).size == (60, 40)


def test_a_purge_during_the_checks_is_seen(tmp_path, folder):
    """The rate limiter can wait on its lock (and yield): a purge that ends meanwhile counts."""
    app = build(tmp_path, "a", folder, rate_limit=100)
    c = app.test_client()
    url = "/demo/coffee.png?w=50"
    c.get(url)
    assert c.get(url).headers["X-Cache"] == "HIT" and len(hot(app)) == 1
    services = app.extensions["shield"]
    guard = services.delivery.guard
    check = guard.check_request

    def purge_meanwhile(project, req):
        services.purger.run(purge_request({"paths": ["/demo/coffee.png"]}))
        guard.check_request = check
        return check(project, req)

    guard.check_request = purge_meanwhile
    assert c.get(url).headers["X-Cache"] == "MISS"


def test_referer_allowlist_applies_to_kept_answers(tmp_path, folder):
    app = build(tmp_path, "a", folder, allowed_referers=["shop.example"])
    c = app.test_client()
    url = "/demo/coffee.png?w=45"
    ok = {"Referer": "https://shop.example/p/1"}
    assert [c.get(url, headers=ok).status_code for _ in range(2)] == [200, 200]
    assert len(hot(app)) == 1
    refused = c.get(url, headers={"Referer": "https://elsewhere.example/"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden_referer"


def test_non_utf8_query_is_a_client_error_not_a_server_error(tmp_path, folder):
    c = build(tmp_path, "a", folder).test_client()
    bad = c.get("/demo/coffee.png", environ_overrides={"QUERY_STRING": "w=1\xff0"})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_param"
    ignored = c.get("/demo/coffee.png", environ_overrides={"QUERY_STRING": "w=20&utm=\xff"})
    assert ignored.status_code == 200 and imaging.decode(ignored.get_data()).size[0] == 20


def test_request_log_write_failure_does_not_fail_the_request():
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError("stderr is gone")

    logs.configure("info")
    handler = logs.logger.handlers[0]
    old, handler.stream = handler.stream, Broken()
    try:
        logs.request("GET", "/demo/x.png", 200, "HIT", 12, 0.5)  # does not raise
    finally:
        handler.stream = old
