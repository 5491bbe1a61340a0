"""What a Chrome user gets, before and after the browser-facing changes (contract section 2).

Two shields serve the same photo folder in the same run: this tree, and the
tree of an earlier commit (`--before`, checked out into a temporary git
worktree). For each sample image requested with no parameters and Chrome's
Accept it prints the format and bytes each answers; then both are hit on the
same cached URL with wrk in alternating rounds, and the server CPU per hit is
compared (a busy neighbour on the machine disturbs CPU per request far less
than requests a second).

    .venv/bin/python -m bench.browsers [--before REV] [--photos DIR] [--rounds N] [--seconds S]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from bench.harness import ROOT, Server, Wrk, free_port, get, log, median

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAMPLES = ("coffee.png", "astronaut.png", "rocket.jpg")
HIT_PATH = "/demo/rocket.jpg?w=640"
BEFORE = "99d2c96"  # the last commit before CORS, browser_ttl and no-parameter re-encoding


def start_shield(name, tree, photos, tmp):
    work = os.path.join(tmp, name)
    os.makedirs(work)
    config = os.path.join(work, "shield.toml")
    with open(config, "w") as fh:
        fh.write(
            f'[shield]\ncache_dir = "{work}/cache"\nstate_dir = "{work}/state"\nlog_level = "warning"\n\n'
            f'[projects.demo]\norigin = "{photos}/"\nrate_limit = 0\nrate_limit_miss = 0\n'
        )
    port = free_port()
    env = {
        "SHIELD_CONFIG": config,
        "SHIELD_BIND": f"127.0.0.1:{port}",
        "PYTHONPATH": tree,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=work),
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", os.path.join(tree, "gunicorn.conf.py"), "app:app"]
    return Server(name, argv, port, env=env, cwd=tree, log_dir=tmp).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with")
    parser.add_argument("--photos", default=os.path.join(ROOT, "samples"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--wrk", default="wrk")
    args = parser.parse_args()
    photos = os.path.abspath(args.photos)
    tmp = tempfile.mkdtemp(prefix="shield-bench-browsers-")
    before_tree = os.path.join(tmp, "before-tree")
    made = subprocess.run(
        ["git", "-C", ROOT, "worktree", "add", "--detach", before_tree, args.before],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        print(f"## Browsers: cannot check out {args.before} ({made.stderr.strip()[:200]}); nothing compared")
        return
    servers = {}
    try:
        servers["before"] = start_shield("before", before_tree, photos, tmp)
        servers["after"] = start_shield("after", ROOT, photos, tmp)
        print(f"## Browsers: what Chrome gets with no parameters ({args.before} vs this tree)")
        print()
        print("| image | original | before | after | after / before |")
        print("|---|---|---|---|---|")
        for name in SAMPLES:
            size = os.path.getsize(os.path.join(photos, name))
            row = {}
            for side, server in servers.items():
                status, headers, body = get(server.url + f"/demo/{name}", {"Accept": CHROME})
                assert status == 200, (side, name, status, body[:200])
                row[side] = (headers.get("Content-Type", "?").removeprefix("image/"), len(body))
            ratio = row["after"][1] / row["before"][1]
            print(
                f"| {name} | {size:,} B | {row['before'][0]} {row['before'][1]:,} B "
                f"| {row['after'][0]} {row['after'][1]:,} B | {ratio:.2f}x |"
            )
        print()
        wrk = Wrk(args.wrk)
        runs = {side: [] for side in servers}
        for server in servers.values():
            get(server.url + HIT_PATH, {"Accept": CHROME})
            wrk.run(server.url + HIT_PATH, "hit.lua", connections=32, seconds=1)
        for _ in range(args.rounds):
            for side, server in servers.items():
                runs[side].append(
                    wrk.run(
                        server.url + HIT_PATH, "hit.lua", connections=32, seconds=args.seconds, server=server
                    )
                )
        cpu = {side: median([r["cpu_us"] for r in rs]) for side, rs in runs.items()}
        rps = {side: median([r["rps"] for r in rs]) for side, rs in runs.items()}
        errors = sum(r["errors"] for rs in runs.values() for r in rs)
        print(f"| cached hit `{HIT_PATH}`, 32 conn | before | after | after / before |")
        print("|---|---|---|---|")
        print(
            f"| server CPU per hit, us | {cpu['before']:.0f} | {cpu['after']:.0f} | {cpu['after'] / cpu['before']:.2f}x |"
        )
        print(f"| req/s | {rps['before']:,.0f} | {rps['after']:,.0f} | {rps['after'] / rps['before']:.2f}x |")
        print()
        print(
            "rounds (CPU us per hit): "
            + "; ".join(f"{side} " + ", ".join(f"{r['cpu_us']:.0f}" for r in rs) for side, rs in runs.items())
            + f"; errors {errors}"
        )
    finally:
        for server in servers.values():
            server.stop()
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before_tree], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        log("browsers: done")


if __name__ == "__main__":
    main()
