"""The operator command line, `python -m shield ...`, against one real gunicorn per module."""

import base64
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from types import SimpleNamespace

import pytest
import requests

from shield.cli.client import Context
from shield.cli.main import main, parse_args
from shield.cli.options import parse_assignment
from shield.cli.output import human_bytes
from shield.cli.warm import Progress
from tests.conftest import ROOT, Gunicorn, free_port

TOKEN = "cli-admin-token-0123456789"
SIGNING_KEY = "cli-signing-key-0123456789"
PRIVATE_KEY = "cli-private-key-0123456789"
PROJECTS = ["counted", "demo", "signed", "tagged", "vault", "warmp", "wipe"]


def _config_text(tmp, folder):
    plain = "\n".join(
        f'[projects.{name}]\norigin = "{folder}/"\n'
        for name in ("demo", "tagged", "wipe", "counted", "warmp")
    )
    return f"""
[shield]
cache_dir = "{tmp}/cache"
state_dir = "{tmp}/state"
admin_token = "{TOKEN}"
log_level = "warning"

{plain}
[projects.signed]
origin = "{folder}/"
signing_key = "{SIGNING_KEY}"

[projects.vault]
origin = "{folder}/"
private = true
signing_key = ["{PRIVATE_KEY}", "an-older-key-0123456789"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """shield under gunicorn (two gevent workers), shared by this module's tests."""
    tmp = tmp_path_factory.mktemp("cli")
    folder = tmp / "images"
    shutil.copytree(os.path.join(ROOT, "samples"), folder)
    (folder / "products").mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(folder / "coffee.png", folder / "products" / name)
    config = tmp / "shield.toml"
    config.write_text(_config_text(tmp, folder))
    running = Gunicorn(config, workers=2).start()
    try:
        yield SimpleNamespace(url=running.url, port=running.port, config=config, folder=folder, tmp=tmp)
    finally:
        running.stop()


@pytest.fixture(scope="module")
def web():
    with requests.Session() as session:
        yield session


def run_cli(server, *args, env=None, stdin=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELD_") and k != "PORT"}
    full_env.update({"SHIELD_CONFIG": str(server.config), "SHIELD_URL": server.url, **(env or {})})
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-m", "shield", *args],
        cwd=ROOT,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def x_cache(web, server, path, accept=None):
    resp = web.get(server.url + path, headers={"Accept": accept} if accept else {}, timeout=30)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
    return resp.headers["X-Cache"]


def cached(web, server, *paths):
    for path in paths:
        x_cache(web, server, path)
    assert [x_cache(web, server, p) for p in paths] == ["HIT"] * len(paths)


def hmac_hex(key, message):
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


# -- no server needed


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["purge"],
        ["stats"],
        ["projects"],
        ["projects", "list"],
        ["projects", "get"],
        ["projects", "create"],
        ["projects", "update"],
        ["projects", "delete"],
        ["sign"],
        ["warm"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "rotate"],
        ["keys", "revoke"],
        ["upload"],
        ["assets"],
        ["assets", "list"],
        ["assets", "delete"],
    ],
)
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m shield") and "--url" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["purge", "--everything"],
        ["purge", "--project", "demo"],
        ["purge"],
        ["purge", "--path", "rocket.jpg"],
        ["stats", "--from", "yesterday"],
        ["projects", "update", "demo"],
        ["projects", "create", "x", "--origin", "samples/", "--set", "novalue"],
        ["projects", "create", "x"],
        ["sign", "/signed/a.jpg", "--exp", "10", "--expires", "2000000000"],
        ["warm", "x.txt", "--concurrency", "0"],
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("shield: error: ")


def test_set_values_are_json_when_they_parse():
    parse = parse_assignment
    assert parse("quality=70") == ("quality", 70)
    assert parse("enabled=false") == ("enabled", False)
    assert parse('tags=["a", "b"]') == ("tags", ["a", "b"])
    assert parse("origin=https://x.example/img/") == ("origin", "https://x.example/img/")
    assert parse("signing_key=a=b") == ("signing_key", "a=b")
    assert parse("note=") == ("note", "")


def test_human_bytes():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(4_200_133) == "4.0 MiB"


def test_progress_is_a_bar_on_a_terminal_and_json_lines_elsewhere():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    bar = Progress(4, tty)
    for done in range(1, 5):
        bar.update(done, 0)
    assert tty.getvalue().count("\r") == 4 and "100% 4/4" in tty.getvalue()
    assert tty.getvalue().endswith("\n")

    pipe = io.StringIO()
    progress = Progress(25, pipe)
    for done in range(1, 26):
        progress.update(done, done // 10)
    lines = [json.loads(line) for line in pipe.getvalue().splitlines()]
    assert len(lines) == 10
    assert all(line["event"] == "warm_progress" and line["total"] == 25 for line in lines)
    assert lines[-1]["percent"] == 100 and lines[-1]["done"] == 25 and lines[-1]["failed"] == 2


def test_sign_matches_an_independent_hmac(server):
    url = ok(run_cli(server, "sign", "/signed/rocket.jpg?w=100&fmt=webp&utm_source=x&sig=old")).strip()
    path, _, query = url.partition("?")
    params = urllib.parse.parse_qsl(query)
    assert path == "/signed/rocket.jpg" and params[-1][0] == "sig"
    rest = sorted(p for p in params if p[0] != "sig")
    assert rest == [("fmt", "webp"), ("utm_source", "x"), ("w", "100")]
    assert params[-1][1] == hmac_hex(SIGNING_KEY, path + "?" + urllib.parse.urlencode(rest))

    before = int(time.time())
    full = ok(run_cli(server, "sign", "https://img.example.com/signed/rocket.jpg?w=5", "--exp", "600"))
    parts = urllib.parse.urlsplit(full.strip())
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "img.example.com", "/signed/rocket.jpg")
    args = dict(urllib.parse.parse_qsl(parts.query))
    assert before + 600 <= int(args["exp"]) <= int(time.time()) + 600
    unsigned = urllib.parse.urlencode(sorted((k, v) for k, v in args.items() if k != "sig"))
    assert args["sig"] == hmac_hex(SIGNING_KEY, f"/signed/rocket.jpg?{unsigned}")

    at = json.loads(
        ok(
            run_cli(
                server,
                "--json",
                "--config",
                str(server.config),
                "sign",
                "/signed/coffee.png",
                "--expires",
                "2000000000",
                env={"SHIELD_CONFIG": None},
            )
        )
    )
    assert at["expires"] == 2000000000 and "exp=2000000000" in at["url"]


def test_sign_token_is_a_private_token(server):
    before = int(time.time())
    url = ok(run_cli(server, "sign", "/vault/coffee.png?w=40", "--token")).strip()
    path, _, query = url.partition("?")
    args = dict(urllib.parse.parse_qsl(query))
    assert path == "/vault/coffee.png" and set(args) == {"w", "token"} and args["w"] == "40"
    exp, _, digest = args["token"].partition(".")
    assert before + 3600 <= int(exp) <= int(time.time()) + 3600
    assert digest == hmac_hex(PRIVATE_KEY, f"/vault/coffee.png:{exp}")

    fixed = ok(run_cli(server, "sign", "/vault/a b.png", "--token", "--expires", "2000000000")).strip()
    not_private = run_cli(server, "sign", "/vault/coffee.png")
    assert not_private.returncode == 0 and "--token" in not_private.stderr
    assert fixed.startswith("/vault/a%20b.png?token=2000000000.")
    assert fixed.rsplit(".", 1)[1] == hmac_hex(PRIVATE_KEY, "/vault/a b.png:2000000000")


def test_sign_refuses_what_it_cannot_sign(server):
    unknown = run_cli(server, "sign", "/nosuch/a.jpg")
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr
    unsigned = run_cli(server, "sign", "/demo/a.jpg")
    assert unsigned.returncode == 2 and "signing_key" in unsigned.stderr
    bad = run_cli(server, "sign", "rocket.jpg")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_urls_and_token_come_from_the_configuration(tmp_path, monkeypatch, capsys):
    config = tmp_path / "admin.toml"
    config.write_text(
        f'[shield]\nadmin_token = "{TOKEN}"\nadmin_bind = "0.0.0.0:9911"\n'
        f'state_dir = "{tmp_path}/state"\n[projects.demo]\norigin = "samples/"\n'
    )
    for name in ("SHIELD_URL", "SHIELD_ADMIN_TOKEN", "SHIELD_CONFIG", "PORT"):
        monkeypatch.delenv(name, raising=False)
    ctx = Context(parse_args(["--config", str(config), "stats"]), None, None)
    assert ctx.admin_token() == TOKEN
    assert ctx.base_url(admin=True) == "http://127.0.0.1:9911"  # /v1 lives on admin_bind
    assert ctx.base_url() == "http://127.0.0.1:8000"
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("SHIELD_ADMIN_TOKEN", "from-the-environment-0123")
    assert ctx.base_url() == "http://127.0.0.1:9000" and ctx.admin_token() == "from-the-environment-0123"
    monkeypatch.setenv("SHIELD_URL", "shield.internal:8080/")
    assert ctx.base_url(admin=True) == "http://shield.internal:8080"
    args = parse_args(["--url", "http://a:1", "stats", "--url", "http://b:2", "--token", "t"])
    assert (args.url, args.token) == ("http://b:2", "t")  # after the command wins

    config.write_text('[projects.demo]\norigin = "samples/"\n')
    monkeypatch.delenv("SHIELD_ADMIN_TOKEN")
    assert main(["--config", str(config), "stats"]) == 2
    assert "no admin token" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "nope.toml"), "stats"]) == 2
    assert "no such file" in capsys.readouterr().err


# -- against the running server


def test_signed_and_private_urls_are_accepted_by_the_server(server, web):
    signed = ok(run_cli(server, "sign", "/signed/rocket.jpg?w=64", "--exp", "300")).strip()
    assert web.get(server.url + signed, timeout=30).status_code == 200
    tampered = signed.replace("w=64", "w=65")
    assert web.get(server.url + tampered, timeout=30).status_code == 403
    private = ok(run_cli(server, "sign", "/vault/coffee.png?w=40", "--token")).strip()
    resp = web.get(server.url + private, timeout=30)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "BYPASS"


def test_purge_by_path_and_by_prefix(server, web):
    rocket = ["/demo/rocket.jpg?w=101", "/demo/rocket.jpg?w=102"]
    products = ["/demo/products/a.png?w=50", "/demo/products/b.png?w=50"]
    keep = "/demo/coffee.png?w=101"
    cached(web, server, *rocket, *products, keep)

    out = ok(run_cli(server, "purge", "--path", "/demo/rocket.jpg"))
    assert out.startswith("purged 2 variants (purge_id ")
    assert [x_cache(web, server, u) for u in rocket] == ["MISS", "MISS"]
    assert x_cache(web, server, keep) == "HIT"

    out = ok(run_cli(server, "purge", "--prefix", "/demo/products/"))
    assert out.startswith("purged 2 variants")
    assert [x_cache(web, server, u) for u in products] == ["MISS", "MISS"]
    assert x_cache(web, server, keep) == "HIT"


def test_purge_by_tag_everything_and_idempotency_key(server, web):
    tagged = ["/tagged/rocket.jpg?w=60", "/tagged/coffee.png?w=60"]
    wiped = ["/wipe/rocket.jpg?w=70", "/wipe/astronaut.png?w=70"]
    keep = "/demo/astronaut.png?w=60"
    cached(web, server, *tagged, *wiped, keep)

    out = ok(run_cli(server, "purge", "--tag", "project-tagged", "--tag", "no-such-tag"))
    assert out.startswith("purged 2 variants")
    assert [x_cache(web, server, u) for u in tagged] == ["MISS", "MISS"]
    assert x_cache(web, server, keep) == "HIT"

    answer = json.loads(ok(run_cli(server, "purge", "--project", "wipe", "--everything", "--json")))
    assert answer["purged"] == 2 and answer["status"] == "done" and answer["purge_id"]
    assert [x_cache(web, server, u) for u in wiped] == ["MISS", "MISS"]
    assert x_cache(web, server, keep) == "HIT"

    first = ok(run_cli(server, "purge", "--path", "/wipe/rocket.jpg", "--idempotency-key", "cli-k1"))
    again = ok(run_cli(server, "purge", "--path", "/wipe/rocket.jpg", "--idempotency-key", "cli-k1"))
    assert first == again and first.startswith("purged 1 variants")


def test_stats_match_the_requests_made(server, web):
    sizes = []
    for path in ["/counted/rocket.jpg?w=80"] * 3 + ["/counted/coffee.png?w=80"]:
        resp = web.get(server.url + path, timeout=30)
        assert resp.status_code == 200
        sizes.append(len(resp.content))
    assert web.get(server.url + "/counted/missing.jpg?w=80", timeout=30).status_code == 404
    time.sleep(1.0)  # counters are flushed every 0.5 s

    data = json.loads(ok(run_cli(server, "stats", "--project", "counted", "--json")))
    assert {k: data[k] for k in ("requests", "hits", "misses", "errors", "transforms")} == {
        "requests": 5,
        "hits": 2,
        "misses": 2,
        "errors": 1,
        "transforms": 2,
    }
    assert data["hit_ratio"] == 0.5 and data["bytes_served"] == sum(sizes)
    assert data["origin_fetches"] == 3  # two originals and the 404

    table = ok(run_cli(server, "stats", "--project", "counted"))
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in table.splitlines())
    assert rows["requests"] == "5" and rows["hits"] == "2" and rows["misses"] == "2"
    assert rows["hit ratio"] == "50.0%" and rows["bytes served"] == human_bytes(sum(sizes))
    assert rows["origin fetches"] == "3" and rows["transforms"] == "2"

    future = json.loads(
        ok(run_cli(server, "stats", "--project", "counted", "--from", "2100-01-01T00:00:00Z", "--json"))
    )
    assert future["requests"] == 0


def test_default_url_comes_from_port(server):
    data = json.loads(
        ok(run_cli(server, "--json", "stats", env={"SHIELD_URL": None, "PORT": str(server.port)}))
    )
    assert "requests" in data


def test_wrong_token_and_unreachable_server_exit_1(server):
    wrong = run_cli(server, "stats", "--token", "wrong-token-wrong-token")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.count("\n") == 1 and "401 unauthorized" in wrong.stderr
    from_env = run_cli(server, "projects", "list", env={"SHIELD_ADMIN_TOKEN": "wrong-token-wrong-token"})
    assert from_env.returncode == 1 and "401" in from_env.stderr
    gone = run_cli(server, "stats", "--url", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "connection failed" in gone.stderr


def test_projects_round_trip(server, web):
    created = run_cli(
        server,
        "projects",
        "create",
        "made",
        "--origin",
        f"{server.folder}/",
        "--set",
        "quality=70",
        "--set",
        'tags=["made-by-cli"]',
        "--set",
        "private=false",
    )
    assert ok(created).startswith("created project made\n")
    got = json.loads(ok(run_cli(server, "projects", "get", "made", "--json")))
    assert got["quality"] == 70 and got["tags"] == ["made-by-cli"] and got["private"] is False

    def status(path, want):
        deadline = time.time() + 5
        while True:  # every worker sees a change within a second
            code = web.get(server.url + path, timeout=30).status_code
            if code == want or time.time() > deadline:
                return code
            time.sleep(0.2)

    assert status("/made/coffee.png?w=30", 200) == 200

    updated = ok(
        run_cli(server, "projects", "update", "made", "--set", "enabled=false", "--set", "max_width=300")
    )
    assert updated.startswith("updated project made\n") and "max_width" in updated
    got = json.loads(ok(run_cli(server, "projects", "get", "made", "--json")))
    assert got["enabled"] is False and got["max_width"] == 300
    assert status("/made/coffee.png?w=31", 404) == 404

    listed = json.loads(ok(run_cli(server, "projects", "list", "--limit", "2", "--json")))
    assert [p["name"] for p in listed["items"]] == sorted([*PROJECTS, "made"])
    table = ok(run_cli(server, "projects", "list", "--limit", "3")).splitlines()
    assert table[0].split() == ["NAME", "ORIGIN", "DOMAIN", "ENABLED", "PRIVATE", "SIGNED"]
    assert [line.split()[0] for line in table[1:]] == sorted([*PROJECTS, "made"])
    vault = next(line.split() for line in table if line.startswith("vault"))
    assert vault[2:] == ["-", "yes", "yes", "yes"]

    duplicate = run_cli(server, "projects", "create", "made", "--origin", f"{server.folder}/")
    assert duplicate.returncode == 1 and "409" in duplicate.stderr
    invalid = run_cli(server, "projects", "update", "made", "--set", "quality=500")
    assert invalid.returncode == 1 and "400 invalid_param: quality" in invalid.stderr

    assert ok(run_cli(server, "projects", "delete", "made")) == "deleted project made\n"
    missing = run_cli(server, "projects", "get", "made")
    assert missing.returncode == 1 and "404" in missing.stderr and missing.stderr.count("\n") == 1


def test_warm_fills_the_cache_and_reports(server, web, tmp_path):
    lines = [
        "# product shots",
        "/warmp/rocket.jpg?w=120",
        "",
        "/warmp/rocket.jpg?w=121\timage/webp,*/*",
        f"{server.url}/warmp/coffee.png?w=122",
        "   # indented comment",
        "/warmp/astronaut.png?w=123\timage/avif,image/webp",
        "/warmp/products/a.png?w=124",
    ]
    urls = [("/warmp/rocket.jpg?w=120", None), ("/warmp/rocket.jpg?w=121", "image/webp,*/*")]
    urls += [("/warmp/coffee.png?w=122", None), ("/warmp/astronaut.png?w=123", "image/avif,image/webp")]
    urls += [("/warmp/products/a.png?w=124", None)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(lines) + "\n")

    first = run_cli(server, "warm", str(listing), "--concurrency", "3")
    assert first.returncode == 0, first.stderr
    summary = dict(line.split(None, 1) for line in first.stdout.splitlines())
    assert summary["total"] == "5" and summary["ok"] == "5" and summary["failed"] == "0"
    assert summary["MISS"] == "5" and summary["HIT"] == "0"
    assert float(summary["requests/s"]) > 0 and summary["bytes"].endswith("B")
    progress = [json.loads(line) for line in first.stderr.splitlines()]
    assert progress and progress[-1]["event"] == "warm_progress" and progress[-1]["percent"] == 100

    assert [x_cache(web, server, path, accept) for path, accept in urls] == ["HIT"] * 5

    again = json.loads(ok(run_cli(server, "warm", str(listing), "--json")))
    assert again["total"] == 5 and again["cache"] == {"HIT": 5} and again["failed"] == 0
    assert again["bytes"] > 0 and again["seconds"] > 0

    listing.write_text("/warmp/rocket.jpg?w=120\n/warmp/nope.jpg?w=10\n")
    failed = run_cli(server, "warm", str(listing))
    assert failed.returncode == 1
    summary = dict(line.split(None, 1) for line in failed.stdout.splitlines() if not line.startswith(" "))
    assert summary["failed"] == "1 (404: 1)" and summary["ok"] == "1" and summary["HIT"] == "1"
    assert "/warmp/nope.jpg" in failed.stdout
    assert failed.stderr.splitlines()[-1] == "shield: error: 1 of 2 URLs failed"

    from_stdin = run_cli(server, "warm", "-", stdin="/warmp/coffee.png?w=122\n")
    assert from_stdin.returncode == 0 and "HIT" in from_stdin.stdout


def test_keys_create_list_rotate_revoke(server, web):
    created = run_cli(server, "keys", "create", "demo", "--name", "deploy", "--scope", "stats")
    lines = dict(line.split(None, 1) for line in ok(created).splitlines()[1:])
    key_id, secret = lines["id"], lines["secret"]
    assert key_id.startswith("pk_") and secret.startswith("sk_") and lines["scopes"] == "stats"
    assert "shown this once" in created.stderr
    stats = web.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert stats.status_code == 200 and stats.json()["project"] == "demo"

    listed = ok(run_cli(server, "keys", "list", "demo"))
    assert key_id in listed and secret not in listed and "deploy" in listed

    rotated = json.loads(ok(run_cli(server, "--json", "keys", "rotate", "demo", key_id)))
    assert rotated["id"] != key_id and rotated["secret"].startswith("sk_") and rotated["name"] == "deploy"
    assert web.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    row = [line for line in ok(run_cli(server, "keys", "list", "demo")).splitlines() if key_id in line]
    assert row and row[0].rstrip().endswith("yes")

    assert (
        ok(run_cli(server, "keys", "revoke", "demo", rotated["id"])).strip() == f"revoked key {rotated['id']}"
    )
    new_secret = rotated["secret"]
    assert (
        web.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {new_secret}"}).status_code
        == 401
    )
    missing = run_cli(server, "keys", "revoke", "demo", "pk_nosuchkey")
    assert missing.returncode == 1 and "404" in missing.stderr
    bad_scope = run_cli(server, "keys", "create", "demo", "--scope", "everything")
    assert bad_scope.returncode == 2 and bad_scope.stderr.count("\n") == 1


def test_sign_path_style_with_a_key(server, web):
    from tests.origin_server import OriginServer

    with OriginServer() as origin:
        origin.state.put("/img/rocket.jpg", (server.folder / "rocket.jpg").read_bytes())
        auth = {"Authorization": f"Bearer {TOKEN}"}
        table = {"name": "remote", "origin": origin.url + "img/", "allow_private_origin": True}
        assert web.post(server.url + "/v1/projects", headers=auth, json=table, timeout=30).status_code == 201
        try:
            key = web.post(server.url + "/v1/projects/remote/keys", headers=auth, json={}, timeout=30).json()
            image_url = f"127.0.0.1:{origin.port}/img/rocket.jpg"
            before = int(time.time())
            signed = ok(
                run_cli(
                    server,
                    "sign",
                    "--path-style",
                    "--key",
                    key["id"],
                    f"remote/w_120,f_webp/{image_url}",
                    "--exp",
                    "600",
                )
            ).strip()
            path, _, query = signed.partition("?")
            args = dict(urllib.parse.parse_qsl(query))
            assert path == f"/api/v1/remote/w_120,f_webp/{image_url}" and args["key"] == key["id"]
            assert before + 600 <= int(args["exp"]) <= int(time.time()) + 600
            message = f"w_120,f_webp/{image_url}?exp={args['exp']}".encode()
            mac = hmac.new(key["secret"].encode(), message, hashlib.sha256).digest()
            assert args["sig"] == base64.urlsafe_b64encode(mac).decode().rstrip("=")[:32]
            resp = web.get(server.url + signed, timeout=30)
            assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/webp"
            other = run_cli(server, "sign", "--path-style", "--key", key["id"], f"demo/w_10/{image_url}")
            assert other.returncode == 2 and "remote" in other.stderr
            missing = run_cli(server, "sign", "--path-style", f"remote/w_10/{image_url}")
            assert missing.returncode == 2 and "--key" in missing.stderr
        finally:
            web.delete(server.url + "/v1/projects/remote", headers=auth, timeout=30)


def test_purge_a_distribution(server, web):
    cached(web, server, "/wipe/rocket.jpg?w=33", "/wipe/products/a.png?w=33")
    out = ok(
        run_cli(server, "purge", "--distribution", "wipe", "--path", "/rocket.jpg", "--prefix", "/products/")
    )
    assert re.fullmatch(r"purged 2 variants \(purge_id [0-9a-f]{32}\)\n", out)
    assert x_cache(web, server, "/wipe/rocket.jpg?w=33") == "MISS"
    assert x_cache(web, server, "/wipe/products/a.png?w=33") == "MISS"
    both = run_cli(server, "purge", "--distribution", "wipe", "--project", "wipe", "--everything")
    assert both.returncode == 2 and both.stderr.count("\n") == 1


def test_upload_then_assets_list_and_delete(server, web, tmp_path):
    files = []
    for index in range(3):
        path = tmp_path / f"Photo {index}.jpg"
        path.write_bytes((server.folder / "rocket.jpg").read_bytes())
        files.append(str(path))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    result = run_cli(server, "upload", "--project", "demo", *files, str(broken))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    uploaded = [line for line in lines if line.startswith("uploaded ")]
    assert len(uploaded) == 3 and any(
        line.startswith("failed ") and "unsupported_source" in line for line in lines
    )
    progress = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert progress and progress[-1]["event"] == "upload_progress" and progress[-1]["done"] == 4
    url = uploaded[0].split(" -> ")[1].split(" ")[0]
    assert re.search(r"/demo/[a-z0-9]{10}-photo-0\.jpg$", url)
    resp = web.get(server.url + urllib.parse.urlsplit(url).path + "?w=64", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("image/")

    listed = json.loads(ok(run_cli(server, "--json", "assets", "list", "--project", "demo", "--limit", "2")))
    ids = [a["_id"] for a in listed["items"]]
    assert len(ids) >= 3
    table = ok(run_cli(server, "assets", "list", "--project", "demo"))
    assert table.splitlines()[0].split() == ["ID", "PROJECT", "KEY", "SIZE", "PIXELS"] and ids[0] in table
    assert ok(run_cli(server, "assets", "delete", ids[0])).strip() == f"deleted asset {ids[0]}"
    missing = run_cli(server, "assets", "delete", ids[0])
    assert missing.returncode == 1 and "404" in missing.stderr
