import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from shield import logs
from shield.api.web import create_app
from tests.origin_server import OriginServer
from tests.security import client_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_TOKEN = "test-admin-token-0123456789"


def server_config(tmp_path, projects, extra=""):
    """TOML for a gunicorn test server: a temporary cache and state, the test admin token."""
    return f"""
[shield]
cache_dir = "{tmp_path}/cache"
state_dir = "{tmp_path}/state"
admin_token = "{ADMIN_TOKEN}"
served_by_header = true
{extra}

{projects}
"""


@pytest.fixture(autouse=True)
def _fresh_fault_log():
    logs.reset_faults()
    yield


@pytest.fixture
def encodes(monkeypatch):
    """Every call the engine makes to pillow_codecs.encode, as (image, format, setting, options)."""
    from shield.image import pillow_codecs  # noqa: PLC0415 - only the engine's tests need it

    seen = []
    real_encode = pillow_codecs.encode

    def recording(im, fmt, setting, **kw):
        seen.append((im, fmt, setting, kw))
        return real_encode(im, fmt, setting, **kw)

    monkeypatch.setattr(pillow_codecs, "encode", recording)
    return seen


@pytest.fixture
def origin():
    with OriginServer() as server:
        yield server


@pytest.fixture
def folder(tmp_path):
    """A folder origin holding the repository's samples."""
    root = tmp_path / "images"
    shutil.copytree(os.path.join(ROOT, "samples"), root)
    return root


@pytest.fixture
def make_app(tmp_path):
    """create_app with a temporary cache; `projects` maps names to project tables."""

    def build(projects, **shield):
        config = {
            "shield": {
                "cache_dir": str(tmp_path / "cache"),
                "state_dir": str(tmp_path / "state"),
                "origin_retry_interval": 0.3,
                "origin_timeout": 3,
                **shield,
            },
            "projects": projects,
        }
        return create_app(config)

    return build


@pytest.fixture
def app(make_app, folder):
    return make_app({"demo": {"origin": str(folder) + "/"}})


@pytest.fixture
def client(app):
    return app.test_client()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """shield under gunicorn with gevent workers, started from a config file."""

    def __init__(self, config_path, workers=2, env=None, prefix=()):
        self.prefix = list(prefix)  # a command that runs gunicorn (prlimit ...)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SHIELD_CONFIG": str(config_path),
            "WEB_CONCURRENCY": str(workers),
            "SHIELD_BIND": f"127.0.0.1:{self.port}",
            **(env or {}),
        }
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # SIGINT: gunicorn's quick shutdown (SIGTERM would wait out keep-alive connections).
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@pytest.fixture
def gunicorn(tmp_path):
    started = []

    def start(config_text, workers=2, env=None, prefix=()):
        path = tmp_path / f"shield-{len(started)}.toml"
        path.write_text(config_text)
        server = Gunicorn(path, workers=workers, env=env, prefix=prefix).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def corpus_app(tmp_path_factory):
    """The committed corpus (tests/corpus) served as project `corpus`, one app per module."""
    tmp = tmp_path_factory.mktemp("corpus")
    shutil.copytree(os.path.join(os.path.dirname(__file__), "corpus"), tmp / "files")
    app = create_app(
        {
            "shield": {
                "cache_dir": str(tmp / "cache"),
                "state_dir": str(tmp / "state"),
                "log_level": "warning",
            },
            "projects": {
                "corpus": {"origin": str(tmp / "files") + "/", "rate_limit": 0, "rate_limit_miss": 0}
            },
        }
    )
    return client_of(app)
