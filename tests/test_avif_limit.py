"""avif_max_pixels: AVIFs larger than the limit are encoded as WebP (libaom's memory)."""

import pytest

from shield.image import engine, geometry, probe
from tests import imaging
from tests.conftest import ADMIN_TOKEN
from tests.security import client_of

CHROME_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
LIMIT = 100_000  # rocket.jpg is 640x427 (273,280 px); w=300 is 300x200


def _plan(body, w):
    info = probe.probe(body, 10**9)
    return info, geometry.plan(*info.oriented_size, w, None, "inside")


@pytest.mark.parametrize(("w", "expected"), [(300, "AVIF"), (None, "WEBP")])
def test_render_encodes_webp_past_the_limit(w, expected):
    body = imaging.sample("rocket.jpg")
    info, plan = _plan(body, w)
    out = engine.render(body, info, plan, "avif", 80, avif_max_pixels=LIMIT)
    im = imaging.decode(out.body)
    assert im.format == expected and out.format == expected.lower()
    assert out.content_type == f"image/{expected.lower()}"
    assert im.size == (plan.canvas_w, plan.canvas_h)


def test_no_limit_keeps_avif():
    body = imaging.sample("rocket.jpg")
    info, plan = _plan(body, None)
    assert (
        imaging.decode(engine.render(body, info, plan, "avif", 80, avif_max_pixels=0).body).format == "AVIF"
    )
    assert engine.within_avif_limit("jpeg", plan, 1) == "jpeg"  # only AVIF is limited


@pytest.fixture
def limited(make_app, folder):
    return client_of(
        make_app({"demo": {"origin": str(folder) + "/"}}, avif_max_pixels=LIMIT, admin_token=ADMIN_TOKEN)
    )


@pytest.mark.parametrize("query", ["w=640&fmt=avif", "w=640", "w=640&q=60"])
def test_large_avif_urls_answer_webp(limited, query):
    resp = limited.get(f"/demo/rocket.jpg?{query}", headers={"Accept": CHROME_ACCEPT})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "image/webp"
    im = imaging.decode(resp.data)
    assert im.format == "WEBP" and im.size == (640, 427)
    assert imaging.ssim(im, imaging.decode(imaging.sample("rocket.jpg"))) > 0.9
    again = limited.get(f"/demo/rocket.jpg?{query}", headers={"Accept": CHROME_ACCEPT})
    assert again.headers["X-Cache"] == "HIT" and again.data == resp.data


def test_small_avif_urls_stay_avif(limited):
    resp = limited.get("/demo/rocket.jpg?w=300&fmt=avif", headers={"Accept": CHROME_ACCEPT})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/avif"
    assert imaging.decode(resp.data).size == (300, 200)


def test_optimize_records_the_format_it_made(limited):
    resp = limited.post(
        "/v1/optimize",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": CHROME_ACCEPT},
        json={"project": "demo", "source": "/rocket.jpg"},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["format"] == "webp" and body["url"].endswith(".webp")
    served = limited.get("/c/" + body["url"].rsplit("/c/", 1)[1])
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
    assert len(served.data) == body["bytes"] and imaging.decode(served.data).size == (640, 427)
