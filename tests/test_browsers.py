"""shield's images on a page of another site, in a real Chromium (contract section 2).

The page is served by a second local server (http://localhost:<port>), shield
by gunicorn on http://127.0.0.1:<port>: another origin and another site, as
for every real deployment. What is checked is what the page itself sees.
"""

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from tests import imaging
from tests.chromium import chromium
from tests.conftest import ROOT, Gunicorn, server_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGE = b"<!doctype html><meta charset=utf-8><title>shop</title><body></body>"


class _PageHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        if self.path.startswith("/isolated"):
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.end_headers()
        self.wfile.write(PAGE)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(shield's base URL, the page server's base URL, the origin folder)."""
    tmp = tmp_path_factory.mktemp("browsers")
    folder = tmp / "images"
    shutil.copytree(f"{ROOT}/samples", folder)
    (folder / "swap.jpg").write_bytes(imaging.encode(solid(300, 200, (220, 30, 30)), "JPEG"))
    config = tmp / "shield.toml"
    projects = f"""
[projects.demo]
origin = "{folder}/"

[projects.short]
origin = "{folder}/"
browser_ttl = 2
cache_ttl = 1
"""
    config.write_text(server_config(tmp, projects))
    shield = Gunicorn(config, workers=1).start()
    pages = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    try:
        yield shield.url, f"http://localhost:{pages.server_address[1]}", folder
    finally:
        pages.shutdown()
        pages.server_close()
        shield.stop()


def solid(width, height, colour):
    return Image.new("RGB", (width, height), colour)


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, site):
    context = browser.new_context()
    tab = context.new_page()
    yield tab
    context.close()


DRAW = """async (src) => {
  const img = new Image();
  img.crossOrigin = "anonymous";
  img.src = src;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(Math.floor(img.naturalWidth / 2), Math.floor(img.naturalHeight / 2), 1, 1).data;
  return {w: img.naturalWidth, h: img.naturalHeight, rgb: [d[0], d[1], d[2]]};
}"""


def test_a_crossorigin_image_loads_and_its_pixels_can_be_read(page, site):
    shield, pages, _folder = site
    page.goto(pages + "/shop")
    got = page.evaluate(DRAW, shield + "/demo/rocket.jpg?w=160")
    assert (got["w"], got["h"]) == (160, 107)
    assert sum(got["rgb"]) > 0  # getImageData answered: the canvas is not tainted


def test_fetch_of_the_blurhash_json_works(page, site):
    shield, pages, _folder = site
    page.goto(pages + "/shop")
    got = page.evaluate("async (u) => (await fetch(u)).json()", shield + "/demo/rocket.jpg?blur=true")
    assert set(got) == {"blurhash", "width", "height"} and len(got["blurhash"]) >= 6
    assert (got["width"], got["height"]) == (640, 427)


def test_the_pages_monitoring_sees_server_timing_and_sizes(page, site):
    shield, pages, _folder = site
    page.goto(pages + "/shop")
    url = shield + "/demo/coffee.png?w=120"
    entry = page.evaluate(
        """async (u) => {
          const img = new Image(); img.src = u; await img.decode();
          const e = performance.getEntriesByName(u)[0];
          return {timing: e.serverTiming.map(t => t.name), size: e.encodedBodySize, transfer: e.transferSize};
        }""",
        url,
    )
    assert "cache" in entry["timing"]
    assert entry["size"] > 0 and entry["transfer"] > 0


def test_a_require_corp_page_shows_the_image(page, site):
    shield, pages, _folder = site
    page.goto(pages + "/isolated")
    assert page.evaluate("crossOriginIsolated") is True  # COEP is really in force on this page
    got = page.evaluate(
        """async (u) => {
          const img = new Image(); img.src = u;
          try { await img.decode(); } catch (e) { return {error: String(e)}; }
          return {w: img.naturalWidth};
        }""",
        shield + "/demo/rocket.jpg?w=90",
    )
    assert got == {"w": 90}


def test_after_the_origin_changes_and_browser_ttl_passes_a_reload_shows_the_new_image(page, site):
    shield, pages, folder = site
    show = """async (src) => {
      document.body.innerHTML = "";
      const img = document.createElement("img");
      img.crossOrigin = "anonymous"; img.src = src; document.body.append(img);
      await img.decode();
      const c = document.createElement("canvas"); c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(5, 5, 1, 1).data;
      return [d[0], d[1], d[2]];
    }"""
    url = shield + "/short/swap.jpg?w=100"
    page.goto(pages + "/shop")
    assert imaging.close_color(tuple(page.evaluate(show, url)), (220, 30, 30), 40)
    page.reload()
    assert imaging.close_color(tuple(page.evaluate(show, url)), (220, 30, 30), 40)  # from its cache
    (folder / "swap.jpg").write_bytes(imaging.encode(solid(300, 200, (30, 30, 220)), "JPEG"))
    time.sleep(3.2)  # past browser_ttl (2 s) and the original's cache_ttl (1 s)
    # Within stale-while-revalidate=60 the first reload may still show the copy it had
    # while Chromium revalidates in the background; the one after shows the new image.
    # (With max-age=31536000, immutable, no reload ever would.)
    page.reload()
    page.evaluate(show, url)
    deadline, seen = time.time() + 10, None
    while time.time() < deadline:
        page.reload()
        seen = tuple(page.evaluate(show, url))
        if imaging.close_color(seen, (30, 30, 220), 40):
            break
        time.sleep(0.3)
    assert imaging.close_color(seen, (30, 30, 220), 40), seen
