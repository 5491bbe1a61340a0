"""The dashboard (contract section 13) in a real Chromium, against shield under gunicorn.

Debian's chromium is driven by Playwright (no browser download); `make test` installs
it. Each view is screenshotted; `make screenshots` writes them to docs/dashboard/ (the
README's pictures), any other run to a temporary folder.
"""

import os
import shutil
import tempfile
import time

import pytest
import requests

from tests import imaging
from tests.chromium import chromium
from tests.conftest import ADMIN_TOKEN, ROOT, Gunicorn, server_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SHOTS = os.environ.get("SHIELD_SCREENSHOTS") or os.path.join(tempfile.gettempdir(), "shield-dashboard")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    folder = tmp / "images"
    shutil.copytree(os.path.join(ROOT, "samples"), folder)
    config = tmp / "shield.toml"
    config.write_text(server_config(tmp, f'[projects.demo]\norigin = "{folder}/"\n'))
    running = Gunicorn(config, workers=2).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.problems = []
    tab.on("console", lambda msg: tab.problems.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.problems.append(str(exc)))
    tab.goto(server.url + "/dashboard")
    yield tab
    context.close()


def log_in(page, token=ADMIN_TOKEN):
    page.fill("#token", token)
    page.click("#login-form button")


def wait_until(page, script, arg=None, timeout=10.0):
    """Poll `script` (a function of arg) in the page; the page's CSP forbids in-page polling by eval."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script, arg):
        assert time.monotonic() < deadline, f"never true: {script}"
        time.sleep(0.1)


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_the_page_is_never_cached_framed_or_scripted_from_elsewhere(server):
    resp = requests.get(server.url + "/dashboard", timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Frame-Options"] == "DENY"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script" in resp.text and "http" not in resp.text.split("<body>")[0].replace("http-equiv", "")
    assert (
        requests.get(server.url + "/dashboard/app.js", timeout=30)
        .headers["Content-Type"]
        .startswith("text/javascript")
    )
    assert requests.get(server.url + "/dashboard/nope.js", timeout=30).status_code == 404


def test_a_wrong_token_shows_the_api_message(page):
    log_in(page, "not-the-admin-token-at-all")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("401 unauthorized: ")
    assert page.is_visible("#login") and not page.is_visible("#tabs")
    assert page.evaluate("sessionStorage.getItem('shield-admin-token')") is None
    shot(page, "login-error")


def test_overview_matches_the_stats_api(page, server):
    for width in (100, 120, 140):
        requests.get(server.url + f"/demo/rocket.jpg?w={width}", timeout=30)
    log_in(page)
    page.wait_for_selector("#per-project tbody tr[data-project=demo]")
    expected = requests.get(server.url + "/v1/stats", headers=ADMIN, timeout=30).json()
    wait_until(
        page,
        "want => document.querySelector('#total-requests').textContent === want",
        f"{expected['requests']:,}",
    )
    assert page.inner_text("#total-hit-ratio") == f"{expected['hit_ratio'] * 100:.1f}%"
    assert page.inner_text("#total-origin-fetches") == f"{expected['origin_fetches']:,}"
    demo = requests.get(server.url + "/v1/stats?project=demo", headers=ADMIN, timeout=30).json()
    # The page refreshes on its own clock: wait for the refresh that saw the same counters.
    wait_until(
        page,
        "want => document.querySelector('#per-project tr[data-project=demo] td:nth-child(2)').textContent === want",
        f"{demo['requests']:,}",
    )
    assert page.locator("#chart polyline").count() >= 1
    assert page.evaluate("sessionStorage.getItem('shield-admin-token')") == ADMIN_TOKEN
    assert page.evaluate("localStorage.length") == 0
    shot(page, "overview")
    assert page.problems == []


def test_a_purge_from_the_form_makes_the_next_request_a_miss(page, server):
    url = server.url + "/demo/rocket.jpg?w=77"
    requests.get(url, timeout=30)
    assert requests.get(url, timeout=30).headers["X-Cache"] == "HIT"
    log_in(page)
    page.click("#tabs button[data-view=purge]")
    page.fill("#purge-form input[name=paths]", "/demo/rocket.jpg")
    page.click("#purge-form button")
    wait_until(page, "() => document.querySelector('#purge-result').textContent.startsWith('purged ')")
    assert "done" in page.inner_text("#purge-result")
    assert requests.get(url, timeout=30).headers["X-Cache"] == "MISS"
    shot(page, "purge")
    page.fill("#purge-form input[name=paths]", "not-a-path")
    page.click("#purge-form button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("400 bad_request: ")


def test_projects_and_a_key_shown_once(page, server):
    log_in(page)
    page.click("#tabs button[data-view=projects]")
    page.wait_for_selector("#projects tr[data-project=demo]")
    page.fill("#project-form input[name=name]", "made-here")
    page.fill("#project-form input[name=origin]", "https://img.made.example/")
    page.click("#project-form button")
    page.wait_for_selector("#projects tr[data-project=made-here]")
    assert requests.get(server.url + "/v1/projects/made-here", headers=ADMIN, timeout=30).status_code == 200
    page.click("#projects tr[data-project=made-here] button:has-text('Disable')")
    page.wait_for_selector("#projects tr[data-project=made-here] button:has-text('Enable')")
    assert (
        requests.get(server.url + "/v1/projects/made-here", headers=ADMIN, timeout=30).json()["enabled"]
        is False
    )
    page.select_option("#keys-project", "demo")
    page.fill("#key-form input[name=name]", "from-the-dashboard")
    page.click("#key-form button")
    page.wait_for_selector("#new-secret:not([hidden])")
    secret = page.inner_text("#secret")
    assert secret.startswith("sk_")
    stats = requests.get(server.url + "/v1/stats", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert stats.status_code == 200 and stats.json()["project"] == "demo"
    assert secret not in page.inner_text("#keys")
    shot(page, "projects-and-keys")
    page.fill("#project-form input[name=name]", "made-here")
    page.fill("#project-form input[name=origin]", "https://img.made.example/")
    page.click("#project-form button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("409 conflict: ")


def test_an_upload_by_the_file_chooser_appears_with_its_thumbnail(page, server, tmp_path):
    photo = tmp_path / "Spring Hero.png"
    photo.write_bytes(imaging.sample("coffee.png"))
    log_in(page)
    page.click("#tabs button[data-view=assets]")
    page.select_option("#assets-project", "demo")
    page.set_input_files("#file-chooser", str(photo))
    page.wait_for_selector(".asset img")
    wait_until(
        page,
        "() => document.querySelector('.asset img').complete && document.querySelector('.asset img').naturalWidth > 0",
    )
    assert page.evaluate("document.querySelector('.asset img').naturalWidth") == 140
    assert "spring-hero.png" in page.inner_text("#asset-list")
    listed = requests.get(server.url + "/v1/assets?project=demo", headers=ADMIN, timeout=30).json()["items"]
    assert any(a["key"].endswith("-spring-hero.png") for a in listed)
    shot(page, "assets")


def test_the_playground_shows_the_image_its_size_and_timing(page):
    log_in(page)
    page.click("#tabs button[data-view=playground]")
    page.select_option("#play-project", "demo")
    page.fill("#play-form input[name=file]", "rocket.jpg")
    page.fill("#play-form input[name=w]", "200")
    page.select_option("#play-form select[name=fmt]", "webp")
    page.click("#play-form button")
    wait_until(page, "() => document.querySelector('#play-size').textContent === '200x133'")
    assert page.inner_text("#play-format") == "image/webp"
    assert page.inner_text("#play-cache") in ("MISS", "HIT")
    assert page.inner_text("#play-timing").startswith('cache;desc="')
    snippet = page.inner_text("#play-snippet")
    assert "srcset=" in snippet and "dpr=2 2x" in snippet and "sizes=" in snippet
    shot(page, "playground")
    page.fill("#play-form input[name=file]", "missing.jpg")
    page.click("#play-form button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("404 not_found: ")
    assert page.problems == [] or all("404" in p for p in page.problems)
