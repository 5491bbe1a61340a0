"""`make bench`: shield's hits, misses, memory and scale on real photos, each figure next to
a baseline measured in the same run. See BENCHMARKS.md for what every number means.

    .venv/bin/python -m bench.run --photos ../shared/images [--thumbor bench/.venv-thumbor/bin/thumbor]
"""

import argparse
import http.client
import io
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from bench import harness, inproc
from bench.harness import ROOT, Server, Wrk, get, log, median, median_run, whole

MB = 1024 * 1024
# Left to gunicorn.conf.py and shield's defaults, as in production.
PRODUCTION_DEFAULTS = (
    "WEB_CONCURRENCY",
    "SHIELD_TRANSFORM_THREADS",
    "MAGICK_THREAD_LIMIT",
    "SHIELD_LOG_LEVEL",
)
PROJECT = "bench"
HIT_WIDTH, HIT_QUALITY = 640, 75
MISS_WIDTHS = (200, 1200)
MISS_QUALITY = 80
HIT_CONNECTIONS = 32
MISS_CONNECTIONS = 8
# What gunicorn adds to every answer itself (the baseline gets them from gunicorn too).
GUNICORN_HEADERS = frozenset({"server", "date", "connection", "keep-alive", "transfer-encoding"})
PROBE_CONNECTIONS = 8
# Transforms of the 5120x2880 JPEG: a usual size, retina, nearly full size, and full size
# (no w) in WebP and AVIF.
BIG_QUERIES = ("?w=1280&fmt=webp", "?w=2560&fmt=jpeg", "?w=4900&fmt=jpeg", "?fmt=webp", "?fmt=avif")
# diskcache keeps values of this size and more as files rather than in SQLite.
FILE_THRESHOLD = 2**15
TARGETS = {
    "hit_vs_baseline": 0.8,
    "hit_vs_thumbor": 2.5,
    "miss_vs_thumbor": 1.3,
    "engine_jpeg": 1.2,
    "engine_webp": 1.2,
    "engine_avif": 1.0,
    "ssim": 0.97,
    "hit_p99_under_misses": 3.0,
    "peak_rss_mb": 300,
    "rss_growth": 1.10,
    "scale": 1.2,
}


class Bench:
    def __init__(self, args):
        self.args = args
        self.started = time.time()
        self.work = tempfile.mkdtemp(prefix="shield-bench-")
        self.origin = os.path.join(self.work, "origin")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.origin)
        os.makedirs(self.logs)
        self.wrk = Wrk(args.wrk)
        self.servers = []
        self.results = {}
        self.notes = []
        self.crashes = []
        self.large_hits_ok = True
        self.photos = pick_photos(args.photos)
        for path in self.photos:
            shutil.copy(path, self.origin)
        self.names = [os.path.basename(p) for p in self.photos]
        self.hit_photo = self.names[0]
        self.seconds = args.seconds

    # -- servers

    def shield(self, name, cache_dir, extra=""):
        config = os.path.join(self.work, f"{name}.toml")
        with open(config, "w") as fh:
            fh.write(
                "[shield]\n"
                f'cache_dir = "{cache_dir}"\n'
                f'state_dir = "{os.path.join(self.work, name + "-state")}"\n'
                f"cache_max_bytes = {self.args.cache_max_bytes}\n"
                f"{extra}"
                f"\n[projects.{PROJECT}]\n"
                f'origin = "{self.origin}/"\n'
                "# One client (wrk) sends every request: per-client limits would refuse most.\n"
                "rate_limit = 0\n"
                "rate_limit_miss = 0\n"
            )
        server = self._gunicorn(name, "app:app", {"SHIELD_CONFIG": config})
        server.cache_dir = cache_dir
        return server

    def _gunicorn(self, name, app, env):
        port = harness.free_port()
        prom = os.path.join(self.work, f"{name}-prometheus")
        os.makedirs(prom, exist_ok=True)
        # Production worker settings: gunicorn.conf.py's own defaults, whatever the caller's shell says.
        base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_DEFAULTS}
        server = Server(
            name,
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app],
            port,
            env={**base, "SHIELD_BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": prom, **env},
            log_dir=self.logs,
            inherit_env=False,
        )
        self.servers.append(server.start())
        return server

    def baseline(self, body, content_type, headers=None):
        """The in-memory app; with `headers` (shield's answer's), it answers with those."""
        path = os.path.join(self.work, "baseline-body")
        with open(path, "wb") as fh:
            fh.write(body)
        env = {
            "SHIELD_CONFIG": os.path.join(self.work, "shield-hits.toml"),
            "BENCH_BASELINE_BODY": path,
            "BENCH_BASELINE_TYPE": content_type,
        }
        if headers is not None:
            env["BENCH_BASELINE_HEADERS"] = json.dumps(
                [[k, v] for k, v in headers.items() if k.lower() not in GUNICORN_HEADERS]
            )
        return self._gunicorn("baseline-headers" if headers else "baseline", "bench.baseline_app:app", env)

    def thumbor(self):
        binary = self.args.thumbor
        if not binary or not os.path.exists(binary):
            reason = "not installed"
            log_path = os.path.join(ROOT, "bench", "thumbor-install.log")
            if os.path.exists(log_path):
                with open(log_path, errors="replace") as fh:
                    tail = [line.strip() for line in fh if line.strip()][-3:]
                reason = "could not be installed: " + " / ".join(tail)[-400:]
            self.notes.append(f"thumbor {reason}; its columns are empty.")
            return None
        conf = os.path.join(self.work, "thumbor.conf")
        root = os.path.join(self.work, "thumbor")
        with open(conf, "w") as fh:
            fh.write(
                f"LOADER = 'thumbor.loaders.file_loader'\n"
                f"FILE_LOADER_ROOT_PATH = {self.origin!r}\n"
                f"STORAGE = 'thumbor.storages.file_storage'\n"
                f"FILE_STORAGE_ROOT_PATH = {os.path.join(root, 'storage')!r}\n"
                f"RESULT_STORAGE = 'thumbor.result_storages.file_storage'\n"
                f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {os.path.join(root, 'result')!r}\n"
                "RESULT_STORAGE_STORES_UNSAFE = True\n"
                "ALLOW_UNSAFE_URL = True\n"
                "QUALITY = 80\n"
                "MAX_AGE = 31536000\n"
            )
        port = harness.free_port()
        server = Server(
            "thumbor",
            [binary, "-i", "127.0.0.1", "-p", str(port), "-c", conf, "--processes", "2", "-l", "warning"],
            port,
            log_dir=self.logs,
            ready_path="/healthcheck",
        )
        try:
            self.servers.append(server.start())
        except RuntimeError as exc:
            self.notes.append(f"thumbor did not start: {str(exc)[-300:]}")
            return None
        self.thumbor_version = os.popen(f"{binary} --version").read().strip()
        return server

    def stop(self, server):
        server.stop()
        if server in self.servers:
            self.servers.remove(server)
        if server.name.startswith("shield"):
            self.check_crashes(server)

    def stop_all(self):
        for server in reversed(list(self.servers)):
            self.stop(server)

    def check_crashes(self, server):
        """gunicorn's log of a shield instance: workers that died, and errors (500s, tracebacks)."""
        died, causes, errors = 0, set(), []
        lines = server.log_tail(10**8).splitlines()
        for i, line in enumerate(lines):
            if "exited with code" in line or "was sent SIG" in line or "WORKER TIMEOUT" in line:
                died += 1
            elif "limit exceeded" in line or "Fatal" in line:
                causes.add(line.strip()[:160])
            elif "[ERROR] Error handling request" in line:
                # The exception is the traceback's last line, before the next log line.
                tail = [x for x in lines[i + 1 : i + 80] if x.strip()]
                end = next((j for j, x in enumerate(tail) if x.startswith(("{", "["))), len(tail))
                cause = tail[end - 1].strip() if end else ""
                errors.append(f"{line.split('[ERROR] ', 1)[1].strip()}: {cause}"[:300])
            elif line.startswith("{") and '"level":"error"' in line:
                errors.append(line.strip()[:300])
        if died:
            self.crashes.append((server.name, died, sorted(causes)))
        if errors:
            self.notes.append(
                f"{server.name}: {len(errors)} request(s) failed with a server error; the first: {errors[0]}"
            )

    # -- phases

    def run(self):
        try:
            self.thumbor_server = self.thumbor()
            # Each phase gets a shield of its own (fresh workers, fresh cache), as each
            # measures something different; the originals are always cached first.
            server = self.shield("shield-hits", os.path.join(self.work, "cache-hits"))
            self.workers = server.children()
            log(f"shield up: {len(self.workers)} gevent workers; thumbor: {bool(self.thumbor_server)}")
            self.phase_hits(server)
            self.phase_misses(server)
            self.stop_all()
            self.phase_engine()
            server = self.shield("shield-load", os.path.join(self.work, "cache-load"))
            self.phase_hits_under_misses(server)
            self.stop(server)
            server = self.shield("shield-memory", os.path.join(self.work, "cache-memory"))
            self.phase_memory(server)
            self.stop(server)
            self.phase_scale()
        finally:
            self.stop_all()
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log(f"kept {self.work}")
        self.results["elapsed_s"] = time.time() - self.started
        return self.results

    def hit_paths(self):
        return (
            f"/{PROJECT}/{self.hit_photo}?w={HIT_WIDTH}&q={HIT_QUALITY}&fmt=webp",
            f"/unsafe/{HIT_WIDTH}x0/filters:quality({HIT_QUALITY}):format(webp)/{self.hit_photo}",
        )

    def warm(self, server, quality=MISS_QUALITY):
        """Cache the originals (one small variant each) and the hit variant; the hit's (headers, body)."""
        for name in self.names:
            status, headers, _ = get(f"{server.url}/{PROJECT}/{name}?w=100&q={quality}&fmt=webp")
            assert status == 200, (status, headers)
        url = server.url + self.hit_paths()[0]
        get(url)
        status, headers, body = get(url)
        assert status == 200 and headers.get("X-Cache") == "HIT", (status, headers)
        if not whole(headers, body):
            sys.exit(
                f"the hit variant came back cut short ({len(body)} of {headers.get('Content-Length')} bytes)"
            )
        return headers, body

    def check_large_hits(self, server):
        """A cached variant big enough for diskcache to keep as a file: is it sent whole?"""
        url = f"{server.url}/{PROJECT}/{self.hit_photo}?w=1200&q=90&fmt=jpeg"
        _, _, made = get(url)
        started = time.perf_counter()
        status, headers, body = get(url, timeout=30)
        took = time.perf_counter() - started
        self.results["large_hit"] = {
            "status": status,
            "x_cache": headers.get("X-Cache"),
            "content_length": int(headers.get("Content-Length", -1)),
            "received": len(body),
            "same_as_miss": body == made,
            "seconds": took,
        }
        return whole(headers, body) and body == made

    def phase_hits(self, server):
        log("1/5 hits: shield, in-memory baseline, thumbor")
        shield_path, thumbor_path = self.hit_paths()
        headers, body = self.warm(server)
        self.large_hits_ok = self.check_large_hits(server)
        base = self.baseline(body, headers.get("Content-Type", "image/webp"))
        # The same app answering with shield's own response headers: what they cost gunicorn.
        dressed = self.baseline(body, headers.get("Content-Type", "image/webp"), headers)
        targets = {
            "shield": server.url + shield_path,
            "baseline": base.url + shield_path,
            "headers": dressed.url + shield_path,
        }
        owners = {"shield": server, "baseline": base, "headers": dressed, "thumbor": self.thumbor_server}
        if self.thumbor_server:
            turl = self.thumbor_server.url + thumbor_path
            get(turl)
            tstatus, _, tbody = get(turl)
            assert tstatus == 200, (tstatus, tbody[:200])
            targets["thumbor"] = turl
            self.results["thumbor_hit_bytes"] = len(tbody)
        self.results["hit_bytes"] = len(body)
        for target in targets.values():  # warm-up: connections, caches
            self.wrk.run(target, "hit.lua", connections=HIT_CONNECTIONS, seconds=1)
        runs = {name: [] for name in targets}
        for _ in range(self.args.rounds):
            for name, target in targets.items():
                runs[name].append(
                    self.wrk.run(
                        target,
                        "hit.lua",
                        connections=HIT_CONNECTIONS,
                        seconds=self.seconds,
                        server=owners[name],
                    )
                )
        self.results["hits"] = {name: summarize(r) for name, r in runs.items()}
        self.results["hit_headers"] = sum(1 for k in headers if k.lower() not in GUNICORN_HEADERS)
        self.stop(base)
        self.stop(dressed)

    def walk_args(self, template, quality, threads, offset=0):
        return (template, ",".join(self.names), *MISS_WIDTHS, quality, quality, threads, offset)

    def phase_misses(self, server):
        log("2/5 misses: distinct variants a second, shield and thumbor")
        template = f"/{PROJECT}/{{p}}?w={{w}}&q={{q}}&fmt=webp"
        # The same shield without its recent decodes: every miss decodes its original again.
        fresh = self.shield(
            "shield-decoding", os.path.join(self.work, "cache-decoding"), extra="decode_cache_bytes = 0\n"
        )
        self.warm(fresh)
        templates = {"shield": (server, template), "shield-decoding": (fresh, template)}
        if self.thumbor_server:
            templates["thumbor"] = (
                self.thumbor_server,
                "/unsafe/{w}x0/filters:quality({q}):format(webp)/{p}",
            )
            # thumbor's originals: loaded and stored once, as shield's were in warm().
            for name in self.names:
                status, _, _ = get(
                    f"{self.thumbor_server.url}/unsafe/100x0/filters:quality({MISS_QUALITY}):format(webp)/{name}"
                )
                assert status == 200
        distinct = (MISS_WIDTHS[1] - MISS_WIDTHS[0] + 1) * len(self.names)
        runs = {name: [] for name in templates}
        # Alternate short runs, each on URLs of its own, so a noisy neighbour hits both alike.
        for r in range(self.args.miss_rounds):
            offset = r * distinct // self.args.miss_rounds
            for name, (target, template) in templates.items():
                res = self.wrk.run(
                    target.url + "/",
                    "walk.lua",
                    self.walk_args(template, MISS_QUALITY, MISS_CONNECTIONS, offset),
                    connections=MISS_CONNECTIONS,
                    seconds=self.args.miss_seconds,
                    timeout_s=60,
                    server=target,
                )
                secs = res["duration_us"] / 1e6
                made = res["misses"] if name.startswith("shield") else res["ok"]
                res["cpu_per_variant_ms"] = (
                    res["cpu_us"] * res["requests"] / made / 1000 if made else float("nan")
                )
                # shield says which answers made a new variant; thumbor's URLs are all new.
                res["variants_per_s"] = made / secs
                if res["requests"] > distinct // self.args.miss_rounds:
                    self.notes.append(f"{name}: a miss run used up its share of distinct URLs.")
                runs[name].append(res)
        out = {}
        for name, results in runs.items():
            best = sorted(results, key=lambda x: x["variants_per_s"])[(len(results) - 1) // 2]
            out[name] = summarize(results) | best | {"all": [x["variants_per_s"] for x in results]}
            out[name]["median_cpu_per_variant_ms"] = median([x["cpu_per_variant_ms"] for x in results])
        out["checks"] = self.check_outputs(templates)
        self.results["misses"] = out
        self.stop(fresh)

    def check_outputs(self, templates, width=777):
        """Both servers' answer to one miss URL: format and size, so the comparison is like for like."""
        from PIL import Image

        checks = {}
        for name, (target, template) in templates.items():
            path = template.replace("{p}", self.hit_photo).replace("{w}", str(width)).replace("{q}", "80")
            status, _, body = get(target.url + path)
            try:
                with Image.open(io.BytesIO(body)) as im:
                    checks[name] = (status, im.format, im.size, len(body))
            except OSError:
                checks[name] = (status, "undecodable", None, len(body))
        return checks

    def phase_engine(self):
        log("   in-process: shield's engine vs Pillow, SSIM")
        self.results["engine"] = inproc.engine_vs_pillow(
            self.photos, width=800, quality=MISS_QUALITY, rounds=self.args.engine_rounds
        )
        rows = inproc.engine_ssim(self.photos)
        self.results["ssim"] = [(os.path.basename(p), w, s) for p, w, s in rows]

    def phase_hits_under_misses(self, server):
        log("3/5 hit latency with the transform pool kept full, and without")
        self.warm(server)
        url = server.url + self.hit_paths()[0]
        probe = {"connections": PROBE_CONNECTIONS, "seconds": self.seconds + 2}
        pause = self.args.probe_pause_ms
        self.wrk.run(url, "hit_paced.lua", (pause,), connections=PROBE_CONNECTIONS, seconds=1)
        idle = self.wrk.run(url, "hit_paced.lua", (pause,), server=server, **probe)
        template = f"/{PROJECT}/{{p}}?w={{w}}&q={{q}}&fmt=webp"
        collect = self.wrk.start(
            server.url + "/",
            "walk.lua",
            self.walk_args(template, MISS_QUALITY, MISS_CONNECTIONS),
            connections=MISS_CONNECTIONS,
            seconds=probe["seconds"] + 4,
            timeout_s=60,
        )
        time.sleep(2)
        loaded = self.wrk.run(url, "hit_paced.lua", (pause,), server=server, **probe)
        misses = collect()
        misses["variants_per_s"] = misses["misses"] / (misses["duration_us"] / 1e6)
        self.results["under_load"] = {"idle": idle, "loaded": loaded, "misses": misses, "pause_ms": pause}

    def phase_memory(self, server):
        log("4/5 memory: 5120x2880 JPEG transforms, then 10,000 mixed requests")
        big = inproc.tiled_jpeg(self.photos, (5120, 2880))
        with open(os.path.join(self.origin, "big.jpg"), "wb") as fh:
            fh.write(big)
        workers = server.children()
        before = {pid: harness.memory_of(pid) for pid in workers}
        exact = all(harness.reset_peak(pid) for pid in workers)
        rows = []

        def big_request(query, out):
            started = time.perf_counter()
            status, headers, body = get(f"{server.url}/{PROJECT}/big.jpg{query}")
            # What came back, as "200 image/webp": an AVIF over avif_max_pixels is made as WebP.
            answer = f"{status} {headers.get('Content-Type', '')}".strip()
            out.append((query, answer, len(body), (time.perf_counter() - started) * 1000))

        def peaks():
            """Each live worker's peak RSS since the last reset (VmHWM), then reset it."""
            found = {}
            for pid in workers:
                try:
                    found[pid] = harness.memory_of(pid)["hwm"]
                    harness.reset_peak(pid)
                except OSError:
                    pass
            return found

        # One at a time, each from a fresh peak count; then two at once.
        for query in BIG_QUERIES:
            done = []
            big_request(query, done)
            rows.append(done[0] + (max(peaks().values()),))
        done = []
        both = [
            threading.Thread(target=big_request, args=(q, done))
            for q in ("?w=5000&fmt=jpeg", "?w=4900&fmt=webp")
        ]
        for t in both:
            t.start()
        for t in both:
            t.join()
        rows.append(
            (
                " + ".join(d[0] for d in done),
                " + ".join(d[1] for d in done),
                sum(d[2] for d in done),
                max(d[3] for d in done),
            )
        )
        rows[-1] += (max(peaks().values()),)
        alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        self.results["big"] = {
            "idle_rss": {pid: before[pid]["rss"] for pid in workers},
            "rows": rows,
            "peak": max(r[4] for r in rows),
            "exact_peak": exact,
            "died": len(workers) - len(alive),
        }
        self.results["mixed"] = self.mixed(server)

    def mixed(self, server, total=10_000, first=1_000, threads=8):
        """Hits (most), conditional and HEAD requests, new variants, 404s and 400s, as a site sees them."""
        rng = random.Random(42)
        hit_set = [
            (p, w, f) for p in self.names for w in (240, 320, 480, 640) for f in ("webp", "jpeg", "auto")
        ]
        excluded = 0
        if not self.large_hits_ok:
            # Cached variants that diskcache keeps as files are not sent whole (see the
            # large-hit check): leave them out, or every such hit would stall the driver.
            kept = []
            for p, w, f in hit_set:
                status, headers, body = get(f"{server.url}/{PROJECT}/{p}?w={w}&fmt={f}", timeout=30)
                if len(body) + 1024 < FILE_THRESHOLD:
                    kept.append((p, w, f))
            excluded, hit_set = len(hit_set) - len(kept), kept
        accepts = (harness.BROWSER_ACCEPT, "image/webp,*/*", "*/*", "image/jpeg")
        plan = []
        made = 0
        for i in range(total):
            roll = rng.random()
            p, w, f = rng.choice(hit_set)
            path = f"/{PROJECT}/{p}?w={w}&fmt={f}"
            headers = {"Accept": rng.choice(accepts)}
            method = "GET"
            if roll < 0.05:  # a new variant
                made += 1
                fmt = ("jpeg", "webp", "avif")[made % 3]
                path = f"/{PROJECT}/{p}?w={150 + made % 300}&h={100 + made // 300}&fmt={fmt}&q=70"
            elif roll < 0.09:
                path = f"/{PROJECT}/missing-{i % 300}.jpg?w=200"
            elif roll < 0.12:
                path = f"/{PROJECT}/{p}?w=abc"
            elif roll < 0.17:
                method = "HEAD"
            elif roll < 0.22:
                headers["If-None-Match"] = "*"
            plan.append((method, path, headers))
        statuses = {}
        lock = threading.Lock()

        def count(what):
            with lock:
                statuses[what] = statuses.get(what, 0) + 1

        def drive(chunk):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            for method, path, headers in chunk:
                try:
                    conn.request(method, path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    count(resp.status)
                except (OSError, http.client.HTTPException) as exc:
                    count(type(exc).__name__)
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.close()

        def run(part):
            pool = [threading.Thread(target=drive, args=(part[i::threads],)) for i in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()

        workers = server.children()
        started = time.perf_counter()
        run(plan[:first])
        at_first = {pid: harness.memory_of(pid)["rss"] for pid in workers}
        run(plan[first:])
        alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        at_total = {pid: harness.memory_of(pid)["rss"] for pid in alive}
        return {
            "first": first,
            "total": total,
            "rss_first": at_first,
            "rss_total": at_total,
            "died": len(workers) - len(alive),
            "statuses": statuses,
            "seconds": time.perf_counter() - started,
            "new_variants": made,
            "excluded_hits": excluded,
            "hit_urls": len(hit_set),
        }

    def phase_scale(self):
        """Two shields, one holding 1,000 variants and one 100,000, measured in turns."""
        log("5/5 scale: hit latency with 1,000 and with 100,000 cached variants")
        from shield import params
        from shield.cache.store import Store, meta_key_of, variant_key_of

        photo = self.hit_photo
        walk = f"/{PROJECT}/{{p}}?w={{w}}&q={{q}}&fmt=webp"
        sides = {}
        for name in ("small", "large"):
            # The hot set off: it would answer the walked URLs from memory on both sides
            # alike, hiding the disk cache whose size this compares.
            server = self.shield(
                f"shield-scale-{name}",
                os.path.join(self.work, f"cache-scale-{name}"),
                extra="hot_cache_bytes = 0\n",
            )
            # The original, and one real variant whose stored header the fillers copy.
            status, _, _ = get(f"{server.url}/{PROJECT}/{photo}?w=90&q=50&fmt=webp")
            assert status == 200, status
            store = Store(server.cache_dir, self.args.cache_max_bytes)
            version = store.get(meta_key_of(PROJECT, photo))["version"]
            sides[name] = (server, store, version)

        def key(version, w, q):
            canonical = params.parse({"w": str(w), "q": str(q), "fmt": "webp"}).canonical()
            return variant_key_of(PROJECT, photo, version, canonical, "-")

        _, store, version = sides["small"]
        real = store.get_variant(key(version, 90, 50))
        assert real is not None, "the real variant is not where variant_key_of says"
        header = {k: v for k, v in real.header.items() if k != "size"}
        body = real.read_body()
        tags = header.get("tags", [f"project-{PROJECT}"])

        def fill(side, start, stop):
            _, store, version = sides[side]
            for i in range(start, stop):  # entry i: w = 100 + i % 1000, q = 1 + i // 1000
                w, q = 100 + i % 1000, 1 + i // 1000
                store.put_variant(key(version, w, q), header, body, PROJECT, photo, tags)

        def measure(side, qmax=1, warm=False):
            """Hits walking the entries with q 1..qmax (1,000 each), in a scrambled order."""
            server = sides[side][0]
            args = (walk, photo, 100, 1099, 1, qmax, HIT_CONNECTIONS)
            if warm:
                self.wrk.run(server.url + "/", "walk.lua", args, connections=HIT_CONNECTIONS, seconds=1)
            res = self.wrk.run(
                server.url + "/", "walk.lua", args, connections=HIT_CONNECTIONS, seconds=3, server=server
            )
            status, headers, got = get(f"{server.url}/{PROJECT}/{photo}?w=1099&q={qmax}&fmt=webp")
            res["check"] = (status, headers.get("X-Cache"), got == body)
            return res

        started = time.perf_counter()
        fill("small", 0, 1000)
        out = {"filler_bytes": len(body), "fill_rate": 1000 / (time.perf_counter() - started)}
        budget, target = self.args.fill_seconds, self.args.scale_entries
        started = time.perf_counter()
        done = 0
        while done < target and time.perf_counter() - started < budget:
            fill("large", done, min(target, done + 1000))
            done = min(target, done + 1000)
        out["fill_seconds"] = time.perf_counter() - started
        if done < target:
            self.notes.append(
                f"scale: filling stopped at {done:,} entries after {budget} s (asked {target:,})."
            )
        # Both walk the same 1,000 entries, written again just now on both sides, so
        # neither pays diskcache's access-time refresh (shield writes it when an entry
        # has not been read for 60 s): only the number of entries around them differs.
        fill("small", 0, 1000)
        fill("large", 0, 1000)
        runs = {"small": [], "large": []}
        for side in runs:
            measure(side, warm=True)
        for _ in range(self.args.rounds):
            for side in runs:
                runs[side].append(measure(side))
        for side, results in runs.items():
            out[side] = summarize(results) | {"entries": (1000 if side == "small" else done) + 1}
        # The long tail: every entry once, most of them not read for a while.
        out["tail"] = measure("large", done // 1000) | {"entries": done + 1}
        for server, _, _ in sides.values():
            self.stop(server)
        self.results["scale"] = out


def summarize(results):
    """The median run (by requests a second), with every run's figures beside it."""
    return median_run(results) | {
        "all_rps": [x["rps"] for x in results],
        "all_cpu_us": [x.get("cpu_us", 0.0) for x in results],
        "median_cpu_us": median([x.get("cpu_us", 0.0) for x in results]),
        "max_others": max(x.get("others", 0.0) for x in results),
    }


def pick_photos(folder):
    if not folder or not os.path.isdir(folder):
        sys.exit(
            "make bench needs a folder of large JPEG photos: make bench PHOTOS=/path/to/photos\n"
            "(on Debian: apt-get download plasma-workspace-wallpapers has 2560x1600 ones)."
        )
    from PIL import Image

    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.lower().endswith((".jpg", ".jpeg")):
            continue
        with Image.open(path) as im:
            if im.width >= 1600 and im.height >= 1000:
                found.append(path)
    if not found:
        sys.exit(f"no JPEG of at least 1600x1000 in {folder}")
    return found[:3]


# -- the report


def ms(us):
    return f"{us / 1000:.2f}"


def verdict(ok):
    return "met" if ok else "NOT MET"


def report(r, notes, bench):
    rows = []

    def row(section, measure, shield, baseline, ratio="", target="", ok=None):
        mark = "" if ok is None else verdict(ok)
        rows.append(f"| {section} | {measure} | {shield} | {baseline} | {ratio} | {target} | {mark} |")

    # 1. hits
    hits = r["hits"]
    s, b, t = hits["shield"], hits["baseline"], hits.get("thumbor")
    goal = TARGETS["hit_vs_baseline"]
    ratio = s["rps"] / b["rps"]
    row(
        1,
        "cached 640 px WebP, 32 conn: req/s",
        f"{s['rps']:,.0f}",
        f"{b['rps']:,.0f} in-memory app",
        f"{ratio:.2f}x",
        f">= {goal}x",
        ratio >= goal,
    )
    row(
        1,
        "... p50 / p99 ms",
        f"{ms(s['p50_us'])} / {ms(s['p99_us'])}",
        f"{ms(b['p50_us'])} / {ms(b['p99_us'])}",
        f"{s['p50_us'] / b['p50_us']:.2f}x / {s['p99_us'] / b['p99_us']:.2f}x",
    )
    row(
        1,
        "... server CPU per hit, us (less sensitive to other load)",
        f"{s['median_cpu_us']:.0f}",
        f"{b['median_cpu_us']:.0f}",
        f"{b['median_cpu_us'] / s['median_cpu_us']:.2f}x capacity",
    )
    dressed = hits.get("headers")
    if dressed:
        row(
            1,
            f"... the in-memory app with shield's {r['hit_headers']} response headers: req/s, CPU per hit us",
            f"{s['rps']:,.0f}, {s['median_cpu_us']:.0f}",
            f"{dressed['rps']:,.0f}, {dressed['median_cpu_us']:.0f}",
            f"{s['rps'] / dressed['rps']:.2f}x, {dressed['median_cpu_us'] / s['median_cpu_us']:.2f}x capacity",
        )
    if t:
        goal = TARGETS["hit_vs_thumbor"]
        ratio = s["rps"] / t["rps"]
        row(
            1,
            "same URL, thumbor 7 (file result storage, 2 processes): req/s",
            f"{s['rps']:,.0f}",
            f"{t['rps']:,.0f} thumbor (p50 {ms(t['p50_us'])} / p99 {ms(t['p99_us'])} ms)",
            f"{ratio:.2f}x",
            f">= {goal}x",
            ratio >= goal,
        )
        row(
            1,
            "... server CPU per hit, us",
            f"{s['median_cpu_us']:.0f}",
            f"{t['median_cpu_us']:.0f} thumbor",
            f"{t['median_cpu_us'] / s['median_cpu_us']:.2f}x capacity",
        )
    else:
        row(1, "same URL, thumbor 7", "", "not measured (see notes)", "", f">= {TARGETS['hit_vs_thumbor']}x")
    lh = r["large_hit"]
    row(
        1,
        f"a cached variant of {FILE_THRESHOLD // 1024}+ KB (a file in the cache) is sent whole",
        f"{lh['received']:,} of {lh['content_length']:,} B",
        f"{lh['content_length']:,} B (as made)",
        "",
        "all of it",
        lh["received"] == lh["content_length"] and lh["same_as_miss"],
    )

    # 2. misses
    m = r["misses"]
    sm, tm = m["shield"], m.get("thumbor")
    if tm:
        goal = TARGETS["miss_vs_thumbor"]
        ratio = sm["variants_per_s"] / tm["variants_per_s"]
        row(
            2,
            "distinct variants/s, 2560x1600 JPEG -> w 200-1200 WebP q80, 8 conn",
            f"{sm['variants_per_s']:.1f}",
            f"{tm['variants_per_s']:.1f} thumbor",
            f"{ratio:.2f}x",
            f">= {goal}x",
            ratio >= goal,
        )
        row(
            2,
            "... server CPU per variant, ms",
            f"{sm['median_cpu_per_variant_ms']:.0f}",
            f"{tm['median_cpu_per_variant_ms']:.0f} thumbor",
            f"{tm['median_cpu_per_variant_ms'] / sm['median_cpu_per_variant_ms']:.2f}x capacity",
        )
    fm = m.get("shield-decoding")
    if fm:
        row(
            2,
            "... shield with `decode_cache_bytes = 0` (every miss decodes): variants/s, CPU per variant ms",
            f"{fm['variants_per_s']:.1f}, {fm['median_cpu_per_variant_ms']:.0f}",
            f"{tm['variants_per_s']:.1f}, {tm['median_cpu_per_variant_ms']:.0f} thumbor" if tm else "",
            f"{fm['variants_per_s'] / tm['variants_per_s']:.2f}x, "
            f"{tm['median_cpu_per_variant_ms'] / fm['median_cpu_per_variant_ms']:.2f}x capacity"
            if tm
            else "",
        )
    if not tm:
        row(
            2,
            "distinct variants/s, 2560x1600 JPEG -> w 200-1200 WebP q80",
            f"{sm['variants_per_s']:.1f}",
            "not measured (thumbor missing)",
            "",
            f">= {TARGETS['miss_vs_thumbor']}x",
        )
    for fmt in ("jpeg", "webp", "avif"):
        e = r["engine"][fmt]
        goal = TARGETS[f"engine_{fmt}"]
        ratio = e["engine"] / e["pillow"]
        row(
            2,
            f"engine ms per image, {fmt.upper()} (2560x1600 -> 800 px, q80, in-process)",
            f"{e['engine']:.1f}",
            f"{e['pillow']:.1f} Pillow (same shrink-on-load; {e['pillow_full']:.1f} without)",
            f"{ratio:.2f}x",
            f"<= {goal}x",
            ratio <= goal,
        )
    worst = min(x[2] for x in r["ssim"])
    row(
        2,
        f"SSIM, engine fast path vs full-decode Pillow LANCZOS (worst of {len(r['ssim'])})",
        f"{worst:.4f}",
        "1.0",
        "",
        f">= {TARGETS['ssim']}",
        worst >= TARGETS["ssim"],
    )

    # 3. hits under miss load
    u = r["under_load"]
    goal = TARGETS["hit_p99_under_misses"]
    ratio = u["loaded"]["p99_us"] / u["idle"]["p99_us"]
    offered = PROBE_CONNECTIONS * 1000 / u["pause_ms"]
    row(
        3,
        f"hit p99 ms at ~{offered:.0f} req/s offered, transform pool full"
        f" ({u['misses']['variants_per_s']:.1f} variants/s)",
        ms(u["loaded"]["p99_us"]),
        f"{ms(u['idle']['p99_us'])} no misses",
        f"{ratio:.2f}x",
        f"<= {goal}x",
        ratio <= goal,
    )
    row(
        3,
        "... p50 ms",
        ms(u["loaded"]["p50_us"]),
        ms(u["idle"]["p50_us"]),
        f"{u['loaded']['p50_us'] / u['idle']['p50_us']:.2f}x",
    )

    # 4. memory
    big = r["big"]
    goal = TARGETS["peak_rss_mb"]
    peak, idle = big["peak"] / MB, max(big["idle_rss"].values()) / MB
    resized = max(x[4] for x in big["rows"] if x[0] in BIG_QUERIES[:3]) / MB
    row(
        4,
        f"worker peak RSS transforming a 5120x2880 JPEG, worst of {len(big['rows'])} (MB)",
        f"{peak:.0f}",
        f"{idle:.0f} worker before",
        f"{peak / idle:.1f}x; {peak / goal:.2f}x target",
        f"<= {goal} MB",
        peak <= goal,
    )
    row(
        4,
        "... worst of the resized ones (w <= 4900; JPEG, WebP)",
        f"{resized:.0f}",
        f"{idle:.0f}",
        f"{resized / idle:.1f}x; {resized / goal:.2f}x target",
        f"<= {goal} MB",
        resized <= goal,
    )
    mixed = r["mixed"]
    both = [p for p in mixed["rss_first"] if p in mixed["rss_total"]]
    first = sum(mixed["rss_first"][p] for p in both) / MB
    total = sum(mixed["rss_total"][p] for p in both) / MB
    worst_growth = max((mixed["rss_total"][p] / mixed["rss_first"][p] for p in both), default=float("nan"))
    growth = total / first if first else float("nan")
    goal = TARGETS["rss_growth"]
    row(
        4,
        f"workers' RSS after {mixed['total']:,} mixed requests (MB, {len(both)} workers)",
        f"{total:.0f}",
        f"{first:.0f} after {mixed['first']:,}",
        f"{growth:.3f}x (worst worker {worst_growth:.3f}x)",
        f"<= {goal:.2f}x",
        max(growth, worst_growth) <= goal and not mixed["died"],
    )

    # 5. scale
    sc = r["scale"]
    small, large, tail = sc["small"], sc["large"], sc["tail"]
    goal = TARGETS["scale"]
    ratio = large["median_cpu_us"] / small["median_cpu_us"]
    row(
        5,
        f"server CPU per hit, us: the same 1,000 URLs with {large['entries']:,} entries cached",
        f"{large['median_cpu_us']:.0f}",
        f"{small['median_cpu_us']:.0f} with {small['entries']:,}",
        f"{ratio:.2f}x",
        f"<= {goal}x",
        ratio <= goal,
    )
    row(
        5,
        "... hit mean (p50 / p99) ms, 32 conn",
        f"{ms(large['mean_us'])} ({ms(large['p50_us'])} / {ms(large['p99_us'])})",
        f"{ms(small['mean_us'])} ({ms(small['p50_us'])} / {ms(small['p99_us'])})",
        f"{large['mean_us'] / small['mean_us']:.2f}x ({large['p50_us'] / small['p50_us']:.2f}x /"
        f" {large['p99_us'] / small['p99_us']:.2f}x)",
    )
    row(5, "... req/s", f"{large['rps']:,.0f}", f"{small['rps']:,.0f}", f"{large['rps'] / small['rps']:.2f}x")
    row(
        5,
        f"long tail: each of the {tail['entries']:,} entries once: CPU per hit us, req/s",
        f"{tail['cpu_us']:.0f}, {tail['rps']:,.0f}",
        f"{small['median_cpu_us']:.0f}, {small['rps']:,.0f}",
        f"{tail['cpu_us'] / small['median_cpu_us']:.2f}x",
    )

    out = ["", "## shield benchmark", "", "| # | measure | shield | baseline | ratio | target | |"]
    out.append("|---|---|---|---|---|---|---|")
    out += rows
    out += ["", "Details:"]
    note = out.append
    note(
        f"- machine: {os.cpu_count()} cores, load average {bench.load_before} before, {os.getloadavg()[0]:.2f} after;"
        f" shield: {len(bench.workers)} gevent workers (gunicorn.conf.py defaults);"
        f" thumbor: {getattr(bench, 'thumbor_version', 'missing')}"
    )
    others = max(
        [x["max_others"] for x in hits.values()]
        + [x["max_others"] for k, x in m.items() if k != "checks"]
        + [small["max_others"], large["max_others"]]
    )
    note(f"- CPU taken by other processes on the machine during the load runs: up to {others:.0%} of it")
    for name, x in hits.items():
        note(
            f"- hits {name}: req/s of each round {', '.join(f'{v:,.0f}' for v in x['all_rps'])};"
            f" CPU us per hit {', '.join(f'{v:.0f}' for v in x['all_cpu_us'])}; errors {x['errors']};"
            f" mean latency {ms(x['mean_us'])} ms vs connections / throughput {ms(x['little_mean_us'])} ms"
            f" (wrk's own statistics said {ms(x['wrk_mean_us'])} ms)"
        )
    note(f"- hit body {r['hit_bytes']:,} B (thumbor's {r.get('thumbor_hit_bytes', 0):,} B)")
    for name in ("shield", "shield-decoding", "thumbor"):
        if name in m:
            x = m[name]
            note(
                f"- misses {name}: variants/s of each round {', '.join(f'{v:.1f}' for v in x['all'])};"
                f" median round: {x['requests']} requests, {x['ok']} ok, {x['misses']} X-Cache MISS,"
                f" p50 {ms(x['p50_us'])} ms, p99 {ms(x['p99_us'])} ms"
            )
    note(
        "- the same miss URL (w=777) from each: "
        + "; ".join(f"{k} {v[0]} {v[1]} {v[2]} {v[3]:,} B" for k, v in m["checks"].items())
    )
    for fmt, e in r["engine"].items():
        note(
            f"- engine {fmt}: {e['engine']:.1f} ms, {e['bytes_engine']:,} B; Pillow {e['pillow']:.1f} ms,"
            f" {e['bytes_pillow']:,} B; Pillow without shrink-on-load {e['pillow_full']:.1f} ms"
        )
    note("- SSIM: " + ", ".join(f"{n} w{w} {v:.4f}" for n, w, v in r["ssim"]))
    note(
        "- 5120x2880 JPEG, worker peak RSS per request"
        + (
            " (VmHWM, reset before each)"
            if big["exact_peak"]
            else " (VmHWM, cumulative: it could not be reset)"
        )
        + ": "
        + "; ".join(f"{q} -> {st}, {n:,} B, {t:.0f} ms, {p / MB:.0f} MB" for q, st, n, t, p in big["rows"])
    )
    note(
        f"- mixed: {mixed['total']:,} requests in {mixed['seconds']:.1f} s ({mixed['new_variants']} new variants),"
        f" statuses {json.dumps(mixed['statuses'], sort_keys=True)}; RSS per worker MB after 1,000 / 10,000: "
        + ", ".join(f"{mixed['rss_first'][p] / MB:.0f} / {mixed['rss_total'][p] / MB:.0f}" for p in both)
    )
    if mixed["excluded_hits"]:
        note(
            f"- mixed: {mixed['excluded_hits']} of {mixed['excluded_hits'] + mixed['hit_urls']} hit URLs left out:"
            " their variants are files in the cache, which are not sent whole (see 1)"
        )
    note(
        f"- scale: {large['entries'] - 1:,} entries put with Store.put_variant in {sc['fill_seconds']:.0f} s"
        f" ({sc['filler_bytes']:,} B bodies, {sc['fill_rate']:,.0f} a second); each round, {small['entries']:,} /"
        f" {large['entries']:,} entries:"
        f" req/s {', '.join(f'{v:,.0f}' for v in small['all_rps'])} / {', '.join(f'{v:,.0f}' for v in large['all_rps'])};"
        f" CPU us per hit {', '.join(f'{v:.0f}' for v in small['all_cpu_us'])} /"
        f" {', '.join(f'{v:.0f}' for v in large['all_cpu_us'])}; spot checks (status, X-Cache, bytes as stored):"
        f" {small['check']} / {large['check']} / {tail['check']}"
    )
    for name, died, causes in bench.crashes:
        note(f"- CRASH: {name}: {died} worker(s) died; " + " | ".join(causes or ["no cause logged"]))
    for text in notes:
        note(f"- note: {text}")
    note(f"- whole run: {r['elapsed_s']:.0f} s")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(
        description="shield's hits, misses, memory and scale, each next to a baseline measured in the same run."
    )
    default_photos = os.path.join(os.path.dirname(ROOT), "shared", "images")
    parser.add_argument(
        "--photos",
        default=default_photos if os.path.isdir(default_photos) else "",
        help="folder of large JPEG photos (the first three of 1600x1000 or more are used)",
    )
    parser.add_argument("--thumbor", default=os.path.join(ROOT, "bench", ".venv-thumbor", "bin", "thumbor"))
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--seconds", type=int, default=4, help="length of each hit run")
    parser.add_argument("--rounds", type=int, default=3, help="hit runs per server (median kept)")
    parser.add_argument("--miss-seconds", type=int, default=4, help="length of each miss run")
    parser.add_argument("--miss-rounds", type=int, default=3, help="miss runs per server (median kept)")
    parser.add_argument(
        "--engine-rounds", type=int, default=3, help="in-process renders per photo and format"
    )
    parser.add_argument(
        "--probe-pause-ms", type=int, default=20, help="pause of each of the 8 latency-probe connections"
    )
    parser.add_argument("--scale-entries", type=int, default=100_000, help="variants in the large cache")
    parser.add_argument("--fill-seconds", type=int, default=80, help="time allowed to fill the large cache")
    parser.add_argument("--cache-max-bytes", type=int, default=2_000_000_000, help="shield's cache_max_bytes")
    parser.add_argument(
        "--out", default=os.path.join(ROOT, "bench", "results"), help="where latest.md/json go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, caches)")
    args = parser.parse_args()
    bench = Bench(args)
    bench.load_before = f"{os.getloadavg()[0]:.2f}"
    log(f"photos: {', '.join(bench.names)}; work folder {bench.work}")
    results = bench.run()
    text = report(results, bench.notes, bench)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(args.out, "latest.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
