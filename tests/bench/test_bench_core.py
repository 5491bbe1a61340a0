"""Timings of the core code paths: the engine, the cache lookup, key building, Accept
negotiation, signature checks and a whole cached hit.

Under `make test` (--benchmark-disable) each runs once as a plain test and checks its
result; `make bench` runs them with --benchmark-enable and prints the timings.
"""

import io
import os
import shutil

import pytest
from PIL import Image

from shield import params
from shield.cache.store import Store, variant_key_of
from shield.errors import InvalidSignature
from shield.guard import signing
from shield.image import engine, geometry, negotiate, probe, webpscale

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOX = (400, 300)
MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG", "webp": b"RIFF", "avif": b"ftyp"}
BROWSERS = {
    "chrome": ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif"),
    "safari-16": (
        "image/webp,image/avif,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        "avif",
    ),
    "firefox-old": ("image/webp,*/*", "webp"),
    "curl": ("*/*", "other"),
    "refuses-avif": ("image/avif;q=0,image/webp,*/*;q=0.8", "webp"),
}


@pytest.fixture(scope="module")
def photo():
    """samples/rocket.jpg scaled to 1600 px wide: a typical photo to shrink."""
    with Image.open(os.path.join(ROOT, "samples", "rocket.jpg")) as im:
        big = im.convert("RGB").resize((1600, round(1600 * im.height / im.width)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    big.save(out, "JPEG", quality=90)
    body = out.getvalue()
    return body, probe.probe(body, 10**9)


@pytest.mark.parametrize("fit", ["cover", "contain", "fill", "inside"])
@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif", "png"])
def test_engine_render(benchmark, photo, fmt, fit):
    body, info = photo
    src_w, src_h = info.oriented_size
    plan = geometry.plan(src_w, src_h, *BOX, fit)
    out = benchmark(engine.render, body, info, plan, fmt, 80)
    assert out.body[:12].find(MAGIC[fmt]) in (0, 4)
    with Image.open(io.BytesIO(out.body)) as im:
        im.load()
        assert im.size == (out.width, out.height) == (plan.canvas_w, plan.canvas_h)
    if fit == "inside":
        assert im.size == (400, round(400 * src_h / src_w))
    else:
        assert im.size == BOX


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "cache"), 10**9)


@pytest.mark.parametrize("size", [20_000, 120_000], ids=["in-sqlite", "as-file"])
def test_cache_lookup(benchmark, store, size):
    """A stored variant read back: small ones live in SQLite, large ones in files."""
    key = variant_key_of("demo", "photos/rocket.jpg", "v1", "img:640x:inside:q80:webp", "-")
    body = (bytes(range(256)) * (size // 256 + 1))[:size]
    header = {"content_type": "image/webp", "etag": '"e1"', "width": 640, "height": 427}
    assert store.put_variant(key, header, body, "demo", "photos/rocket.jpg", ["project-demo"])

    def lookup():
        entry = store.get_variant(key)
        return entry, entry.read_body()

    entry, got = benchmark(lookup)
    assert got == body and entry.size == size
    assert entry.header["content_type"] == "image/webp" and entry.header["etag"] == '"e1"'
    assert store.get_variant(key.replace("v1", "v2")) is None


def test_cache_key(benchmark):
    """Parsing a query and building its key: equivalent URLs share it, others do not."""

    def key_of(args, klass="-"):
        canonical = params.parse(args, quality=80).canonical()
        return variant_key_of("demo", "photos/rocket.jpg", "v1", canonical, klass)

    query = {"w": "400", "dpr": "2", "fmt": "webp", "utm_source": "newsletter"}
    key = benchmark(key_of, query)
    assert key == key_of({"w": "800", "fmt": "webp"})
    assert key == key_of({"fmt": "webp", "w": "800", "q": "80"})
    assert key != key_of({"w": "800", "fmt": "avif"})
    assert key != key_of({"w": "801", "fmt": "webp"})
    assert key_of({"w": "800"}, "avif") != key_of({"w": "800"}, "webp")


def test_accept_negotiation(benchmark):
    headers = [accept for accept, _ in BROWSERS.values()]

    def negotiate_all():
        return [negotiate.output_format("auto", negotiate.accept_class(h)) for h in headers]

    formats = benchmark(negotiate_all)
    assert [negotiate.accept_class(h) for h in headers] == [klass for _, klass in BROWSERS.values()]
    assert formats == ["avif", "avif", "webp", "jpeg", "webp"]
    assert negotiate.output_format("auto", "other", has_alpha=True) == "png"


SIGNING_KEYS = ["current-signing-secret-0123456789", "previous-signing-secret-0123456789"]


@pytest.mark.parametrize("signed_with", [0, 1], ids=["current-key", "rotated-key"])
def test_signature_check(benchmark, signed_with):
    """A signed URL's check, as every request to a signed project pays it (with key rotation)."""
    path = "/demo/photos/rocket.jpg"
    url = signing.signed_url(
        SIGNING_KEYS[signed_with], path, {"w": "640", "fmt": "webp", "exp": "4102444800"}
    )
    args = params.parse_query(url.partition("?")[2])
    assert benchmark(signing.verify, SIGNING_KEYS, path, args) is None
    with pytest.raises(InvalidSignature):
        signing.verify(SIGNING_KEYS, path, {**args, "w": "641"})
    with pytest.raises(InvalidSignature):
        signing.verify(SIGNING_KEYS[:1] if signed_with else SIGNING_KEYS[1:], path, args)


@pytest.mark.parametrize("route", ["prefix", "domain"])
def test_cached_hit_through_the_front_door(benchmark, tmp_path, route):
    """A whole cached hit in-process: WSGI in, headers and body out (no HTTP server).

    `domain`: the same hit through the project's Host (img.shop.example/rocket.jpg).
    """
    from shield.api.web import create_app

    origin = tmp_path / "origin"
    origin.mkdir()
    shutil.copy(os.path.join(ROOT, "samples", "rocket.jpg"), origin / "rocket.jpg")
    app = create_app(
        {
            "shield": {
                "cache_dir": str(tmp_path / "cache"),
                "state_dir": str(tmp_path / "state"),
                "log_level": "warning",
            },
            "projects": {
                "demo": {"origin": str(origin) + "/", "rate_limit": 0, "domain": "img.shop.example"}
            },
        }
    )
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/demo/rocket.jpg" if route == "prefix" else "/rocket.jpg",
        "HTTP_HOST": "localhost" if route == "prefix" else "img.shop.example",
        "QUERY_STRING": "w=640&q=75&fmt=webp",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_ACCEPT": "image/avif,image/webp,*/*",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    def hit():
        return b"".join(app.wsgi_app(dict(environ), start_response))

    made = hit()
    assert seen["headers"]["X-Cache"] == "MISS"
    body = benchmark(hit)
    assert body == made and seen["status"] == "200 OK"
    assert seen["headers"]["X-Cache"] == "HIT" and seen["headers"]["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(body)).size == (640, 427)


@pytest.fixture(scope="module")
def big_webp():
    """A 5600x3500 (19.6 MP) lossy WebP: the astronaut sample, enlarged."""
    with Image.open(os.path.join(ROOT, "samples", "astronaut.png")) as im:
        big = im.convert("RGB").resize((5600, 3500), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "WEBP", quality=80, method=0)
    return out.getvalue()


@pytest.mark.parametrize("how", ["scaled-on-load", "pillow-decode-then-box"])
def test_300px_of_a_20_megapixel_webp(benchmark, big_webp, how):
    size = (300, 188)
    if how == "scaled-on-load":
        im = benchmark(webpscale.decode_scaled, big_webp, *size)
    else:
        im = benchmark(lambda: Image.open(io.BytesIO(big_webp)).resize(size, Image.Resampling.BOX))
    assert im.size == size and im.mode == "RGB"
    # Both are area averages of the same picture: nearly the same pixels.
    with Image.open(os.path.join(ROOT, "samples", "astronaut.png")) as ref:
        expected = ref.convert("RGB").resize(size, Image.Resampling.BOX)
    diff = sum(abs(a - b) for a, b in zip(im.tobytes(), expected.tobytes(), strict=True)) / (300 * 188 * 3)
    assert diff < 6, diff
