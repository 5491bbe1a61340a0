"""Whole processes: gunicorn with two gevent workers sharing one cache."""

import os

import pytest
import requests

from tests import imaging
from tests.conftest import server_config

pytestmark = pytest.mark.slow


def config(tmp_path, folder):
    return server_config(tmp_path, f'[projects.demo]\norigin = "{folder}/"')


def serve_from_each_worker(server, url, want, headers=None, tries=200):
    """Request until each of the workers has answered once; return {pid: response}."""
    by_worker = {}
    for _ in range(tries):
        # A new connection each time, so the kernel spreads them over the workers.
        resp = requests.get(server.url + url, headers={**(headers or {}), "Connection": "close"}, timeout=10)
        by_worker.setdefault(resp.headers.get("X-Served-By"), resp)
        if len(by_worker) >= want:
            break
    return by_worker


def test_two_workers_share_the_cache(gunicorn, tmp_path, folder):
    server = gunicorn(config(tmp_path, folder), workers=2)
    assert len(server.worker_pids()) == 2
    first = requests.get(server.url + "/demo/coffee.png?w=210", timeout=30)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    answers = serve_from_each_worker(server, "/demo/coffee.png?w=210", want=2)
    assert len(answers) == 2, "both workers should have answered"
    for resp in answers.values():
        assert resp.status_code == 200
        assert resp.headers["X-Cache"] == "HIT"
        assert resp.content == first.content
    assert imaging.decode(first.content).size == (210, 140)


def test_cache_survives_a_restart(gunicorn, tmp_path, folder):
    text = config(tmp_path, folder)
    server = gunicorn(text)
    first = requests.get(server.url + "/demo/rocket.jpg?w=99", timeout=30)
    assert first.headers["X-Cache"] == "MISS"
    server.stop()
    again = gunicorn(text)
    resp = requests.get(again.url + "/demo/rocket.jpg?w=99", timeout=30)
    assert resp.headers["X-Cache"] == "HIT" and resp.content == first.content
    assert os.path.isdir(tmp_path / "cache")


def test_large_cached_variants_are_sent_whole(gunicorn, tmp_path, folder):
    """Variants of 32 KB and more live in their own file and go out with sendfile."""
    server = gunicorn(config(tmp_path, folder))
    url = server.url + "/demo/coffee.png?w=500&fmt=png"
    first = requests.get(url, timeout=30)
    assert first.headers["X-Cache"] == "MISS" and len(first.content) > 100_000
    for _ in range(3):
        again = requests.get(url, timeout=30)
        assert again.headers["X-Cache"] == "HIT"
        assert len(again.content) == int(again.headers["Content-Length"]) == len(first.content)
        assert again.content == first.content
    assert imaging.decode(again.content).size == (500, 333)
