"""transform_timeout: a transform past its budget ends, answers 503 overloaded, stores nothing."""

import io

import numpy as np
import pytest
import requests
from PIL import Image

from shield.image import budget, engine, geometry, probe
from tests import imaging
from tests.conftest import server_config


def noisy_png(width=3000, height=2000):
    """A PNG that takes ImageMagick a good half second to decode (noise does not compress)."""
    rng = np.random.default_rng(7)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        out, "PNG", compress_level=1
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def big_png():
    return noisy_png()


def render(body, w, fmt="png"):
    info = probe.probe(body, 10**9)
    return engine.render(body, info, geometry.plan(*info.oriented_size, w, None, "inside"), fmt, 80)


def test_imagemagick_stops_when_the_budget_is_spent(big_png):
    budget.start(0.02)
    try:
        with pytest.raises(budget.TransformTimeout) as caught:
            render(big_png, 300)
    finally:
        budget.stop()
    assert caught.value.status == 503 and caught.value.code == "overloaded"
    assert "transform_timeout (0.02 s)" in str(caught.value)
    # The same thread with no budget: the whole transform, right.
    out = render(big_png, 300)
    assert engine.dimensions(out.body, "png") == (300, 200)


def test_pillow_steps_check_the_budget_too():
    # AVIF decodes through libavif, outside ImageMagick: the steps after it check the budget.
    body = imaging.encode(imaging.halves(800, 600), "AVIF", quality=60)
    budget.start(0.0)
    try:
        with pytest.raises(budget.TransformTimeout):
            render(body, 200, "jpeg")
    finally:
        budget.stop()


def test_gunicorn_answers_503_and_the_worker_lives_on(gunicorn, tmp_path, big_png):
    root = tmp_path / "origin"
    root.mkdir()
    (root / "big.png").write_bytes(big_png)
    (root / "small.jpg").write_bytes(imaging.sample("rocket.jpg"))
    projects = f'[projects.demo]\norigin = "{root}/"\nrate_limit = 0\nrate_limit_miss = 0\n'
    server = gunicorn(server_config(tmp_path, projects, extra="transform_timeout = 0.1"), workers=1)
    small = requests.get(server.url + "/demo/small.jpg?w=40", timeout=30)
    assert small.status_code == 200
    worker = small.headers["X-Served-By"]
    for _ in range(2):  # the second is no cached remnant of the first
        slow = requests.get(server.url + "/demo/big.png?w=2000&fmt=png", timeout=30)
        assert slow.status_code == 503, slow.content[:200]
        assert slow.json()["error"]["code"] == "overloaded"
        assert slow.headers["Retry-After"] == "1"
        assert slow.headers["X-Served-By"] == worker  # the same worker, not a restarted one
    again = requests.get(server.url + "/demo/small.jpg?w=60", timeout=30)
    assert again.status_code == 200 and again.headers["X-Served-By"] == worker
    assert engine.dimensions(again.content, "jpeg")[0] == 60
