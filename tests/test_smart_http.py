"""blur, lqip, fit=face and fit=auto through HTTP."""

import json

import numpy as np
import pytest
from PIL import Image

from shield.image import placeholders
from tests import imaging

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FACE_AT = (1400, 40)  # where the astronaut is pasted in the wide picture


def wide_picture():
    astronaut = imaging.decode(imaging.sample("astronaut.png")).convert("RGB")
    wide = Image.new("RGB", (2000, 600), (128, 128, 128))
    wide.paste(astronaut, FACE_AT)
    return wide


def offset_in(crop, picture):
    """The x at which a same-height crop was cut from the picture (scale 1), by least difference."""
    strip = np.asarray(crop.convert("L"), dtype=np.int32)[200:400]
    whole = np.asarray(picture.convert("L"), dtype=np.int32)[200:400]
    width = strip.shape[1]
    errors = [np.abs(whole[:, x : x + width] - strip).mean() for x in range(whole.shape[1] - width + 1)]
    return int(np.argmin(errors)), min(errors)


@pytest.fixture
def smart(make_app, folder):
    (folder / "wide.jpg").write_bytes(imaging.encode(wide_picture(), "JPEG", quality=92))
    flat = Image.new("RGB", (1600, 600), (200, 200, 200))
    obj = imaging.decode(imaging.sample("coffee.png")).convert("RGB").crop((200, 100, 320, 220))
    flat.paste(obj, (1300, 300))
    (folder / "object.png").write_bytes(imaging.encode(flat, "PNG"))
    quads = Image.new("RGB", (200, 200))
    for (x, y), colour in zip(
        [(0, 0), (100, 0), (0, 100), (100, 100)],
        [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60)],
        strict=True,
    ):
        quads.paste(Image.new("RGB", (100, 100), colour), (x, y))
    (folder / "quads.png").write_bytes(imaging.encode(quads, "PNG"))
    app = make_app({"demo": {"origin": str(folder) + "/"}}, admin_token=TOKEN)
    return app, app.test_client()


def astronaut_face_in_wide():
    """The face's box in the wide picture, from the detector on the astronaut alone."""
    from shield.image import smartcrop

    rgb = np.asarray(imaging.decode(imaging.sample("astronaut.png")).convert("RGB"))
    (x, y, w, h), *_ = smartcrop.faces(rgb)
    return x + FACE_AT[0], y + FACE_AT[1], w, h


def test_fit_face_keeps_the_face_where_cover_would_not(smart):
    _app, c = smart
    resp = c.get("/demo/wide.jpg?w=200&h=600&fit=face&fmt=png")
    assert resp.status_code == 200 and resp.headers["X-Smart-Crop"] == "ok"
    assert "fit-face" in resp.headers["Cache-Tag"].split(",")
    crop = imaging.decode(resp.data).convert("RGB")
    assert crop.size == (200, 600)
    fx, fy, fw, fh = astronaut_face_in_wide()
    # Where does the crop sit in the wide picture?
    wide = wide_picture()
    left, error = offset_in(crop, wide)
    assert error < 8
    assert left <= fx and fx + fw <= left + 200, (left, fx, fw)
    cover = c.get("/demo/wide.jpg?w=200&h=600&fit=cover&fmt=png")
    assert "X-Smart-Crop" not in cover.headers
    # A centred cover crop (x 900-1100) holds only the plain background: no face in it.
    assert np.asarray(imaging.decode(cover.data).convert("L"), dtype=np.float64).std() < 3
    # Another size reuses the stored detection and still finds the face; the second call is a HIT.
    other = c.get("/demo/wide.jpg?w=100&h=300&fit=face")
    assert other.headers["X-Smart-Crop"] == "ok"
    assert c.get("/demo/wide.jpg?w=100&h=300&fit=face").headers["X-Cache"] == "HIT"


def test_fit_face_without_a_face_falls_back_to_a_centred_crop(smart):
    _app, c = smart
    face = c.get("/demo/rocket.jpg?w=100&h=100&fit=face&fmt=png")
    cover = c.get("/demo/rocket.jpg?w=100&h=100&fit=cover&fmt=png")
    assert face.status_code == 200 and "X-Smart-Crop" not in face.headers
    assert imaging.ssim(imaging.decode(face.data), imaging.decode(cover.data)) > 0.99


def test_fit_auto_keeps_the_salient_object(smart):
    _app, c = smart
    resp = c.get("/demo/object.png?w=300&h=600&fit=auto&fmt=png")
    assert resp.headers["X-Smart-Crop"] == "ok" and "fit-auto" in resp.headers["Cache-Tag"]
    crop = np.asarray(imaging.decode(resp.data).convert("RGB"), dtype=np.int32)
    # The object (at x 1300-1420 of 1600) is in the crop: plenty of pixels far from the flat grey.
    differs = (np.abs(crop - 200).sum(axis=2) > 60).sum()
    assert differs > 120 * 120 * 0.5
    cover = np.asarray(
        imaging.decode(c.get("/demo/object.png?w=300&h=600&fmt=png").data).convert("RGB"), dtype=np.int32
    )
    assert (np.abs(cover - 200).sum(axis=2) > 60).sum() < 100


def test_blurhash_answers_json_that_decodes_to_the_quadrant_colours(smart):
    _app, c = smart
    resp = c.get("/demo/quads.png?blur=true&w=100")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    body = json.loads(resp.data)
    assert (body["width"], body["height"]) == (100, 100)
    decoded = Image.fromarray(placeholders.decode_blurhash(body["blurhash"], 40, 40))
    expected = [(200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60)]
    boxes = [(0, 0, 20, 20), (20, 0, 40, 20), (0, 20, 20, 40), (20, 20, 40, 40)]
    means = [imaging.mean_color(decoded, box) for box in boxes]
    for got, want in zip(means, expected, strict=True):
        nearest = min(expected, key=lambda e: sum(abs(a - b) for a, b in zip(got, e, strict=True)))
        assert nearest == want, (got, want)
    assert c.get("/demo/quads.png?blur=true&w=100").headers["X-Cache"] == "HIT"
    longer = json.loads(c.get("/demo/quads.png?blur=true&w=100&bx=9&by=9").data)["blurhash"]
    assert len(longer) == 4 + 2 * 9 * 9 and len(body["blurhash"]) == 4 + 2 * 4 * 3
    assert c.get("/demo/quads.png?blur=true&bx=10").status_code == 400


@pytest.mark.parametrize(
    ("accept", "ctype"),
    [("image/avif,image/webp", "image/avif"), ("image/webp", "image/webp"), ("*/*", "image/jpeg")],
)
def test_lqip_is_tiny_and_negotiated(smart, accept, ctype):
    _app, c = smart
    resp = c.get("/demo/coffee.png?lqip=true&w=600", headers={"Accept": accept})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == ctype
    im = imaging.decode(resp.data)
    assert max(im.size) <= 64 and im.size == (64, 43)
    assert len(resp.data) < 1024
    assert c.get("/demo/coffee.png?lqip=true&w=600", headers={"Accept": accept}).headers["X-Cache"] == "HIT"


def test_placeholders_and_smart_crops_are_purged_with_their_file(smart):
    _app, c = smart
    urls = ["/demo/wide.jpg?blur=true", "/demo/wide.jpg?lqip=true", "/demo/wide.jpg?w=100&h=300&fit=face"]
    for url in urls:
        c.get(url)
    assert [c.get(u).headers["X-Cache"] for u in urls] == ["HIT"] * 3
    assert c.post("/v1/purge", headers=AUTH, json={"paths": ["/demo/wide.jpg"]}).get_json()["purged"] == 3
    assert [c.get(u).headers["X-Cache"] for u in urls] == ["MISS"] * 3
    assert c.post("/v1/purge", headers=AUTH, json={"tags": ["fit-face"]}).get_json()["purged"] == 1
