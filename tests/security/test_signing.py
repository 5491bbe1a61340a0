"""Signed URLs and private tokens (contract section 4), against an independent HMAC."""

import hashlib
import hmac
import time
import urllib.parse

import pytest
from werkzeug.datastructures import MultiDict

from shield.errors import Expired, InvalidParam, InvalidSignature
from shield.guard import signing
from tests.security import client_of

KEY = "golden-signing-key-0123456789"
OLD_KEY = "older-signing-key-0123456789"
OTHER_KEY = "somebody-elses-key-0123456789"
NOW = 1_700_000_000


def reference_sig(key, message):
    """The contract's HMAC, computed here without shield."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


# (path, args, the message the contract says is signed)
GOLDEN = [
    ("/demo/rocket.jpg", {"w": "400"}, "/demo/rocket.jpg?w=400"),
    ("/demo/rocket.jpg", {}, "/demo/rocket.jpg?"),
    ("/demo/rocket.jpg", {"w": "400", "h": "300", "fit": "cover"}, "/demo/rocket.jpg?fit=cover&h=300&w=400"),
    ("/demo/rocket.jpg", {"w": "400", "sig": "ignored"}, "/demo/rocket.jpg?w=400"),
    ("/demo/rocket.jpg", {"exp": str(NOW), "w": "400"}, f"/demo/rocket.jpg?exp={NOW}&w=400"),
    ("/demo/a/b/c.png", {"utm_source": "x", "q": "70"}, "/demo/a/b/c.png?q=70&utm_source=x"),
    ("/demo/x.jpg", {"text": "a b&c=d/é"}, "/demo/x.jpg?text=a+b%26c%3Dd%2F%C3%A9"),
    ("/demo/x.jpg", {"B": "1", "a": "2", "_": "3"}, "/demo/x.jpg?B=1&_=3&a=2"),
    ("/demo/x.jpg", {"w": ""}, "/demo/x.jpg?w="),
]

# Computed once, independently of Python (openssl dgst -sha256 -hmac), and pasted.
LITERAL = [
    (
        "/demo/rocket.jpg",
        {"w": "400", "fit": "cover", "exp": "1700000000"},
        "97803fec67888024fbc388a6ee67e6e04a8fdc4170e40bd81150682f576fd244",
    ),
    (
        "/demo/photos/cafe.jpg",
        {"w": "10", "text": "café & crème", "q": "75"},
        "f5b044a57745e5e8390b6eb965ba4c53ce81989eb3533c01ffa7336a8ab29436",
    ),
    ("/demo/rocket.jpg", {}, "a70d7684026c7b5f1c62d298b2cf0fa28ff05b57f976ac268753f24f070c21f0"),
]


@pytest.mark.parametrize(("path", "args", "message"), GOLDEN)
def test_golden_signatures(path, args, message):
    query = message.split("?", 1)[1]
    assert signing.canonical_query(args) == query
    expected = reference_sig(KEY, message)
    assert signing.sign(KEY, path, args) == expected
    assert signing.signed_url(KEY, path, args) == (
        f"{message}&sig={expected}" if query else f"{path}?sig={expected}"
    )


@pytest.mark.parametrize(("path", "args", "expected"), LITERAL)
def test_literal_vectors(path, args, expected):
    assert signing.sign(KEY, path, args) == expected
    signing.verify([KEY], path, {**args, "sig": expected}, now=NOW)


def test_signature_is_lowercase_hex_sha256():
    sig = signing.sign(KEY, "/demo/a.jpg", {"w": "1"})
    assert len(sig) == 64 and sig == sig.lower() and int(sig, 16) >= 0


def query_args(url):
    """The args a server sees for a URL: first value per name, as werkzeug gives them."""
    path, _, query = url.partition("?")
    return path, MultiDict(urllib.parse.parse_qsl(query, keep_blank_values=True))


def test_signed_url_round_trips_through_a_query_string():
    url = signing.signed_url(KEY, "/demo/x.jpg", {"w": "400", "text": "a b&c=d/é", "exp": str(NOW + 60)})
    path, args = query_args(url)
    assert path == "/demo/x.jpg"
    signing.verify([KEY], path, args, now=NOW)


def test_signed_url_without_parameters():
    url = signing.signed_url(KEY, "/demo/x.jpg", {})
    assert url == "/demo/x.jpg?sig=" + reference_sig(KEY, "/demo/x.jpg?")
    signing.verify([KEY], *query_args(url), now=NOW)


def test_good_signature_verifies():
    args = {"w": "400", "h": "300"}
    signing.verify([KEY], "/demo/a.jpg", {**args, "sig": reference_sig(KEY, "/demo/a.jpg?h=300&w=400")})


@pytest.mark.parametrize(
    "sig",
    [
        None,
        "",
        "0" * 64,
        "not-hex",
        reference_sig(KEY, "/demo/a.jpg?w=400").upper(),  # the contract's hex is lowercase
        reference_sig(KEY, "/demo/a.jpg?w=400")[:-1],
        reference_sig(KEY, "/demo/a.jpg?w=400") + "0",
        "é" * 64,  # non-ASCII must not crash the constant-time comparison
        "\udcff",
    ],
)
def test_missing_or_bad_signature(sig):
    args = {"w": "400"} if sig is None else {"w": "400", "sig": sig}
    with pytest.raises(InvalidSignature) as err:
        signing.verify([KEY], "/demo/a.jpg", args)
    assert (err.value.status, err.value.code) == (403, "invalid_signature")


def test_tampered_parameter_path_or_added_parameter_fails():
    sig = signing.sign(KEY, "/demo/a.jpg", {"w": "400"})
    for path, args in [
        ("/demo/a.jpg", {"w": "401"}),
        ("/demo/b.jpg", {"w": "400"}),
        ("/other/a.jpg", {"w": "400"}),
        ("/demo/a.jpg", {"w": "400", "h": "10"}),
        ("/demo/a.jpg", {"w": "400", "utm_source": "x"}),  # unknown params are signed too
        ("/demo/a.jpg", {}),
    ]:
        with pytest.raises(InvalidSignature):
            signing.verify([KEY], path, {**args, "sig": sig})


def test_reordered_parameters_still_verify():
    url = signing.signed_url(KEY, "/demo/a.jpg", {"w": "90", "h": "30", "fit": "contain"})
    path, query = url.split("?")
    shuffled = "&".join(reversed(query.split("&")))
    assert shuffled != query
    signing.verify([KEY], *query_args(f"{path}?{shuffled}"))


def test_sig_itself_is_left_out():
    sig = signing.sign(KEY, "/demo/a.jpg", {"w": "400"})
    assert signing.sign(KEY, "/demo/a.jpg", {"w": "400", "sig": "anything"}) == sig
    assert "sig" not in signing.canonical_query({"sig": "x", "w": "1"})


def test_first_value_of_a_repeated_parameter_is_signed():
    args = MultiDict([("w", "400"), ("w", "800")])
    assert signing.canonical_query(args) == "w=400"


def test_key_rotation_first_signs_all_verify():
    path, args = "/demo/a.jpg", {"w": "400"}
    for signer in (KEY, OLD_KEY):
        signing.verify([KEY, OLD_KEY], path, {**args, "sig": signing.sign(signer, path, args)})
    with pytest.raises(InvalidSignature):
        signing.verify([KEY, OLD_KEY], path, {**args, "sig": signing.sign(OTHER_KEY, path, args)})
    with pytest.raises(InvalidSignature):  # retired: no longer in the list
        signing.verify([KEY], path, {**args, "sig": signing.sign(OLD_KEY, path, args)})
    with pytest.raises(InvalidSignature):  # no keys at all verifies nothing
        signing.verify([], path, {**args, "sig": signing.sign(KEY, path, args)})


def test_keys_may_be_a_tuple_as_projects_hold_them():
    path, args = "/demo/a.jpg", {"w": "400"}
    signing.verify((OLD_KEY, KEY), path, {**args, "sig": signing.sign(KEY, path, args)})


def test_every_key_is_compared(monkeypatch):
    """Constant time: the comparison runs against every key even when the first matches."""
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", counting)
    path, args = "/demo/a.jpg", {"w": "400"}
    signing.verify([KEY, OLD_KEY, OTHER_KEY], path, {**args, "sig": signing.sign(KEY, path, args)})
    assert len(calls) == 3
    calls.clear()
    signing.verify_token([KEY, OLD_KEY], path, signing.private_token(KEY, path, NOW), now=NOW)
    assert len(calls) == 2


def signed(args, key=KEY, path="/demo/a.jpg"):
    return {**args, "sig": signing.sign(key, path, args)}


def test_expiry():
    path = "/demo/a.jpg"
    signing.verify([KEY], path, signed({"w": "1", "exp": str(NOW)}), now=NOW)  # up to and including exp
    signing.verify([KEY], path, signed({"w": "1", "exp": str(NOW + 60)}), now=NOW)
    for exp in (NOW - 1, NOW - 86400, 0):
        with pytest.raises(Expired) as err:
            signing.verify([KEY], path, signed({"w": "1", "exp": str(exp)}), now=NOW)
        assert (err.value.status, err.value.code) == (403, "expired")
    with pytest.raises(Expired):  # with the real clock
        signing.verify([KEY], path, signed({"w": "1", "exp": "1000"}))
    signing.verify([KEY], path, signed({"w": "1", "exp": "99999999999"}))


def test_expired_rotated_key_is_still_expired():
    with pytest.raises(Expired):
        signing.verify([KEY, OLD_KEY], "/demo/a.jpg", signed({"exp": str(NOW - 1)}, OLD_KEY), now=NOW)


def test_a_forged_url_is_invalid_not_expired():
    args = {"w": "1", "exp": str(NOW - 5), "sig": "0" * 64}
    with pytest.raises(InvalidSignature):
        signing.verify([KEY], "/demo/a.jpg", args, now=NOW)


def test_extending_exp_breaks_the_signature():
    args = signed({"w": "1", "exp": str(NOW - 5)})
    args["exp"] = str(NOW + 3600)
    with pytest.raises(InvalidSignature):
        signing.verify([KEY], "/demo/a.jpg", args, now=NOW)


@pytest.mark.parametrize("exp", ["", "soon", "-5", "1.5", "1e9", "0x10", " 100", "1" * 13, "١٢٣"])
def test_malformed_exp_that_was_signed_is_invalid_param(exp):
    with pytest.raises(InvalidParam) as err:
        signing.verify([KEY], "/demo/a.jpg", signed({"w": "1", "exp": exp}), now=NOW)
    assert err.value.param == "exp" and err.value.status == 400


def test_malformed_exp_that_was_not_signed_is_invalid_signature():
    with pytest.raises(InvalidSignature):
        signing.verify([KEY], "/demo/a.jpg", {"w": "1", "exp": "soon", "sig": "0" * 64}, now=NOW)


# -- private tokens


def reference_token(key, path, exp):
    return f"{exp}." + reference_sig(key, f"{path}:{exp}")


def test_private_token_golden():
    assert signing.private_token(KEY, "/private/p.jpg", NOW) == reference_token(KEY, "/private/p.jpg", NOW)
    assert signing.private_token(KEY, "/private/p.jpg", 1700000000) == (
        "1700000000.ccbe87b1b2c19100b842e1a68ce0086832944701032a93c313456e630858adca"
    )
    assert signing.private_token(KEY, "/private/p.jpg", str(NOW)) == reference_token(
        KEY, "/private/p.jpg", NOW
    )


def test_private_token_good_rotated_and_bad():
    path = "/private/p.jpg"
    signing.verify_token([KEY], path, reference_token(KEY, path, NOW + 60), now=NOW)
    signing.verify_token([KEY, OLD_KEY], path, reference_token(OLD_KEY, path, NOW + 60), now=NOW)
    good = reference_token(KEY, path, NOW + 60)
    for bad_path, token in [
        (path, None),
        (path, ""),
        (path, "garbage"),
        (path, f"{NOW + 60}."),
        (path, f".{good.split('.')[1]}"),
        (path, f"{NOW + 60}.deadbeef"),
        (path, f"{NOW + 61}.{good.split('.')[1]}"),  # exp moved: signature no longer matches
        (path, good.upper()),
        (path, good + "0"),
        (path, f"soon.{good.split('.')[1]}"),
        (path, f"-{NOW}.{good.split('.')[1]}"),
        (path, "é." + "é" * 64),
        ("/private/other.jpg", good),
        ("/other/p.jpg", good),
        (path, reference_token(OTHER_KEY, path, NOW + 60)),
    ]:
        with pytest.raises(InvalidSignature):
            signing.verify_token([KEY, OLD_KEY], bad_path, token, now=NOW)
    with pytest.raises(InvalidSignature):  # an old key no longer in the list
        signing.verify_token([KEY], path, reference_token(OLD_KEY, path, NOW + 60), now=NOW)


def test_private_token_expiry():
    path = "/private/p.jpg"
    signing.verify_token([KEY], path, reference_token(KEY, path, NOW), now=NOW)
    with pytest.raises(Expired) as err:
        signing.verify_token([KEY], path, reference_token(KEY, path, NOW - 1), now=NOW)
    assert err.value.code == "expired"
    with pytest.raises(Expired):
        signing.verify_token([KEY], path, reference_token(KEY, path, 1000))
    with pytest.raises(InvalidSignature):  # a forged expired token is invalid, not expired
        signing.verify_token([KEY], path, f"{NOW - 1}." + "0" * 64, now=NOW)


def test_a_url_signature_is_not_a_token_and_back():
    path = "/demo/a.jpg"
    sig = signing.sign(KEY, path, {"exp": str(NOW)})
    with pytest.raises(InvalidSignature):
        signing.verify_token([KEY], path, f"{NOW}.{sig}", now=NOW)
    token_sig = signing.private_token(KEY, path, NOW).split(".")[1]
    with pytest.raises(InvalidSignature):
        signing.verify([KEY], path, {"exp": str(NOW), "sig": token_sig}, now=NOW)


# -- through the app


def test_signed_and_private_urls_through_the_app(make_app, folder):
    client = client_of(
        make_app(
            {
                "s": {"origin": str(folder) + "/", "signing_key": [KEY, OLD_KEY]},
                "p": {"origin": str(folder) + "/", "signing_key": [KEY, OLD_KEY], "private": True},
            }
        )
    )

    def answer(url):
        resp = client.get(url)
        code = resp.get_json()["error"]["code"] if resp.status_code >= 400 else None
        return resp.status_code, code

    future = str(int(time.time()) + 600)
    assert answer(signing.signed_url(KEY, "/s/coffee.png", {"w": "20"})) == (200, None)
    assert answer(signing.signed_url(OLD_KEY, "/s/coffee.png", {"w": "20", "exp": future})) == (200, None)
    assert answer(signing.signed_url(OTHER_KEY, "/s/coffee.png", {"w": "20"})) == (403, "invalid_signature")
    assert answer("/s/coffee.png?w=20") == (403, "invalid_signature")
    tampered = signing.signed_url(KEY, "/s/coffee.png", {"w": "20"}).replace("w=20", "w=21")
    assert answer(tampered) == (403, "invalid_signature")
    assert answer(signing.signed_url(KEY, "/s/coffee.png", {"w": "20", "exp": "1000"})) == (403, "expired")
    assert answer(signing.signed_url(KEY, "/s/coffee.png", {"w": "20", "exp": "soon"})) == (
        400,
        "invalid_param",
    )

    resp = client.get(f"/p/coffee.png?w=20&token={signing.private_token(OLD_KEY, '/p/coffee.png', future)}")
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "BYPASS"
    assert answer(f"/p/coffee.png?w=20&token={signing.private_token(KEY, '/p/rocket.jpg', future)}") == (
        403,
        "invalid_signature",
    )
    assert answer(f"/p/coffee.png?token={signing.private_token(KEY, '/p/coffee.png', 1000)}") == (
        403,
        "expired",
    )
