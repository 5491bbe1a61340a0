"""Processes, load and measurements for `make bench`: servers on free ports, wrk, RSS."""

import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "lua")
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, headers=None, timeout=120):
    """(status, headers, body) of one GET; HTTP errors are answers too.

    A body cut short of its Content-Length comes back as far as it got, not as an error:
    callers compare its length with the header.
    """
    req = urllib.request.Request(url, headers={"Accept": BROWSER_ACCEPT, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            try:
                return resp.status, dict(resp.headers), resp.read()
            except http.client.IncompleteRead as exc:
                return resp.status, dict(resp.headers), exc.partial
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def whole(headers, body):
    """Whether a body is as long as its Content-Length says."""
    return int(headers.get("Content-Length", len(body))) == len(body)


class Server:
    """A server process in a process group of its own, stopped by that group's id."""

    def __init__(
        self, name, argv, port, env=None, cwd=ROOT, log_dir=None, ready_path="/health", inherit_env=True
    ):
        self.name = name
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.cwd = cwd
        self.ready_path = ready_path
        self.log_path = os.path.join(log_dir, f"{name}.log") if log_dir else os.devnull
        self.proc = None

    def start(self, timeout=60):
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.ready_path)
                status = conn.getresponse().status
                conn.close()
                if status < 500:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars=3000):
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode(errors="replace")[-chars:]
        except OSError:
            return ""

    def children(self):
        """Pids whose parent is the server's first process (gunicorn's workers, thumbor's forks)."""
        return children_of(self.proc.pid) if self.proc else []

    def pids(self):
        return [self.proc.pid, *self.children()] if self.proc else []

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def memory_of(pid):
    """{'rss': bytes, 'hwm': bytes} (current and peak resident set) of one process."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1]) * 1024
    return out


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes (all their threads)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores, every process) since boot."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICK


def reset_peak(pid):
    """Start the peak-RSS (VmHWM) count of a process again (Linux 4.0+; root or the owner)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class Wrk:
    """wrk with bench/lua's scripts: one connection per wrk thread, as report.lua's timing needs."""

    def __init__(self, binary="wrk"):
        self.binary = binary

    def argv(self, url, script, args, connections, seconds, timeout_s):
        argv = [
            self.binary,
            f"-t{connections}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={timeout_s}s",
            "-s",
            os.path.join(LUA, script),
            url,
        ]
        if args:
            argv += ["--", *[str(a) for a in args]]
        return argv

    @staticmethod
    def parse(out, err, connections):
        for line in out.splitlines():
            if line.startswith("BENCH "):
                result = json.loads(line[len("BENCH ") :])
                secs = result["duration_us"] / 1e6
                result["rps"] = result["requests"] / secs if secs else 0.0
                result["connections"] = connections
                result["errors"] = sum(
                    result[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
                )
                # Little's law: with every connection always busy, mean latency = connections / throughput.
                result["little_mean_us"] = connections / result["rps"] * 1e6 if result["rps"] else 0.0
                return result
        raise RuntimeError(f"wrk gave no result:\n{out[-2000:]}\n{err[-2000:]}")

    def run(self, url, script, args=(), connections=32, seconds=5, timeout_s=30, server=None):
        """One wrk run: the BENCH line of bench/lua/report.lua as a dict, plus rps.

        With `server`, also the CPU its processes spent per request (`cpu_us`), which a
        busy neighbour on the machine disturbs far less than requests a second, and the
        share of the machine's CPU that neither the server nor wrk used (`others`).
        """
        argv = self.argv(url, script, args, connections, seconds, timeout_s)
        pids = server.pids() if server else []
        cpu0, busy0, wrk0 = cpu_seconds(pids), machine_busy_seconds(), _children_cpu()
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        wall = time.monotonic() - started
        result = self.parse(done.stdout, done.stderr, connections)
        if server:
            used = cpu_seconds(pids) - cpu0
            result["cpu_us"] = used / result["requests"] * 1e6 if result["requests"] else 0.0
            others = machine_busy_seconds() - busy0 - used - (_children_cpu() - wrk0)
            result["others"] = max(0.0, others) / (wall * (os.cpu_count() or 1))
        return result

    def start(self, url, script, args=(), connections=8, seconds=10, timeout_s=30):
        """A wrk run in the background; returns collect(), which waits for it and parses."""
        argv = self.argv(url, script, args, connections, seconds, timeout_s)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def collect():
            out, err = proc.communicate(timeout=seconds + timeout_s + 30)
            return self.parse(out, err, connections)

        return collect


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_run(results):
    """The run with the median requests/s of several (latencies stay those of one real run)."""
    ordered = sorted(results, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def median(values):
    return statistics.median(values) if values else float("nan")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
