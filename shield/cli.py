"""The operator command line: `python -m shield <command> ...` (docs/cli.md).

purge, stats and projects talk to the /v1 admin API of a running shield; sign
works offline from the configuration; warm fetches a list of URLs through the
running server. Exit codes: 0 success, 1 the server answered an error (or
could not be reached, or a warmed URL failed), 2 a usage or configuration error.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime

import requests

from . import settings as settings_mod

PROG = "python -m shield"
DEFAULT_PORT = "8000"
DEFAULT_TIMEOUT = 30.0
DEFAULT_PRIVATE_TTL = 3600
PAGE_SIZE = 100


class UsageError(Exception):
    """Exit 2: the command line or the configuration is wrong."""


class Failure(Exception):
    """Exit 1: the server answered an error, could not be reached, or some work failed."""


# -- argument parsing


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line on stderr, exit 2."""
        self.exit(2, f"shield: error: {message} (see {self.prog} --help)\n")


def _help_formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_global_options(parser, *, top_level, with_token=True):
    """The global options; sub-commands accept them too (then they override the top level)."""
    default = None if top_level else argparse.SUPPRESS
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--url",
        default=default,
        help="base URL of the running shield (default: $SHIELD_URL, else http://127.0.0.1:$PORT, "
        "PORT defaulting to 8000; admin commands use admin_bind when it is configured)",
    )
    if with_token:
        group.add_argument(
            "--token",
            default=default,
            help="admin token (default: $SHIELD_ADMIN_TOKEN, else admin_token from the configuration)",
        )
    group.add_argument(
        "--config",
        default=default,
        help="configuration file (default: $SHIELD_CONFIG, else config/shield.toml)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="print the raw JSON answer instead of text",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT if top_level else argparse.SUPPRESS,
        help=f"seconds to wait for each HTTP answer (default {DEFAULT_TIMEOUT:g})",
    )


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def _whole_number(minimum):
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            bound = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _iso_time(text):
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-23T12:00:00Z, got {text!r}"
        ) from None
    return text


def parse_assignment(text):
    """'key=value' -> (key, value); the value is JSON when it parses as JSON, else the string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def build_parser():
    parser = Parser(
        prog=PROG,
        description="Operate a running shield: purge the cache, read stats, manage projects, "
        "sign URLs and warm the cache.",
        epilog="Run '%(prog)s <command> --help' for a command's options. Reference: docs/cli.md",
        formatter_class=_help_formatter,
    )
    _add_global_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name, help_text, epilog, with_token=True, parent=commands):
        sub = parent.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=_help_formatter,
        )
        _add_global_options(sub, top_level=False, with_token=with_token)
        return sub

    purge = command(
        "purge",
        "Purge cached variants by tag, file, prefix or whole project (POST /v1/purge).",
        "examples:\n"
        "  %(prog)s --tag product-42\n"
        "  %(prog)s --path /demo/rocket.jpg --idempotency-key deploy-981\n"
        "  %(prog)s --prefix /demo/products/\n"
        "  %(prog)s --project demo --everything",
    )
    purge.add_argument("--tag", action="append", default=[], metavar="T", help="a cache tag (repeatable)")
    purge.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="/PROJECT/FILE",
        help="every variant of this file (repeatable)",
    )
    purge.add_argument(
        "--prefix",
        action="append",
        default=[],
        metavar="/PROJECT/DIR/",
        help="every variant of every file under this prefix (repeatable)",
    )
    purge.add_argument("--project", metavar="NAME", help="with --everything: the project to empty")
    purge.add_argument("--everything", action="store_true", help="purge every variant of --project")
    purge.add_argument(
        "--idempotency-key",
        metavar="K",
        help="the same key again (within 7 days) answers the first result without purging again",
    )
    purge.set_defaults(run=cmd_purge)

    stats = command(
        "stats",
        "Show request counters summed over every worker (GET /v1/stats).",
        "examples:\n"
        "  %(prog)s\n"
        "  %(prog)s --project demo --from 2026-11-23T00:00:00Z --to 2026-11-24T00:00:00Z",
    )
    stats.add_argument("--project", metavar="P", help="only this project")
    stats.add_argument(
        "--from", dest="start", type=_iso_time, metavar="ISO", help="from this time (ISO 8601)"
    )
    stats.add_argument("--to", dest="end", type=_iso_time, metavar="ISO", help="up to this time (ISO 8601)")
    stats.set_defaults(run=cmd_stats)

    projects = command(
        "projects",
        "List, show, create, change and delete projects (/v1/projects).",
        "examples:\n"
        "  %(prog)s list\n"
        "  %(prog)s get demo\n"
        "  %(prog)s create shop --origin https://img.shop.example/ --set cache_ttl=3600\n"
        "  %(prog)s update shop --set enabled=false --set 'tags=[\"shop\"]'\n"
        "  %(prog)s delete shop",
    )
    actions = projects.add_subparsers(dest="action", metavar="<action>", required=True)
    set_help = "a project setting; VALUE is read as JSON when it parses (numbers, true/false, lists), else as a string (repeatable)"

    p_list = command("list", "List every project, following every page.", None, parent=actions)
    p_list.add_argument(
        "--limit", type=_positive_int, default=PAGE_SIZE, help=f"projects per page (default {PAGE_SIZE})"
    )
    p_list.set_defaults(run=cmd_projects_list)

    p_get = command("get", "Show one project.", None, parent=actions)
    p_get.add_argument("name")
    p_get.set_defaults(run=cmd_projects_get)

    p_create = command(
        "create",
        "Create a project.",
        "example:\n  %(prog)s shop --origin https://img.shop.example/ --set cache_ttl=3600 --set quality=75",
        parent=actions,
    )
    p_create.add_argument("name")
    p_create.add_argument("--origin", required=True, help="a local folder or an http(s):// URL prefix")
    p_create.add_argument(
        "--set",
        dest="changes",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help=set_help,
    )
    p_create.set_defaults(run=cmd_projects_create)

    p_update = command(
        "update",
        "Change settings of a project.",
        "example:\n  %(prog)s shop --set enabled=false --set max_width=2048",
        parent=actions,
    )
    p_update.add_argument("name")
    p_update.add_argument(
        "--set",
        dest="changes",
        action="append",
        default=[],
        type=parse_assignment,
        metavar="KEY=VALUE",
        help=set_help,
    )
    p_update.set_defaults(run=cmd_projects_update)

    p_delete = command("delete", "Delete a project.", None, parent=actions)
    p_delete.add_argument("name")
    p_delete.set_defaults(run=cmd_projects_delete)

    sign = command(
        "sign",
        "Print a signed URL (or with --token a private one) for the configuration in force. "
        "Needs no running server.",
        "The key is the first signing_key of the project named by the URL's first path segment.\n"
        "The global --token cannot follow 'sign' (here --token means a private token).\n\n"
        "examples:\n"
        "  %(prog)s '/shop/shoes/red.jpg?w=400&fmt=webp'\n"
        "  %(prog)s 'https://img.example.com/shop/red.jpg?w=400' --exp 86400\n"
        "  %(prog)s /vault/report.png --token --exp 600",
        with_token=False,
    )
    sign.add_argument("target", metavar="URL", help="a full URL or a path such as '/proj/file?w=1'")
    sign.add_argument(
        "--token",
        dest="private",
        action="store_true",
        help="print the private URL (path?token=...) instead; expires in 3600 s unless told",
    )
    when = sign.add_mutually_exclusive_group()
    when.add_argument(
        "--exp",
        type=_positive_int,
        metavar="SECONDS",
        help="the URL stops working this many seconds from now",
    )
    when.add_argument(
        "--expires", type=_positive_int, metavar="UNIX", help="the URL stops working at this Unix time"
    )
    sign.set_defaults(run=cmd_sign)

    warm = command(
        "warm",
        "Fetch a list of URLs through the running server so they are cached.",
        "FILE holds one URL or path a line; blank lines and '#' comments are skipped;\n"
        "'<url><TAB><accept header>' sends that Accept header. '-' reads standard input.\n\n"
        "examples:\n"
        "  %(prog)s urls.txt\n"
        "  %(prog)s urls.txt --concurrency 8 --url http://shield.internal:8000",
    )
    warm.add_argument("file", metavar="FILE")
    warm.add_argument(
        "--concurrency", type=_positive_int, default=4, metavar="N", help="parallel requests (default 4)"
    )
    warm.add_argument(
        "--accept", metavar="HEADER", help="Accept header for lines that do not give one (default */*)"
    )
    warm.add_argument(
        "--retries",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="retries of a 429 or 503 answer, after its Retry-After (default 2)",
    )
    warm.set_defaults(run=cmd_warm)
    return parser


# -- context: configuration, URL, token, HTTP


class Context:
    def __init__(self, args, stdout, stderr):
        self.args = args
        self.out = stdout
        self.err = stderr
        self._settings = None

    def settings(self):
        if self._settings is None:
            path = self.args.config
            if path and not os.path.exists(path):
                raise UsageError(f"--config {path}: no such file")
            try:
                self._settings = settings_mod.load(path)
            except settings_mod.ConfigError as exc:
                raise UsageError(f"configuration: {exc}") from None
        return self._settings

    def base_url(self, admin=False):
        if self.args.url:
            return _normalise_base(self.args.url)
        if os.environ.get("SHIELD_URL"):
            return _normalise_base(os.environ["SHIELD_URL"])
        if admin:
            try:
                bind = self.settings().admin_bind
            except UsageError:
                bind = ""
            if bind:
                host, _, port = bind.rpartition(":")
                if host in ("", "0.0.0.0", "[::]"):
                    host = "127.0.0.1"
                return f"http://{host}:{port}"
        return f"http://127.0.0.1:{os.environ.get('PORT') or DEFAULT_PORT}"

    def admin_token(self):
        if self.args.token:
            return self.args.token
        if os.environ.get("SHIELD_ADMIN_TOKEN"):
            return os.environ["SHIELD_ADMIN_TOKEN"]
        settings = self.settings()
        if not settings.admin_token:
            raise UsageError(
                f"no admin token: pass --token, set SHIELD_ADMIN_TOKEN, or set admin_token under [shield] "
                f"in the configuration ({settings.source})"
            )
        return settings.admin_token

    def admin(self):
        return AdminClient(self.base_url(admin=True), self.admin_token(), self.args.timeout)

    def print_json(self, data):
        print(json.dumps(data, indent=2, sort_keys=True), file=self.out)


def _normalise_base(url):
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def _describe_request_error(exc, timeout):
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (is shield running there?)"
    return type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]


class AdminClient:
    def __init__(self, base, token, timeout):
        self.base = base
        self.token = token
        self.timeout = timeout

    def call(self, method, path, params=None, body=None):
        url = self.base + path
        try:
            with requests.Session() as session:
                resp = session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                    timeout=self.timeout,
                )
        except requests.RequestException as exc:
            raise Failure(f"{method} {url}: {_describe_request_error(exc, self.timeout)}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            raise Failure(f"{method} {path}: {_error_text(resp.status_code, data, resp.text)}")
        if data is None:
            raise Failure(f"{method} {path}: answered {resp.status_code} with a body that is not JSON")
        return data


def _error_text(status, data, text):
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        line = f"{status} {error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")
    else:
        snippet = " ".join((text or "").split())[:200]
        line = f"{status}: {snippet}" if snippet else f"{status}"
    if status == 401:
        line += " (check --token, SHIELD_ADMIN_TOKEN or admin_token in the configuration)"
    return line


# -- formatting helpers


def human_bytes(n):
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _rows(pairs):
    width = max((len(label) for label, _ in pairs), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in pairs)


def _show(value):
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


# -- commands


def cmd_purge(ctx):
    args = ctx.args
    body = {}
    if args.tag:
        body["tags"] = args.tag
    if args.path:
        body["paths"] = args.path
    if args.prefix:
        body["prefixes"] = args.prefix
    if args.everything:
        if not args.project:
            raise UsageError("--everything needs --project NAME")
        body["project"] = args.project
        body["everything"] = True
    elif args.project:
        raise UsageError("--project is only used with --everything")
    if not body:
        raise UsageError("nothing to purge: give --tag, --path, --prefix, or --project NAME --everything")
    for option, values in (("--path", args.path), ("--prefix", args.prefix)):
        for value in values:
            if not value.startswith("/") or value.count("/") < 2:
                raise UsageError(f"{option} {value!r}: expected /<project>/<path>")
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    data = ctx.admin().call("POST", "/v1/purge", body=body)
    if args.json:
        ctx.print_json(data)
    else:
        print(f"purged {data.get('purged', 0)} variants (purge_id {data.get('purge_id', '?')})", file=ctx.out)


def cmd_stats(ctx):
    args = ctx.args
    params = {}
    if args.project:
        params["project"] = args.project
    if args.start:
        params["from"] = args.start
    if args.end:
        params["to"] = args.end
    data = ctx.admin().call("GET", "/v1/stats", params=params)
    if args.json:
        ctx.print_json(data)
        return

    def num(name):
        value = data.get(name, 0)
        return f"{value:,}" if isinstance(value, int) else str(value)

    period = f"{args.start or 'the beginning'} to {args.end or 'now'}"
    pairs = [
        ("project", args.project or "(all projects)"),
        ("period", period),
        ("requests", num("requests")),
        ("hits", num("hits")),
        ("misses", num("misses")),
        ("stale", num("stale")),
        ("errors", num("errors")),
        ("hit ratio", f"{float(data.get('hit_ratio') or 0) * 100:.1f}%"),
        ("bytes served", human_bytes(data.get("bytes_served", 0))),
        ("origin fetches", num("origin_fetches")),
        ("transforms", num("transforms")),
    ]
    print(_rows(pairs), file=ctx.out)


def _project_path(name):
    return "/v1/projects/" + urllib.parse.quote(name, safe="")


def _print_project(ctx, project, headline=None):
    if ctx.args.json:
        ctx.print_json(project)
        return
    if headline:
        print(headline, file=ctx.out)
    pairs = [("name", project.get("name", ""))]
    pairs += [(key, _show(value)) for key, value in project.items() if key != "name"]
    print(_rows(pairs), file=ctx.out)


def cmd_projects_list(ctx):
    client = ctx.admin()
    items, cursor, seen = [], None, set()
    while True:
        params = {"limit": ctx.args.limit}
        if cursor:
            params["cursor"] = cursor
        page = client.call("GET", "/v1/projects", params=params)
        items.extend(page.get("items") or [])
        cursor = page.get("next_cursor")
        if not cursor or cursor in seen:
            break
        seen.add(cursor)
    if ctx.args.json:
        ctx.print_json({"items": items, "next_cursor": None})
        return
    if not items:
        print("no projects", file=ctx.out)
        return
    rows = [
        (
            p.get("name", ""),
            p.get("origin", ""),
            "yes" if p.get("enabled", True) else "no",
            "yes" if p.get("private") else "no",
            "yes" if p.get("signing_key") else "no",
        )
        for p in items
    ]
    print(_table(("NAME", "ORIGIN", "ENABLED", "PRIVATE", "SIGNED"), rows), file=ctx.out)


def cmd_projects_get(ctx):
    _print_project(ctx, ctx.admin().call("GET", _project_path(ctx.args.name)))


def cmd_projects_create(ctx):
    body = dict(ctx.args.changes)
    body["name"] = ctx.args.name
    body["origin"] = ctx.args.origin
    project = ctx.admin().call("POST", "/v1/projects", body=body)
    _print_project(ctx, project, f"created project {ctx.args.name}")


def cmd_projects_update(ctx):
    if not ctx.args.changes:
        raise UsageError("nothing to change: give at least one --set KEY=VALUE")
    project = ctx.admin().call("PATCH", _project_path(ctx.args.name), body=dict(ctx.args.changes))
    _print_project(ctx, project, f"updated project {ctx.args.name}")


def cmd_projects_delete(ctx):
    data = ctx.admin().call("DELETE", _project_path(ctx.args.name))
    if ctx.args.json:
        ctx.print_json(data)
    else:
        print(f"deleted project {ctx.args.name}", file=ctx.out)


def _project_in_force(settings, name):
    """The project as the server sees it: the file's, overlaid by those made through the API."""
    from .projects import Registry

    registry = Registry(settings)
    if not os.path.exists(registry.path):
        return settings.projects.get(name)
    try:
        return registry.get(name)
    finally:
        db = getattr(registry, "_db", None)
        if db is not None:
            db.close()


def cmd_sign(ctx):
    from . import signing

    args = ctx.args
    parts = urllib.parse.urlsplit(args.target.strip())
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise UsageError(f"{args.target!r}: expected an http(s) URL or a path starting with /")
    path = urllib.parse.unquote(parts.path)
    segments = path.split("/")
    if not path.startswith("/") or len(segments) < 3 or not segments[1] or not segments[2]:
        raise UsageError(f"{args.target!r}: expected /<project>/<file>, e.g. /demo/rocket.jpg?w=400")
    name = segments[1]
    settings = ctx.settings()
    project = _project_in_force(settings, name)
    if project is None:
        raise UsageError(f"no project {name!r} in the configuration ({settings.source})")
    if not project.signing_key:
        raise UsageError(f"project {name!r} has no signing_key, so its URLs need no signature")
    key = project.signing_key[0]

    query = {
        k: v
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("sig", "token")
    }
    exp = None
    if args.exp is not None:
        exp = int(time.time()) + args.exp
    elif args.expires is not None:
        exp = args.expires
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
    shown_path = urllib.parse.quote(path, safe="/")

    if args.private:
        if exp is None:
            given = query.get("exp", "")
            exp = int(given) if given.isdigit() else int(time.time()) + DEFAULT_PRIVATE_TTL
        query.pop("exp", None)
        token = signing.private_token(key, path, exp)
        pairs = [*query.items(), ("token", token)]
        url = origin + shown_path + "?" + urllib.parse.urlencode(pairs)
    else:
        if exp is not None:
            query["exp"] = str(exp)
        signed = signing.signed_url(key, path, query)
        if not signed.startswith(path):
            raise Failure(
                f"shield.signing.signed_url answered {signed!r}, which does not start with {path!r}"
            )
        url = origin + shown_path + signed[len(path) :]
        exp_given = query.get("exp")
        exp = int(exp_given) if exp_given and exp_given.isdigit() else None
    if project.private and not args.private:
        print(
            f"shield: note: project {name!r} is private: its URLs need a token (sign --token)", file=ctx.err
        )
    if args.json:
        ctx.print_json({"url": url, "project": name, "expires": exp, "private": bool(args.private)})
    else:
        print(url, file=ctx.out)


# -- warm


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
    """A one-line bar on a terminal; else one JSON line per 10 % (logs stay one JSON object a line)."""

    WIDTH = 30

    def __init__(self, total, stream):
        self.total = total
        self.stream = stream
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._tenth = 0
        self._started = time.monotonic()

    def update(self, done, failed):
        if not self.total:
            return
        if self.tty:
            filled = self.WIDTH * done // self.total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            percent = 100 * done // self.total
            self.stream.write(f"\rwarming [{bar}] {percent:3d}% {done}/{self.total} failed {failed}")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        tenth = 10 * done // self.total
        if tenth > self._tenth:
            self._tenth = tenth
            line = {
                "ts": round(time.time(), 3),
                "level": "info",
                "event": "warm_progress",
                "done": done,
                "total": self.total,
                "percent": round(100 * done / self.total, 1),
                "failed": failed,
                "seconds": round(time.monotonic() - self._started, 3),
            }
            self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.stream.flush()


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
                return {"url": url, "status": None, "error": _describe_request_error(exc, self.timeout)}
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


def cmd_warm(ctx):
    args = ctx.args
    base = ctx.base_url()
    try:
        if args.file == "-":
            targets = read_url_list(sys.stdin.readlines(), base, args.accept)
        else:
            with open(args.file, encoding="utf-8") as fh:
                targets = read_url_list(fh, base, args.accept)
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.file}: not UTF-8 text") from None

    progress = Progress(len(targets), ctx.err)
    fetcher = Fetcher(args.timeout, args.retries)
    results = []
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            futures = [pool.submit(fetcher.fetch, url, accept) for url, accept in targets]
            failed = 0
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                failed += not _ok(result)
                progress.update(len(results), failed)
    finally:
        fetcher.close()
    seconds = time.monotonic() - started
    summary = _warm_summary(results, seconds)
    if args.json:
        ctx.print_json(summary)
    else:
        print(_warm_text(summary), file=ctx.out)
    if summary["failed"]:
        raise Failure(f"{summary['failed']} of {summary['total']} URLs failed")


def _ok(result):
    return result["status"] is not None and 200 <= result["status"] < 400


def _warm_summary(results, seconds):
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


def _warm_text(summary):
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
    lines = [_rows(pairs)]
    for failure in summary["failures"][:20]:
        lines.append(f"  failed {failure['status'] or '---'} {failure['url']} ({failure['error']})")
    if summary["failed"] > 20:
        lines.append(f"  ... and {summary['failed'] - 20} more")
    return "\n".join(lines)


# -- entry point


def main(argv=None, stdout=None, stderr=None):
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args, stdout, stderr)
    try:
        args.run(ctx)
    except UsageError as exc:
        print(f"shield: error: {exc}", file=stderr)
        return 2
    except Failure as exc:
        print(f"shield: error: {exc}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("shield: interrupted", file=stderr)
        return 130
    except BrokenPipeError:
        return 1
    return 0
