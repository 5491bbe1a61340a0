"""`warm`: fetch a list of URLs through the running server, so they are cached before traffic asks."""

import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

import click
import requests
from tqdm import tqdm

from .client import Failure, UsageError, describe_request_error
from .options import NON_NEGATIVE, POSITIVE, command
from .output import human_bytes, rows

BAR_FORMAT = "warming [{bar:30}] {percentage:3.0f}% {n_fmt}/{total_fmt} {desc} [{elapsed}<{remaining}]"


def read_url_list(lines, base, default_accept=None):
    """The lines of a warm file -> [(absolute URL, Accept or None)]."""
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        target, _, accept = line.partition("\t")
        target, accept = target.strip(), accept.strip() or default_accept
        if target.startswith("/"):
            url = base + target
        elif urllib.parse.urlsplit(target).scheme in ("http", "https"):
            url = target
        else:
            raise UsageError(
                f"line {number}: {target[:80]!r} is neither a path (/proj/file) nor an http(s) URL"
            )
        out.append((url, accept))
    return out


class Progress:
    """tqdm's bar on a terminal; elsewhere one JSON line per 10 % (logs stay one JSON object a line)."""

    def __init__(self, total, stream, label="warming", event="warm_progress"):
        self.total = total
        self.label = label
        self.event = event
        self.stream = stream
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._bar = None
        self._tenth = 0
        self._started = time.monotonic()

    def update(self, done, failed):
        if not self.total:
            return
        if self.tty:
            self._draw(done, failed)
            return
        tenth = 10 * done // self.total
        if tenth > self._tenth:
            self._tenth = tenth
            line = {
                "ts": round(time.time(), 3),
                "level": "info",
                "event": self.event,
                "done": done,
                "total": self.total,
                "percent": round(100 * done / self.total, 1),
                "failed": failed,
                "seconds": round(time.monotonic() - self._started, 3),
            }
            self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.stream.flush()

    def _draw(self, done, failed):
        # Drawn once per answer: the bar appears with the first answer and ends with the last.
        failures = f"failed {failed}"
        if self._bar is None:
            self._bar = tqdm(
                total=self.total,
                initial=done,
                file=self.stream,
                bar_format=BAR_FORMAT.replace("warming", self.label),
                desc=failures,
                mininterval=0,
                miniters=1,
                ascii=" #",
                dynamic_ncols=False,
            )
        elif done < self.total:
            self._bar.set_description_str(failures, refresh=False)
            self._bar.update(done - self._bar.n)
        if done >= self.total:
            self.close(done, failures)

    def close(self, done=None, failures=None):
        """End the bar (on the last answer, or when warming stops early)."""
        if self._bar is None or self._bar.disable:
            return
        if failures is not None:
            self._bar.set_description_str(failures, refresh=False)
        if done is not None:
            self._bar.n = done
        self._bar.close()


class Fetcher:
    """GETs URLs with one keep-alive session per thread; retries 429/503 after Retry-After."""

    def __init__(self, timeout, retries):
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()
        self._sessions = []
        self._lock = threading.Lock()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self):
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def fetch(self, url, accept):
        headers = {"Accept": accept} if accept else {}
        attempt = 0
        while True:
            try:
                resp = self._session().get(url, headers=headers, timeout=self.timeout)
                size = len(resp.content)
            except requests.RequestException as exc:
                return {"url": url, "status": None, "error": describe_request_error(exc, self.timeout)}
            if resp.status_code in (429, 503) and attempt < self.retries:
                attempt += 1
                time.sleep(_retry_after(resp.headers.get("Retry-After")))
                continue
            result = {
                "url": url,
                "status": resp.status_code,
                "cache": resp.headers.get("X-Cache"),
                "bytes": size,
            }
            if resp.status_code >= 400:
                try:
                    result["error"] = resp.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    result["error"] = resp.reason or "error"
            return result


def _retry_after(value):
    try:
        return min(max(float(value), 0.1), 30.0)
    except (TypeError, ValueError):
        return 1.0


@command(
    "warm",
    "Fetch a list of URLs through the running server so they are cached.",
    "FILE holds one URL or path a line; blank lines and '#' comments are skipped; "
    "'<url><TAB><accept header>' sends that Accept header. '-' reads standard input.\n\n"
    "\b\nexamples:\n"
    "  python -m shield warm urls.txt\n"
    "  python -m shield warm urls.txt --concurrency 8 --url http://shield.internal:8000",
)
@click.argument("file", metavar="FILE")
@click.option("--concurrency", type=POSITIVE, default=4, metavar="N", help="parallel requests (default 4)")
@click.option("--accept", metavar="HEADER", help="Accept header for lines that do not give one (default */*)")
@click.option(
    "--retries",
    type=NON_NEGATIVE,
    default=2,
    metavar="N",
    help="retries of a 429 or 503 answer, after its Retry-After (default 2)",
)
def warm(ctx, file, concurrency, accept, retries):
    base = ctx.base_url()
    try:
        if file == "-":
            targets = read_url_list(sys.stdin.readlines(), base, accept)
        else:
            with open(file, encoding="utf-8") as fh:
                targets = read_url_list(fh, base, accept)
    except OSError as exc:
        raise UsageError(f"{file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file}: not UTF-8 text") from None

    progress = Progress(len(targets), ctx.err)
    fetcher = Fetcher(ctx.args.timeout, retries)
    results = []
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(fetcher.fetch, url, header) for url, header in targets]
            failed = 0
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                failed += not _ok(result)
                progress.update(len(results), failed)
    finally:
        progress.close()
        fetcher.close()
    summary = _summary(results, time.monotonic() - started)
    if ctx.args.json:
        ctx.print_json(summary)
    else:
        print(_summary_text(summary), file=ctx.out)
    if summary["failed"]:
        raise Failure(f"{summary['failed']} of {summary['total']} URLs failed")


def _ok(result):
    return result["status"] is not None and 200 <= result["status"] < 400


def _summary(results, seconds):
    failures = [r for r in results if not _ok(r)]
    by_status = Counter(str(r["status"]) if r["status"] is not None else "error" for r in failures)
    cache = Counter(r.get("cache") or "none" for r in results if _ok(r))
    return {
        "total": len(results),
        "ok": len(results) - len(failures),
        "failed": len(failures),
        "failed_by_status": dict(sorted(by_status.items())),
        "cache": dict(sorted(cache.items())),
        "bytes": sum(r.get("bytes", 0) for r in results if _ok(r)),
        "seconds": round(seconds, 3),
        "requests_per_second": round(len(results) / seconds, 1) if seconds > 0 else 0.0,
        "failures": [
            {"url": r["url"], "status": r["status"], "error": r.get("error")} for r in failures[:100]
        ],
    }


def _summary_text(summary):
    failed = str(summary["failed"])
    if summary["failed_by_status"]:
        failed += " (" + ", ".join(f"{k}: {v}" for k, v in summary["failed_by_status"].items()) + ")"
    pairs = [
        ("total", str(summary["total"])),
        ("ok", str(summary["ok"])),
        ("failed", failed),
        ("HIT", str(summary["cache"].get("HIT", 0))),
        ("MISS", str(summary["cache"].get("MISS", 0))),
    ]
    for state in ("STALE", "BYPASS"):
        if summary["cache"].get(state):
            pairs.append((state, str(summary["cache"][state])))
    pairs += [
        ("bytes", human_bytes(summary["bytes"])),
        ("seconds", f"{summary['seconds']:.2f}"),
        ("requests/s", f"{summary['requests_per_second']:.1f}"),
    ]
    lines = [rows(pairs)]
    for failure in summary["failures"][:20]:
        lines.append(f"  failed {failure['status'] or '---'} {failure['url']} ({failure['error']})")
    if summary["failed"] > 20:
        lines.append(f"  ... and {summary['failed'] - 20} more")
    return "\n".join(lines)
