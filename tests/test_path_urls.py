"""Path-style signed URLs (contract section 11) against a real HTTP origin on 127.0.0.1."""

import base64
import hashlib
import hmac
import re
import time

import pytest

from shield.guard.signing import path_signature as signature
from shield.image import engine, jpegmeta
from tests import imaging
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JPEG = {"Accept": "image/jpeg"}


def sign(secret, ops, image_url, exp=None):
    """The client side, written from the contract alone (not shield's code)."""
    message = f"{ops}/{image_url}" + (f"?exp={exp}" if exp is not None else "")
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:32]


def url(key, project, ops, image_url, exp=None, sig=None):
    sig = sig or sign(key["secret"], ops, image_url, exp)
    query = f"key={key['id']}&sig={sig}" + (f"&exp={exp}" if exp is not None else "")
    return f"/api/v1/{project}/{ops}/{image_url}?{query}"


@pytest.fixture
def site(make_app, origin):
    origin.state.put("/img/rocket.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/img/coffee.png", imaging.sample("coffee.png"))
    origin.state.put("/cdn/rocket.jpg", imaging.sample("rocket.jpg"))
    host = f"127.0.0.1:{origin.port}"
    base = {"origin": f"{origin.url}img/", "allow_private_origin": True}
    app = make_app(
        {
            "shop": {**base, "source_domains": [f"http://localhost:{origin.port}"]},
            "limited": {**base, "rate_limit": 3},
            "picky": {**base, "allowed_referers": ["shop.example"]},
            "closed": {
                "origin": "https://img.example.net/",
                "source_domains": [f"http://localhost:{origin.port}"],
            },
        },
        admin_token=ADMIN_TOKEN,
    )
    client = app.test_client()

    def key(project="shop", **body):
        resp = client.post(f"/v1/projects/{project}/keys", headers=ADMIN, json=body)
        assert resp.status_code == 201
        return resp.get_json()

    return app, client, key, host, origin


def test_signatures_match_vectors_computed_outside_shield():
    # Computed with openssl: printf '%s' MESSAGE | openssl dgst -sha256 -hmac SECRET -binary | base64url | cut -c1-32
    secret = "sk_" + "A" * 43
    assert signature(secret, "w_400,f_webp", "cdn.example.com/img/a.jpg", "1893456000") == (
        "RKLKqWSAFhSzwullMZD0rj6uqGlHq7yH"
    )
    assert signature(secret, "_", "cdn.example.com/img/a.jpg") == "fSjefyhJb7-_nli930T-QpHyqryxOMP6"
    assert sign(secret, "_", "cdn.example.com/img/a.jpg") == "fSjefyhJb7-_nli930T-QpHyqryxOMP6"


@pytest.mark.parametrize(
    ("ops", "size", "content_type"),
    [
        ("_", (640, 427), "image/jpeg"),
        ("w_200", (200, 133), "image/jpeg"),
        ("h_100", (150, 100), "image/jpeg"),
        ("s_120x90", (120, 90), "image/jpeg"),
        ("s_120x90,q_30", (120, 90), "image/jpeg"),
        ("w_160,f_webp", (160, 107), "image/webp"),
        ("w_160,f_jpg", (160, 107), "image/jpeg"),
        ("w_160,f_png", (160, 107), "image/png"),
        ("s_100x100,fit_contain", (100, 100), "image/jpeg"),
        ("s_100x100,embed", (100, 100), "image/jpeg"),
        ("s_100x50,fit_fill", (100, 50), "image/jpeg"),
        ("w_100,dpr_2", (200, 133), "image/jpeg"),
        ("w_100,f_auto", (100, 67), "image/jpeg"),
    ],
)
def test_each_operation_by_get_and_head(site, ops, size, content_type):
    _app, client, key, host, origin = site
    k = key(scopes=["images"])
    target = url(k, "shop", ops, f"{host}/img/rocket.jpg")
    got = client.get(target, headers=JPEG)
    assert got.status_code == 200, got.get_data()[:300]
    assert got.headers["Content-Type"] == content_type
    assert imaging.decode(got.get_data()).size == size
    assert got.headers["Cache-Control"] == "public, s-maxage=31536000, max-age=31536000, immutable"
    assert got.headers["Vary"] == "Accept"
    assert re.fullmatch(r"\d+ms", got.headers["X-Processing-Time"])
    assert (got.headers["X-Head-Fast-Path"], got.headers["X-Original-Size-Sampled"]) == ("0", "0")
    timing = got.headers["Server-Timing"]
    assert all(f"{name};dur=" in timing for name in ("auth", "transform", "total")) and "probe;" not in timing
    if ops == "_":
        assert got.get_data() == jpegmeta.strip(imaging.sample("rocket.jpg"))

    head = client.head(target, headers=JPEG)
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["Content-Type"] == content_type and head.headers["X-Head-Fast-Path"] == "1"
    assert head.headers["Cache-Control"] == got.headers["Cache-Control"]
    assert origin.state.count("/img/rocket.jpg", "GET") == 1


def test_head_of_an_uncached_source_costs_one_probe_and_no_engine_time(site, monkeypatch):
    app, client, key, host, origin = site
    used = []
    for name in ("render", "decode_check", "analysis_pixels", "variant_pixels"):
        real = getattr(engine, name)
        monkeypatch.setattr(
            engine, name, lambda *a, _real=real, _name=name, **kw: used.append(_name) or _real(*a, **kw)
        )
    k = key(scopes=["images"])
    transforms = app.extensions["shield"].stats.query(project="shop")["transforms"]
    head = client.head(url(k, "shop", "w_300,f_webp", f"{host}/img/coffee.png"))
    assert head.status_code == 200 and head.headers["Content-Type"] == "image/webp"
    assert head.headers["X-Original-Size-Sampled"] == "1" and "probe;dur=" in head.headers["Server-Timing"]
    assert origin.state.count("/img/coffee.png", "HEAD") == 1
    assert origin.state.count("/img/coffee.png", "GET") == 0
    assert used == [] and app.extensions["shield"].stats.query(project="shop")["transforms"] == transforms
    missing = client.head(url(k, "shop", "_", f"{host}/img/nope.jpg"))
    assert missing.status_code == 404 and missing.get_data() == b""


def test_both_url_styles_share_one_origin_fetch(site):
    _app, client, key, host, origin = site
    k = key()
    assert client.get("/shop/rocket.jpg?w=300", headers=JPEG).status_code == 200
    path_style = client.get(url(k, "shop", "w_250", f"{host}/img/rocket.jpg"), headers=JPEG)
    assert path_style.status_code == 200 and path_style.headers["X-Cache"] == "MISS"
    assert imaging.decode(path_style.get_data()).size == (250, 167)
    assert origin.state.count("/img/rocket.jpg", "GET") == 1
    again = client.get(url(k, "shop", "w_250", f"{host}/img/rocket.jpg"), headers=JPEG)
    assert again.headers["X-Cache"] == "HIT" and again.get_data() == path_style.get_data()
    # A listed source domain is fetched as itself, once.
    via = client.get(url(k, "shop", "w_100", f"localhost:{origin.port}/cdn/rocket.jpg"), headers=JPEG)
    assert via.status_code == 200 and imaging.decode(via.get_data()).size == (100, 67)
    assert client.get(url(k, "shop", "w_120", f"localhost:{origin.port}/cdn/rocket.jpg")).status_code == 200
    assert origin.state.count("/cdn/rocket.jpg", "GET") == 1


def test_signed_with_exp_and_a_referer_checking_project(site):
    _app, client, key, host, _origin = site
    k = key(project="picky")
    exp = int(time.time()) + 600
    ok = client.get(
        url(k, "picky", "w_90", f"{host}/img/rocket.jpg", exp=exp),
        headers={"Referer": "https://shop.example/p"},
    )
    assert ok.status_code == 200 and ok.headers["Vary"] == "Accept, Referer"
    wrong = client.get(
        url(k, "picky", "w_90", f"{host}/img/rocket.jpg", exp=exp),
        headers={"Referer": "https://evil.example/"},
    )
    assert wrong.status_code == 403 and wrong.get_json()["error"]["code"] == "forbidden_referer"


def test_every_check_in_order_and_early_failures_spend_no_quota(site):
    _app, client, key, host, _origin = site
    good, shop_key, no_images = (
        key(project="limited"),
        key(project="shop"),
        key(project="limited", scopes=["stats"]),
    )
    revoked = key(project="limited")
    client.delete(f"/v1/projects/limited/keys/{revoked['id']}", headers=ADMIN)
    image = f"{host}/img/rocket.jpg"
    valid = url(good, "limited", "w_50", image)
    early = [
        (f"/api/v1/limited/w_50/{image}?sig=abc", 401, "unauthorized"),
        (f"/api/v1/limited/w_50/{image}?key={good['id']}", 401, "unauthorized"),
        (url({"id": "pk_" + "0" * 25, "secret": "sk_x"}, "limited", "w_50", image), 401, "unauthorized"),
        (url(revoked, "limited", "w_50", image), 401, "unauthorized"),
        (url(no_images, "limited", "w_50", image), 401, "unauthorized"),
        (url(good, "limited", "w_abc", image), 400, "invalid_param"),
        (url(good, "limited", "x_1", image), 400, "invalid_param"),
        (
            url(good, "limited", "w_50", image, sig=sign(good["secret"], "w_60", image)),
            403,
            "invalid_signature",
        ),
        (url(good, "limited", "w_50", image, exp=int(time.time()) - 5), 403, "expired"),
        (url(good, "nosuch", "w_50", image), 404, "project_not_found"),
        (url(shop_key, "limited", "w_50", image), 401, "unauthorized"),
    ]
    for _ in range(2):
        for target, status, code in early:
            resp = client.get(target)
            assert (resp.status_code, resp.get_json()["error"]["code"]) == (status, code), target
    for _ in range(3):
        assert client.get(valid).status_code == 200
    limited = client.get(valid)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("image_url", "status", "code"),
    [
        ("img.unlisted.example/a.jpg", 403, "forbidden_source"),
        ("{host}/img/../secret.jpg", 403, "forbidden_source"),
        ("{host}/img/%2e%2e/secret.jpg", 403, "forbidden_source"),
        ("user@{host}/img/rocket.jpg", 403, "forbidden_source"),
        ("user:pw@{host}/img/rocket.jpg", 403, "forbidden_source"),
        ("localhost:1/img/rocket.jpg", 403, "forbidden_source"),
        ("localhost/img/rocket.jpg", 403, "forbidden_source"),
        ("{host}/img/missing.jpg", 404, "not_found"),
    ],
)
def test_sources_refused_or_missing(site, image_url, status, code):
    _app, client, key, host, _origin = site
    k = key()
    resp = client.get(url(k, "shop", "w_50", image_url.format(host=host)))
    assert (resp.status_code, resp.get_json()["error"]["code"]) == (status, code)


def test_a_listed_host_on_a_private_address_stays_refused(site):
    _app, client, key, _host, origin = site
    k = key(project="closed")
    resp = client.get(url(k, "closed", "w_50", f"localhost:{origin.port}/cdn/rocket.jpg"))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden_source"
    assert origin.state.count("/cdn/rocket.jpg") == 0


def test_an_origin_failure_is_a_502(site):
    _app, client, key, host, origin = site
    k = key()
    origin.state.mode = "down"
    resp = client.get(url(k, "shop", "w_70", f"{host}/img/coffee.png"))
    assert resp.status_code == 502 and resp.get_json()["error"]["code"] == "origin_error"


def test_an_expired_key_fails(site):
    _app, client, key, host, _origin = site
    until = time.time() + 1.2
    k = key(expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until + 1)))
    target = url(k, "shop", "w_40", f"{host}/img/rocket.jpg")
    assert client.get(target).status_code == 200
    time.sleep(max(0.0, until + 1.05 - time.time()))
    resp = client.get(target)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthorized"


def test_review_holes_stay_closed(site, make_app):
    _app, client, key, host, origin = site
    k = key()
    exp = int(time.time()) - 60
    # An expired signature may not come back with its exp folded into the path.
    image = f"{host}/img/rocket.jpg"
    sig = sign(k["secret"], "w_50", image, exp)
    folded = client.get(f"/api/v1/shop/w_50/{image}%3Fexp={exp}?key={k['id']}&sig={sig}")
    assert folded.status_code == 403 and origin.state.count("/img/rocket.jpg%3Fexp=" + str(exp)) == 0
    # One signature names one file: the path is decoded once.
    origin.state.put("/img/aA.jpg", imaging.sample("rocket.jpg"))
    origin.state.put("/img/a%2541.jpg", imaging.sample("coffee.png"))  # (the test origin does not decode)
    encoded = f"{host}/img/a%2541.jpg"
    sig = sign(k["secret"], "_", encoded)
    one = client.get(f"/api/v1/shop/_/{encoded}?key={k['id']}&sig={sig}", headers={"Accept": "image/png"})
    assert one.status_code == 200 and one.headers["Content-Type"] == "image/png"
    assert origin.state.count("/img/aA.jpg") == 0
    other = client.get(f"/api/v1/shop/_/{host}/img/a%41.jpg?key={k['id']}&sig={sig}")
    assert other.status_code == 403 and other.get_json()["error"]["code"] == "invalid_signature"
    # On the origin's host, only files under the origin's path.
    origin.state.put("/secret/x.jpg", imaging.sample("rocket.jpg"))
    outside = client.get(url(k, "shop", "_", f"{host}/secret/x.jpg"))
    assert outside.status_code == 403 and origin.state.count("/secret/x.jpg") == 0
    # A HEAD's 404 is remembered like a GET's.
    for _ in range(3):
        assert client.head(url(k, "shop", "_", f"{host}/img/never.jpg")).status_code == 404
    assert origin.state.count("/img/never.jpg", "HEAD") == 1


def test_a_private_project_is_never_publicly_cacheable(make_app, origin):
    origin.state.put("/img/rocket.jpg", imaging.sample("rocket.jpg"))
    app = make_app(
        {
            "vault": {
                "origin": f"{origin.url}img/",
                "allow_private_origin": True,
                "private": True,
                "signing_key": "v" * 20,
            }
        },
        admin_token=ADMIN_TOKEN,
    )
    client = app.test_client()
    k = client.post("/v1/projects/vault/keys", headers=ADMIN, json={}).get_json()
    target = url(k, "vault", "w_60", f"127.0.0.1:{origin.port}/img/rocket.jpg")
    got = client.get(target)
    assert got.status_code == 200 and got.headers["X-Cache"] == "BYPASS"
    assert got.headers["Cache-Control"] == "private, max-age=300"
    assert client.head(target).headers["Cache-Control"] == "private, max-age=300"


def test_path_style_answers_carry_cors_and_ranges_stay_immutable(site):
    _app, client, key, host, _origin = site
    k = key(scopes=["images"])
    target = url(k, "shop", "w_120", f"{host}/img/rocket.jpg")
    for resp in (client.get(target), client.head(target)):
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    whole = client.get(target).get_data()
    part = client.get(target, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.get_data() == whole[:10]
    assert part.headers["Cache-Control"] == "public, s-maxage=31536000, max-age=31536000, immutable"
