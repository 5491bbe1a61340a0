"""Cluster mode (contract section 12) with the real daemons: redis-server, two shield nodes
under gunicorn, HAProxy with deploy/haproxy.cfg, all on free loopback ports."""

import json
import os
import shutil
import signal
import statistics
import time

import pytest
import requests

from shield.cluster.link import Link
from shield.cluster.log import STREAM, Log
from tests import imaging
from tests.cluster import HAProxy, Node, RedisServer, node_config
from tests.conftest import ADMIN_TOKEN, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RED, BLUE = (220, 30, 30), (30, 30, 220)


def solid(colour):
    return imaging.encode(imaging.halves(160, 100, colour, colour), "JPEG")


def colour_of(resp):
    return imaging.mean_color(imaging.decode(resp.content))


@pytest.fixture
def fleet(tmp_path):
    """start(name) -> a node; the Redis; the origin folder. Everything is stopped afterwards."""
    folder = tmp_path / "images"
    shutil.copytree(os.path.join(ROOT, "samples"), folder)
    (folder / "p.jpg").write_bytes(solid(RED))
    redis_server = RedisServer().start()
    projects = (
        f'[projects.demo]\norigin = "{folder}/"\ncache_ttl = 3600\n\n'
        f'[projects.limited]\norigin = "{folder}/"\nrate_limit = 20\n'
    )
    started, configs = [], {}

    def start(name, workers=2, extra="cluster_purge_wait = 2.0"):
        if name not in configs:
            configs[name] = node_config(
                tmp_path, name, redis_server.url, projects, tmp_path / "assets", extra
            )
        node = Node(configs[name], workers=workers).start()
        started.append(node)
        return node

    fleet = type("Fleet", (), {})()
    fleet.start, fleet.redis, fleet.folder, fleet.tmp = start, redis_server, folder, tmp_path
    try:
        yield fleet
    finally:
        for node in started:
            node.stop()
        redis_server.stop()


def purge(node, **body):
    resp = requests.post(node.url + "/v1/purge", headers=ADMIN, json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_purge_on_one_node_reaches_the_other_before_it_answers(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    url = "/demo/p.jpg?w=80"
    for node in (a, b):
        for _ in range(30):  # cached on disk and in each worker's memory
            assert imaging.close_color(colour_of(requests.get(node.url + url, timeout=30)), RED, 40)
    times = []
    colours = [RED, BLUE]
    for i in range(20):
        colour = colours[(i + 1) % 2]
        (fleet.folder / "p.jpg").write_bytes(solid(colour))
        started = time.monotonic()
        answer = purge(a, paths=["/demo/p.jpg"])
        times.append(time.monotonic() - started)
        assert answer["status"] == "done" and answer["nodes"] == {"a": "done", "b": "done"}
        for _ in range(4):  # both of b's workers: never the purged bytes
            resp = requests.get(b.url + url, timeout=30)
            assert resp.status_code == 200 and imaging.close_color(colour_of(resp), colour, 40)
    print(
        f"purge answered with both nodes done: p50 {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
    )
    assert max(times) < 2.0  # under cluster_purge_wait: every answer was "done"


def test_a_node_that_was_down_replays_before_it_is_ready(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    url = "/demo/p.jpg?w=90"
    assert imaging.close_color(colour_of(requests.get(b.url + url, timeout=30)), RED, 40)
    kept = requests.get(b.url + "/demo/rocket.jpg?w=60", timeout=30)
    b.stop()
    (fleet.folder / "p.jpg").write_bytes(solid(BLUE))
    answer = purge(a, paths=["/demo/p.jpg"])
    assert answer["nodes"]["b"] == "pending" and answer["status"] == "scheduled"
    # Many more entries while b is away, from a node that is not running: b replays them all.
    log = Log(Link(fleet.redis.url), "elsewhere", str(fleet.tmp))
    for i in range(300):
        log.append(
            {
                "kind": "purge",
                "tags": [f"unrelated-{i}"],
                "paths": [],
                "prefixes": [],
                "everything": None,
                "ids": [],
            }
        )
    # Redis holds every command for 8 s: b starts, and cannot replay yet.
    fleet.redis.client().execute_command("CLIENT", "PAUSE", "8000", "ALL")
    b = fleet.start("b")
    first = requests.get(b.url + "/health/ready", timeout=10)
    assert first.status_code == 503 and first.json()["error"]["code"] == "not_ready"
    image = requests.get(b.url + "/demo/rocket.jpg?w=60", timeout=30)
    assert image.status_code == 200  # the node answers; the load balancer keeps it out
    b.wait_ready(timeout=30)
    resp = requests.get(b.url + url, timeout=30)
    assert imaging.close_color(colour_of(resp), BLUE, 40)
    again = requests.get(b.url + "/demo/rocket.jpg?w=60", timeout=30)
    assert again.headers["X-Cache"] == "HIT" and again.content == kept.content  # the rest was kept


def test_a_node_whose_position_was_trimmed_drops_its_cache(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    assert requests.get(b.url + "/demo/rocket.jpg?w=61", timeout=30).headers["X-Cache"] == "MISS"
    assert requests.get(b.url + "/demo/rocket.jpg?w=61", timeout=30).headers["X-Cache"] == "HIT"
    b.stop()
    purge(a, tags=["something"])
    fleet.redis.client().xtrim(STREAM, maxlen=0)
    purge(a, tags=["something-else"])
    b = fleet.start("b").wait_ready()
    assert requests.get(b.url + "/demo/rocket.jpg?w=61", timeout=30).headers["X-Cache"] == "MISS"


def test_redis_down_then_replaced(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    url = "/demo/p.jpg?w=70"
    for node in (a, b):
        assert imaging.close_color(colour_of(requests.get(node.url + url, timeout=30)), RED, 40)
    fleet.redis.stop(kill=True)
    statuses = set()
    for i in range(40):  # images keep flowing, misses included
        for node in (a, b):
            statuses.add(requests.get(node.url + f"/demo/rocket.jpg?w={100 + i}", timeout=30).status_code)
    assert statuses == {200}
    (fleet.folder / "p.jpg").write_bytes(solid(BLUE))
    answer = purge(a, paths=["/demo/p.jpg"])
    assert answer["status"] == "scheduled" and answer["nodes"]["a"] == "done"
    assert imaging.close_color(colour_of(requests.get(a.url + url, timeout=30)), BLUE, 40)  # applied here
    write = requests.post(
        a.url + "/v1/projects",
        headers=ADMIN,
        json={"name": "new", "origin": str(fleet.folder) + "/"},
        timeout=30,
    )
    assert write.status_code == 503 and write.json()["error"]["code"] == "cluster_unavailable"
    anonymous = requests.post(a.url + "/v1/projects", json={"name": "x", "origin": "/tmp/"}, timeout=30)
    assert anonymous.status_code == 401  # authentication first, whatever Redis's state
    # An empty Redis on the same port: every node notices, resyncs, and purges flow again.
    fleet.redis.start()
    deadline = time.time() + 10
    while time.time() < deadline:  # until both have caught up with the new Redis
        epoch = fleet.redis.client().get("shield:epoch")
        answers = [requests.get(n.url + "/health/ready", timeout=5) for n in (a, b)]
        if epoch and all(r.status_code == 200 and r.json()["epoch"] == epoch for r in answers):
            break
        time.sleep(0.1)
    assert time.time() < deadline
    resp = requests.get(b.url + url, timeout=30)
    assert imaging.close_color(colour_of(resp), BLUE, 40)  # b dropped what it held under the old Redis
    (fleet.folder / "p.jpg").write_bytes(solid(RED))
    deadline = time.time() + 5
    while True:
        answer = purge(a, paths=["/demo/p.jpg"])
        if answer["status"] == "done" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert answer["status"] == "done" and answer["nodes"] == {"a": "done", "b": "done"}
    assert imaging.close_color(colour_of(requests.get(b.url + url, timeout=30)), RED, 40)


def test_haproxy_sends_a_dead_nodes_paths_to_the_other(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    proxy = HAProxy([a, b]).start(fleet.tmp)
    try:
        owners = {}
        for name in ("rocket.jpg", "coffee.png", "astronaut.png", "p.jpg"):
            seen = {
                requests.get(proxy.url + f"/demo/{name}?w={w}", timeout=30)
                .headers["X-Served-By"]
                .rsplit("-", 1)[0]
                for w in (50, 60, 70)
            }
            assert len(seen) == 1  # one node per path, whatever the query
            owners[name] = seen.pop()
        victim = b if "b" in owners.values() else a
        for pid in victim.worker_pids() + [victim.proc.pid]:
            os.kill(pid, signal.SIGKILL)
        victim.proc.wait(10)
        for name in owners:
            resp = requests.get(proxy.url + f"/demo/{name}?w=55", timeout=30)
            assert resp.status_code == 200
            assert resp.headers["X-Served-By"].rsplit("-", 1)[0] != victim.env["SHIELD_CONFIG"].split("/")[-2]
    finally:
        proxy.stop()


def test_projects_and_keys_made_on_one_node_work_on_the_other(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    made = requests.post(
        a.url + "/v1/projects",
        headers=ADMIN,
        json={"name": "shop", "origin": str(fleet.folder) + "/"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    key = requests.post(
        a.url + "/v1/projects/shop/keys", headers=ADMIN, json={"scopes": ["stats"]}, timeout=30
    )
    assert key.status_code == 201, key.text
    secret = key.json()["secret"]
    deadline = time.monotonic() + 1.0  # contract: in force on every live node within one second
    while True:
        image = requests.get(b.url + "/shop/rocket.jpg?w=30", timeout=30)
        stats = requests.get(b.url + "/v1/stats", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        if (image.status_code, stats.status_code) == (200, 200) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert image.status_code == 200 and stats.status_code == 200
    revoked = requests.delete(a.url + f"/v1/projects/shop/keys/{key.json()['id']}", headers=ADMIN, timeout=30)
    assert revoked.status_code == 200
    deadline = time.monotonic() + 1.0
    while (
        requests.get(
            b.url + "/v1/stats", headers={"Authorization": f"Bearer {secret}"}, timeout=30
        ).status_code
        != 401
    ):
        assert time.monotonic() < deadline, "a revoked key still works on the other node"
        time.sleep(0.05)
    gone = requests.delete(a.url + "/v1/projects/shop", headers=ADMIN, timeout=30)
    assert gone.status_code == 200
    deadline = time.monotonic() + 1.0
    while requests.get(b.url + "/shop/rocket.jpg?w=30", timeout=30).status_code != 404:
        assert time.monotonic() < deadline, "a deleted project is still served by the other node"
        time.sleep(0.05)


def test_rate_limits_and_stats_count_every_node(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    statuses = []
    for i in range(15):
        for node in (a, b):
            statuses.append(
                requests.get(node.url + f"/limited/rocket.jpg?w={20 + i}", timeout=30).status_code
            )
    assert (
        statuses.count(200) == 20 and statuses.count(429) == 10
    )  # one limit for the fleet, not one per node
    for node in (a, b):
        for _ in range(3):
            assert requests.get(node.url + "/demo/coffee.png?w=40", timeout=30).status_code == 200
    deadline = time.time() + 5
    while True:
        stats = requests.get(a.url + "/v1/stats?project=demo", headers=ADMIN, timeout=30).json()
        if stats["requests"] == 6 or time.time() > deadline:
            break
        time.sleep(0.2)  # each node adds its buckets at its next flush (twice a second)
    assert stats["requests"] == 6 and set(stats["nodes"]) == {"a", "b"}
    assert stats["nodes"]["a"]["requests"] == 3 and stats["nodes"]["b"]["requests"] == 3
    assert stats["misses"] == 2 and stats["hits"] == 4
    # Redis away: each node keeps to its share of the limit.
    fleet.redis.stop(kill=True)
    time.sleep(0.6)
    alone = [
        requests.get(a.url + f"/limited/coffee.png?w={50 + i}", timeout=30).status_code for i in range(15)
    ]
    assert alone.count(429) >= 5  # at most 10 (20 over 2 nodes), whatever it had counted before


def test_a_purge_made_while_redis_is_away_reaches_the_others_when_it_is_back(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    url = "/demo/p.jpg?w=75"
    time.sleep(1.5)  # a's follower has seen b's heartbeat: the answer lists b
    for _ in range(10):
        assert imaging.close_color(colour_of(requests.get(b.url + url, timeout=30)), RED, 40)
    (fleet.folder / "p.jpg").write_bytes(solid(BLUE))
    # Redis holds every command for 3 s: the same Redis (and its log) comes back after.
    fleet.redis.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")
    answer = purge(a, paths=["/demo/p.jpg"])
    assert answer["status"] == "scheduled" and answer["nodes"] == {"a": "done", "b": "pending"}
    assert imaging.close_color(colour_of(requests.get(a.url + url, timeout=30)), BLUE, 40)
    deadline = time.time() + 10  # the pause ends; a sends its outbox; b applies it
    while time.time() < deadline:
        if imaging.close_color(colour_of(requests.get(b.url + url, timeout=30)), BLUE, 40):
            break
        time.sleep(0.1)
    assert imaging.close_color(colour_of(requests.get(b.url + url, timeout=30)), BLUE, 40)
    assert requests.get(b.url + "/health/ready", timeout=5).status_code == 200  # the same Redis: no resync


def test_an_asset_uploaded_on_one_node_is_served_by_the_other(fleet):
    a, b = fleet.start("a").wait_ready(), fleet.start("b").wait_ready()
    key = requests.post(
        a.url + "/v1/projects/demo/keys", headers=ADMIN, json={"scopes": ["assets"]}, timeout=30
    )
    assert key.status_code == 201
    auth = {"Authorization": f"Bearer {key.json()['secret']}"}
    made = requests.post(
        a.url + "/v1/assets",
        headers=auth,
        files={"file": ("photo.jpg", imaging.sample("rocket.jpg"))},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    path = "/" + made.json()["asset"]["url"].split("/", 3)[3]
    deadline = time.monotonic() + 1.0
    while (served := requests.get(b.url + path + "?w=120", timeout=30)).status_code != 200:
        assert time.monotonic() < deadline, served.text
        time.sleep(0.05)
    assert imaging.decode(served.content).size == (120, 80)


# -- the parts, against a real Redis


@pytest.fixture
def redis_only(tmp_path):
    server = RedisServer().start()
    yield server
    server.stop()


def test_an_entry_is_published_once_however_often_it_is_sent(redis_only, tmp_path):
    log = Log(Link(redis_only.url), "a", str(tmp_path))
    body = {"kind": "purge", "tags": ["t"], "paths": [], "prefixes": [], "everything": None, "ids": []}
    assert log.append(body) == 1
    assert log.append(body) == 0  # the same entry again (a reply that was lost, then the outbox)
    assert redis_only.client().xlen(STREAM) == 1


def test_the_outbox_loses_nothing_to_concurrent_workers(redis_only, tmp_path):
    import multiprocessing

    def keep_many(tag):
        log = Log(Link(redis_only.url), "a", str(tmp_path))
        for i in range(60):
            log.keep(
                {
                    "kind": "purge",
                    "tags": [f"{tag}-{i}"],
                    "paths": [],
                    "prefixes": [],
                    "everything": None,
                    "ids": [],
                }
            )

    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=keep_many, args=(f"w{n}",)) for n in range(2)]
    for w in workers:
        w.start()
    flusher = Log(Link(redis_only.url), "a", str(tmp_path))
    while any(w.is_alive() for w in workers):
        flusher.flush_outbox()
    for w in workers:
        w.join(10)
    flusher.flush_outbox()
    tags = sorted(json.loads(f["body"])["tags"][0] for _id, f in redis_only.client().xrange(STREAM))
    assert tags == sorted(f"w{n}-{i}" for n in range(2) for i in range(60))
    assert oct(os.stat(flusher.outbox_path).st_mode & 0o777) == "0o600"  # key rows hold secrets


def test_a_revocation_is_never_undone_by_an_older_copy(tmp_path):
    from shield.guard.keys import KeyRing

    ring = KeyRing(str(tmp_path))
    key = ring.create("demo", scopes=["stats"])
    (before,) = ring.rows([key.id])
    ring.revoke("demo", key.id)
    ring.apply_rows([before])  # a stale snapshot row, from before the revocation
    assert ring.by_secret(key.secret) is None


def test_readiness_belongs_to_one_run_of_the_node(tmp_path, monkeypatch):
    from shield.cluster import follower

    monkeypatch.setenv(follower.RUN_ENV, "run-1")
    (tmp_path / "cluster-ready").write_text("run-1 epoch")
    assert follower.is_ready(str(tmp_path))
    monkeypatch.setenv(follower.RUN_ENV, "run-2")  # a restart, whatever its pid
    assert not follower.is_ready(str(tmp_path))
