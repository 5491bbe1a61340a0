"""Cluster mode: hits through HAProxy with two nodes against one, and purge propagation.

Redis, shield nodes (gunicorn, 1 worker each, so the two-node fleet has the cores of
two single-worker nodes) and HAProxy with deploy/haproxy.cfg, all on this machine.
The hits: wrk on many paths (the load balancer spreads paths, not requests), through
HAProxy in front of one node, then in front of two, alternating. The purges: 200
purges on node a, each answered only when both nodes have applied it; p50 and max of
the time to that answer, and a check through node b that each purged variant is a
miss right after.

    .venv/bin/python -m bench.cluster [--rounds N] [--seconds S] [--purges N]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import requests

from bench.harness import ROOT, Wrk, log, median

sys.path.insert(0, ROOT)
from tests.cluster import HAProxy, Node, RedisServer, node_config  # noqa: E402
from tests.conftest import ADMIN_TOKEN  # noqa: E402

PATHS = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--purges", type=int, default=200)
    parser.add_argument("--wrk", default="wrk")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="shield-bench-cluster-")
    folder = os.path.join(tmp, "images")
    os.makedirs(folder)
    source = open(os.path.join(ROOT, "samples", "rocket.jpg"), "rb").read()
    for i in range(PATHS):
        with open(os.path.join(folder, f"p{i}.jpg"), "wb") as fh:
            fh.write(source)
    redis_server = RedisServer().start()
    projects = f'[projects.demo]\norigin = "{folder}/"\nrate_limit = 0\nrate_limit_miss = 0\n'
    import pathlib

    base = pathlib.Path(tmp)
    nodes = [
        Node(node_config(base, name, redis_server.url, projects, base / "assets"), workers=1)
        .start()
        .wait_ready()
        for name in ("a", "b")
    ]
    proxies = []
    try:
        for name in ("one", "two"):
            (base / name).mkdir()
        proxies.append(HAProxy(nodes[:1]).start(base / "one"))
        proxies.append(HAProxy(nodes).start(base / "two"))
        paths = [f"/demo/p{i}.jpg?w=320" for i in range(PATHS)]
        for proxy in proxies:
            for path in paths:
                assert requests.get(proxy.url + path, timeout=60).status_code == 200
        # walk.lua over the 64 files at one width: each connection cycles through the paths.
        walk = ("/demo/{p}?w=320", ",".join(f"p{i}.jpg" for i in range(PATHS)), 320, 320, 80, 80, 32)
        wrk = Wrk(args.wrk)
        for proxy in proxies:  # warm-up: connections, each worker's memory of its paths
            wrk.run(proxy.url + "/", "walk.lua", walk, connections=32, seconds=2)
        runs = {"one node": [], "two nodes": []}
        for _ in range(args.rounds):
            for name, proxy in zip(runs, proxies, strict=True):
                runs[name].append(
                    wrk.run(proxy.url + "/", "walk.lua", walk, connections=32, seconds=args.seconds)
                )
        rps = {name: median([r["rps"] for r in rs]) for name, rs in runs.items()}
        errors = sum(r["errors"] for rs in runs.values() for r in rs)
        a, b = nodes
        times, misses = [], 0
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for i in range(args.purges):
            path = paths[i % PATHS]
            requests.get(b.url + path, timeout=30)  # b holds it
            started = time.monotonic()
            answer = requests.post(
                a.url + "/v1/purge", headers=headers, json={"paths": [path.split("?")[0]]}, timeout=30
            ).json()
            times.append((time.monotonic() - started) * 1000)
            assert answer["status"] == "done", answer
            misses += requests.get(b.url + path, timeout=30).headers.get("X-Cache") == "MISS"
        print("## Cluster: hits through HAProxy, and purge propagation")
        print()
        print("| measure | two nodes | one node | ratio |")
        print("|---|---|---|---|")
        print(
            f"| hits/s through HAProxy, {PATHS} paths, 32 conn | {rps['two nodes']:,.0f} | {rps['one node']:,.0f} | {rps['two nodes'] / rps['one node']:.2f}x |"
        )
        print()
        print(
            f"purges answered with both nodes done: {len(times)}; p50 {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms; the variant on node b a miss right after: {misses} of {len(times)}; "
            f"wrk errors {errors}"
        )
        print(
            "rounds (req/s): "
            + "; ".join(f"{n} " + ", ".join(f"{r['rps']:,.0f}" for r in rs) for n, rs in runs.items())
        )
    finally:
        for proxy in proxies:
            proxy.stop()
        for node in nodes:
            node.stop()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        log("cluster: done")


if __name__ == "__main__":
    main()
