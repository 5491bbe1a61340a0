"""The real daemons of cluster mode for tests: redis-server and HAProxy on free loopback ports."""

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import ROOT, Gunicorn, free_port, server_config

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def need(binary, package):
    if not os.path.exists(binary):
        pytest.skip(f"no {package} on this machine: apt-get install {package} (make test does it as root)")


class RedisServer:
    def __init__(self, port=None):
        need(REDIS, "redis-server")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


class HAProxy:
    """HAProxy with deploy/haproxy.cfg, its ports and servers filled in."""

    def __init__(self, nodes):
        need(HAPROXY, "haproxy")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nodes = nodes
        self.proc = None
        self.path = None

    def start(self, tmp_path):
        with open(os.path.join(ROOT, "deploy", "haproxy.cfg")) as fh:
            template = fh.read()
        servers = "\n".join(
            f"    server node{i + 1} 127.0.0.1:{node.port} id {i + 1} check inter 500ms fall 2 rise 2"
            for i, node in enumerate(self.nodes)
        )
        text = template.replace("bind :8080", f"bind 127.0.0.1:{self.port}")
        start, end = text.index("    # servers:begin"), text.index("    # servers:end")
        text = text[:start] + servers + "\n" + text[end:]
        self.path = tmp_path / "haproxy.cfg"
        self.path.write_text(text)
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(self.path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()


def node_config(tmp_path, name, redis_url, projects, assets, extra=""):
    """A node's configuration: its own cache and state, the shared Redis and asset folder."""
    base = tmp_path / name
    base.mkdir(exist_ok=True)
    text = server_config(
        base,
        projects,
        extra=f'redis_url = "{redis_url}"\nnode_id = "{name}"\nasset_dir = "{assets}"\nlog_level = "warning"\n{extra}',
    )
    path = base / "shield.toml"
    path.write_text(text)
    return path


class Node(Gunicorn):
    def wait_ready(self, timeout=20):
        import requests

        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("the node did not become ready")
