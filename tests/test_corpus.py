"""Real files of public corpora (tests/corpus/SOURCES.md), through the app: never a 500,
and the pixels as a viewer shows them, against references decoded by Pillow alone."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from shield.image import engine, geometry, probe
from tests import imaging

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
PNGSUITE = sorted(os.listdir(os.path.join(CORPUS, "pngsuite")))
URLS = ("w=40", "w=40&fmt=jpeg", "w=40&fmt=webp", "w=40&fmt=avif", "w=40&h=30&fit=contain", "")


@pytest.mark.parametrize("name", PNGSUITE)
def test_every_pngsuite_file_is_served_or_refused_never_a_500(corpus_app, name):
    damaged = name.startswith("x")
    size = None
    if not damaged:
        with Image.open(os.path.join(CORPUS, "pngsuite", name)) as im:
            size = im.size
    for query in URLS:
        resp = corpus_app.get(
            f"/corpus/pngsuite/{name}?{query}", headers={"Accept": "image/avif,image/webp,*/*"}
        )
        if damaged:
            assert resp.status_code in (415, 502), (query, resp.status_code)
            assert resp.get_json()["error"]["code"] in ("unsupported_source", "origin_error")
            continue
        assert resp.status_code == 200, (query, resp.status_code, resp.get_data()[:200])
        out = imaging.decode(resp.get_data())
        if query.startswith("w=40&h=30"):
            s = min(40 / size[0], 30 / size[1])  # contain never enlarges: past 1, a smaller box
            assert out.size == ((max(1, round(40 / s)), max(1, round(30 / s))) if s > 1 else (40, 30))
        elif query:
            w, h = size
            assert out.size == (min(40, w), max(1, round(h * min(40, w) / w)))
        else:
            assert out.size == size


def _reference(name):
    """What a viewer shows: kimono.avif as Pillow decodes it (it has no transformative property),
    or the corpus's own kimono.crop.png for the cropped files."""
    source = "kimono.crop.png" if name.endswith("crop") else "kimono.avif"
    with Image.open(os.path.join(CORPUS, "avif", source)) as im:
        return im.convert("RGB")


@pytest.mark.parametrize(
    "name",
    [
        "kimono.rotate90",
        "kimono.rotate270",
        "kimono.mirror-horizontal",
        "kimono.mirror-vertical",
        "kimono.mirror-vertical.rotate270",
        "kimono.crop",
        "kimono.mirror-vertical.rotate270.crop",
    ],
)
@pytest.mark.parametrize("fmt", ["avif", "jpeg", "png", "webp"])
def test_avif_irot_imir_and_clap_are_applied(corpus_app, name, fmt):
    reference = _reference(name)
    resp = corpus_app.get(f"/corpus/avif/{name}.avif?w=200&fmt={fmt}")
    assert resp.status_code == 200, resp.get_data()[:200]
    out = imaging.decode(resp.get_data()).convert("RGB")
    w, h = reference.size
    assert out.size == (200, round(h * 200 / w))  # upright (and cropped) before any decoding
    assert imaging.ssim(out, reference.resize(out.size, Image.LANCZOS)) > 0.9
    info = corpus_app.get(f"/corpus/avif/{name}.avif?blur=true").get_json()
    assert (info["width"], info["height"]) == reference.size


def test_the_corpus_is_what_sources_md_lists():
    with open(os.path.join(CORPUS, "SOURCES.md")) as fh:
        listed = fh.read()
    for folder in ("avif", "heic", "exif", "color", "animation", "tiff", "webp", "png"):
        assert f"## `{folder}/`" in listed, folder
        for name in os.listdir(os.path.join(CORPUS, folder)):
            assert f"`{name}`" in listed, name
    assert len(PNGSUITE) == 175 and "175 PNG" in listed
    for n in PNGSUITE:
        with open(os.path.join(CORPUS, "pngsuite", n), "rb") as fh:
            signature = fh.read(8)
        if not n.startswith("x"):  # the x* files are damaged on purpose, some in their signature
            assert signature == b"\x89PNG\r\n\x1a\n", n


def _on_white(body):
    im = Image.open(io.BytesIO(body)).convert("RGBA")
    canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
    canvas.alpha_composite(im)
    return np.asarray(canvas.convert("RGB"), dtype=float)


@pytest.mark.parametrize("name", [n for n in PNGSUITE if not n.startswith("x")])
def test_gama_pngs_look_the_same_in_every_output_format(name):
    """A PNG's gAMA (most of the PngSuite says 1.0: linear light) is applied once, the same
    way for every encoder; the reference is Pillow's decode with the chunk's gamma applied."""
    with open(os.path.join(CORPUS, "pngsuite", name), "rb") as fh:
        body = fh.read()
    info = probe.probe(body, 10**9)
    plan = geometry.plan(info.width, info.height, None, None, "inside")
    means = {
        fmt: _on_white(engine.render(body, info, plan, fmt, 95).body).mean()
        for fmt in ("png", "jpeg", "webp", "avif")
    }
    # Lossy chroma on the suite's saturated test bars costs up to ~8 levels; gAMA mistakes cost 20-90.
    assert max(means.values()) - min(means.values()) < 10, means
    with Image.open(io.BytesIO(body)) as im:
        gamma = im.info.get("gamma")
        opaque = im.mode in ("RGB", "L") and "transparency" not in im.info
        source = np.asarray(im.convert("RGB"), dtype=float) if opaque else None
    # (Gammas above 1, the suite's g25 files, are left as ImageMagick reads them: not checked here.)
    if gamma and gamma <= 1.0 and opaque:
        reference = 255 * (source / 255) ** (1 / (2.2 * gamma))  # sample -> light -> sRGB (2.2)
        png = _on_white(engine.render(body, info, plan, "png", 95).body)
        assert abs(png.mean() - reference.mean()) < 6, (png.mean(), reference.mean(), gamma)
