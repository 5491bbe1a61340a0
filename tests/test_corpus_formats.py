"""Public corpora files of every format (tests/corpus/SOURCES.md) through the app: each file good
or refused the same way for every client, upright, with its alpha and frames, and its pixels
within a stated difference of a reference made by Pillow, pillow-heif and ImageCms alone."""

import contextlib
import io
import os

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, ImageSequence

CORPUS = os.path.join(os.path.dirname(__file__), "corpus")
FOLDERS = ("heic", "exif", "color", "animation", "tiff", "webp", "png")
ACCEPTS = {"modern": "image/avif,image/webp,*/*", "legacy": "image/png,image/jpeg,*/*"}
URLS = (
    "",
    "w=50",
    "w=50&h=40&fit=contain",
    "w=50&h=40&fit=cover",
    "w=50&fmt=avif",
    "w=50&fmt=png",
    "lqip=true",
)
# Damaged or of a kind shield does not decode: refused, the same way for every client.
REFUSED = {
    "heic/unci32.heif",  # ISO 23001-17 uncompressed: libheif hands back no planes
    "heic/lightning_mini.heif",  # HEIF's low-overhead `mini` form (mif3): no meta box to read a size from
    "tiff/crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif",
    "tiff/crash-1185209cf7655b5aed8ae5e77784dfdd18ab59e9.tif",
    "tiff/crash-2020-10-test.tif",
}
# Where Pillow's decode is not what browsers show (each checked in Chromium), the reference
# is corrected: the test asserts the browser's reading.
BROWSER_ALPHA = {
    # tRNS grey 255 in a 1-bit PNG is out of range: libpng and Chromium match no pixel to it
    # (opaque); Pillow makes the white pixels transparent.
    "png/1_trns.png": False,
}
# Alpha at (x, y) of each frame, as Chromium's ImageDecoder composites dispose_bgnd.gif: a frame
# disposed "to background" leaves its area transparent (Pillow paints the background colour).
_SKY, _FIRST, _SECOND = (2, 2), (10, 15), (50, 50)
BROWSER_FRAMES = {
    "animation/dispose_bgnd.gif": {
        0: {_SKY: 255, _FIRST: 255, _SECOND: 255},
        2: {_SKY: 255, _FIRST: 0, _SECOND: 255},
        4: {_SKY: 255, _FIRST: 0, _SECOND: 0},
    }
}
FILES = sorted(f"{d}/{n}" for d in FOLDERS for n in os.listdir(os.path.join(CORPUS, d)))
SRGB = ImageCms.createProfile("sRGB")


@pytest.fixture(scope="module")
def client(corpus_app):
    """The corpus served as project `corpus` (conftest's fixture)."""
    return corpus_app


def get(client, name, query="", accept="modern"):
    return client.get(f"/corpus/{name}?{query}", headers={"Accept": ACCEPTS[accept]})


def reference(name):
    """What a viewer shows, decoded without shield: upright, sRGB (ImageCms from the embedded profile), RGBA."""
    path = os.path.join(CORPUS, name)
    im = None
    if name.endswith((".heic", ".heif")):
        import pillow_heif

        with contextlib.suppress(RuntimeError):  # AV1 inside: Pillow's libavif below
            im = pillow_heif.open_heif(path, convert_hdr_to_8bit=True).to_pillow()
    if im is None:
        with Image.open(path) as opened:
            opened.load()
            im = opened.copy()
            im.info = dict(opened.info)
    if im.mode in ("I;16", "I;16B", "I;16L"):
        im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc)) if icc and b"sRGB" not in icc[:512] else None
    except OSError:  # a profile that does not parse is ignored, as browsers ignore it
        src = None
    if src is not None:
        alpha = im.getchannel("A") if "A" in im.getbands() else None
        im = ImageCms.profileToProfile(
            im.convert("CMYK" if im.mode == "CMYK" else "RGB"), src, SRGB, outputMode="RGB"
        )
        if alpha is not None:
            im.putalpha(alpha)
    return im.convert("RGBA")


def on_white(im):
    im = im.convert("RGBA")
    canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
    canvas.alpha_composite(im)
    return np.asarray(canvas.convert("RGB"), dtype=float)


def difference(a, b):
    """Mean absolute difference in 0-255 levels, both flattened on white."""
    return float(np.abs(on_white(a) - on_white(b.resize(a.size, Image.Resampling.LANCZOS))).mean())


@pytest.mark.parametrize("name", FILES)
def test_every_file_is_good_or_refused_the_same_way_for_every_client(client, name):
    refused = name in REFUSED
    for query in URLS:
        for accept in ACCEPTS:
            resp = get(client, name, query, accept)
            assert resp.status_code != 500
            if refused:
                assert resp.status_code in (415, 502), (query, accept, resp.status_code)
                assert resp.get_json()["error"]["code"] in ("unsupported_source", "origin_error")
            else:
                assert resp.status_code == 200, (query, accept, resp.get_data()[:200])


@pytest.mark.parametrize("name", [f for f in FILES if f not in REFUSED])
def test_sizes_alpha_and_pixels_match_the_reference(client, name):
    ref = reference(name)
    resp = get(client, name, "w=50&fmt=png")
    out = Image.open(io.BytesIO(resp.get_data()))
    w, h = ref.size
    assert out.size == (min(50, w), max(1, round(h * min(50, w) / w)))  # upright, before decoding
    transparent = BROWSER_ALPHA.get(name, ref.getchannel("A").getextrema()[0] < 128)
    assert (out.convert("RGBA").getchannel("A").getextrema()[0] < 128) == transparent
    # Lanczos both sides; what differs is shield's colour management, gamma and orientation.
    assert difference(out, ref) < 6, name
    still = get(client, name, "w=50&fmt=jpeg")
    assert difference(Image.open(io.BytesIO(still.get_data())), ref) < 10  # JPEG's own loss on top


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_exif_orientations_come_out_upright(client, orientation):
    upright = reference("exif/Landscape_1.jpg")
    resp = get(client, f"exif/Landscape_{orientation}.jpg", "w=300")
    assert resp.headers["Content-Type"] == "image/avif"
    out = Image.open(io.BytesIO(resp.get_data()))
    assert out.size == (300, 200)
    assert difference(out, upright) < 6


def test_an_embedded_profile_is_applied_red_stays_red(client):
    """The file's own numbers are not sRGB: unconverted, the red at 12 o'clock is another colour."""
    for name in (
        "color/red-at-12-oclock-with-color-profile.jpg",
        "color/red-at-12-oclock-with-color-profile-lossy.avif",
    ):
        ref = reference(name)
        raw = Image.open(os.path.join(CORPUS, name)).convert("RGB")
        for fmt in ("png", "jpeg", "webp", "avif"):
            out = Image.open(io.BytesIO(get(client, name, f"w=200&fmt={fmt}").get_data()))
            assert difference(out, ref) < 8, (name, fmt)
        assert difference(raw.resize((200, 200)), ref) > 10  # the profile matters here


@pytest.mark.parametrize("name", [f for f in FILES if f.startswith("animation/")])
def test_animations_stay_animated_and_are_framed_per_frame(client, name):
    with Image.open(os.path.join(CORPUS, name)) as im:
        frames = [f.convert("RGBA") for f in ImageSequence.Iterator(im)]  # composited by Pillow
    modern = get(client, name, "w=80&h=80&fit=contain")
    legacy = get(client, name, "w=80&h=80&fit=contain", "legacy")
    assert modern.headers["Content-Type"] == "image/webp"
    assert legacy.headers["Content-Type"] == "image/gif"
    for resp in (modern, legacy):
        shown = frames_shown(resp.get_data())
        assert len(shown) == len(frames)
        for index in sorted({0, len(frames) // 2, len(frames) - 1}):
            frame = shown[index]
            assert frame.size == (80, 80) or max(frames[0].size) < 80
            # The letterbox: the frame centred, the bars transparent, on every frame.
            got = frame.crop(_content_box(frames[0].size, frame.size))
            if name in BROWSER_FRAMES:
                for (x, y), alpha in BROWSER_FRAMES[name][index].items():
                    scale = got.width / frames[0].width
                    assert got.getpixel((round(x * scale), round(y * scale)))[3] == alpha, (name, index, x, y)
            else:
                assert difference(got, frames[index]) < 12, (name, index)
    for accept, want in (("legacy", ("image/png", "image/jpeg")), ("modern", ("image/avif",))):
        lqip = get(client, name, "lqip=true", accept)
        assert lqip.headers["Content-Type"] in want  # a still the client shows, never a WebP it cannot
        assert getattr(Image.open(io.BytesIO(lqip.get_data())), "n_frames", 1) == 1


def frames_shown(body):
    """An output's frames as a browser composites them. GIFs through ImageMagick's coalesce:
    Pillow paints a frame disposed "to background" with the background colour, where browsers
    (and ImageMagick) leave it transparent."""
    if body[:3] != b"GIF":
        with Image.open(io.BytesIO(body)) as im:
            return [f.convert("RGBA") for f in ImageSequence.Iterator(im)]
    from wand.image import Image as Wand

    with Wand(blob=body) as img:
        img.coalesce()
        return [
            Image.open(io.BytesIO(frame.clone().make_blob("PNG"))).convert("RGBA") for frame in img.sequence
        ]


def _content_box(src, canvas):
    s = min(canvas[0] / src[0], canvas[1] / src[1], 1)
    w, h = max(1, round(src[0] * s)), max(1, round(src[1] * s))
    x, y = (canvas[0] - w) // 2, (canvas[1] - h) // 2
    return x, y, x + w, y + h


def test_heic_alpha_and_sizes(client):
    out = Image.open(io.BytesIO(get(client, "heic/colors-with-alpha.heic", "fmt=png").get_data()))
    alpha = reference("heic/colors-with-alpha.heic").getchannel("A")
    assert out.mode == "RGBA" and out.getchannel("A").getextrema() == alpha.getextrema() == (129, 255)
    hevc = Image.open(io.BytesIO(get(client, "heic/hevc32.heif", "fmt=png").get_data()))
    assert hevc.size == (32, 32)  # its clap: 64x64 coded, 32x32 shown


def test_a_heic_thumbnail_serves_small_variants_alike():
    """A variant at most half a stored thumbnail's size is made from the thumbnail (libheif
    decodes it in a few ms); it looks like the full image shrunk."""
    from shield.image import decode, engine, geometry, probe

    with open(os.path.join(CORPUS, "heic/colors-with-alpha-thumbnail.heic"), "rb") as fh:
        body = fh.read()
    info = probe.probe(body, 10**9)
    small = decode.decode(body, info, (20, 20)).frames[0]
    full = decode.decode(body, info, None).frames[0]
    assert small.size == (64, 64) and full.size == (72, 72)  # the thumbnail, and the image
    out = engine.render(body, info, geometry.plan(72, 72, 20, None, "inside"), "png", 80).body
    got = Image.open(io.BytesIO(out))
    assert got.size == (20, 20) and got.mode == "RGBA"
    assert difference(got, full.convert("RGBA")) < 6
