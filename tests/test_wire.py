"""shield.api.wire: gunicorn's early error answers, and the response headers it remembers."""

import json

import pytest
from gunicorn import util
from gunicorn.http.wsgi import Response
from hypothesis import given, settings
from hypothesis import strategies as st

from shield.api import wire

ORIGINAL = getattr(Response.process_headers, "__wrapped__", Response.process_headers)

SHIELD_HIT = [
    ("Content-Type", "image/webp"),
    ("Content-Length", "26004"),
    ("Cache-Control", "public, max-age=86400, stale-while-revalidate=60"),
    ("ETag", '"6a24a4ffde4d415af88499560e33200c"'),
    ("X-Cache", "HIT"),
    ("Server-Timing", 'cache;desc="HIT";dur=0.05'),
    ("Vary", "Accept"),
    ("Content-Security-Policy", "default-src 'none'"),
]


def blank_response():
    resp = Response.__new__(Response)  # only what process_headers reads and writes
    resp.headers, resp.response_length, resp.upgrade = [], None, False
    return resp


class Name(str):
    """A str subclass as a WSGI app might send: equal to the plain string."""


class Rigged(str):
    """Equal to anything and hashed as "Accept": it must never pass for a checked pair."""

    def __eq__(self, other):
        return True

    def __hash__(self):
        return hash("Accept")


def outcome(process, resp, headers):
    try:
        process(resp, headers)
        error = None
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        error = (type(exc), str(exc))
    types = [tuple(type(part) for part in pair) for pair in resp.headers]
    return resp.headers, types, resp.response_length, resp.upgrade, error


NAMES = st.sampled_from(
    [
        "Content-Type",
        "content-length",
        "Content-Length",
        "Connection",
        "Upgrade",
        "Keep-Alive",
        "Transfer-Encoding",
        "X-Cache",
        "Bad Name",
        "Bad:Name",
        "",
        "ETag",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        ["26004", "upgrade", "websocket", "close", " padded\t", "a\r\nX-Injected: 1", "", "x\x00y"]
    ),
    st.text(alphabet="ab 1;=\t\r\n\x7f\"'", max_size=8),
)
PAIRS = st.one_of(
    st.tuples(NAMES, VALUES),
    st.tuples(NAMES.map(Name), VALUES),
    st.tuples(NAMES, VALUES.map(Name)),
    st.tuples(st.just("X-Long-" + "n" * 300), VALUES),
    st.tuples(NAMES, VALUES).map(list),  # WSGI apps may send lists: gunicorn's code decides
    st.tuples(st.just("X-Bytes"), st.just(b"raw")),
    st.tuples(st.just(7), st.just("seven")),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(PAIRS, max_size=6), min_size=1, max_size=5))
def test_remembered_headers_give_what_gunicorn_gives(responses):
    """Each response's headers, length, upgrade flag and refusal, call after call.

    Each list of responses is sent twice, so every pair that can be remembered is.
    """
    known = {}
    fast = wire.remembering(ORIGINAL, known)
    for headers in responses + responses:
        assert outcome(fast, blank_response(), headers) == outcome(ORIGINAL, blank_response(), headers)


def test_a_hit_after_the_first_skips_the_checks_and_sends_the_same_headers():
    known = {}
    fast = wire.remembering(ORIGINAL, known)
    first, second = blank_response(), blank_response()
    fast(first, SHIELD_HIT)
    remembered = dict(known)
    fast(second, SHIELD_HIT)
    assert first.headers == second.headers == SHIELD_HIT
    assert first.response_length == second.response_length == 26004
    assert "Content-Length" not in {name for name, _ in remembered}
    assert len(remembered) == len(SHIELD_HIT) - 1 and known == remembered


def test_a_pair_that_only_compares_equal_is_checked_by_gunicorn():
    fast = wire.remembering(ORIGINAL, {})
    fast(blank_response(), [("Vary", "Accept")])
    for rigged in [("Vary", Rigged("a\r\nSet-Cookie: x=1")), ("Vary", Rigged("Accept"))]:
        assert outcome(fast, blank_response(), [rigged]) == outcome(ORIGINAL, blank_response(), [rigged])


def test_one_response_s_str_subclass_never_reaches_another():
    fast = wire.remembering(ORIGINAL, {})
    fast(blank_response(), [(Name("X-A"), "1")])
    resp = blank_response()
    fast(resp, [("X-A", "1")])
    assert [type(part) for part in resp.headers[0]] == [str, str]


def test_an_injected_header_is_refused_every_time():
    fast = wire.remembering(ORIGINAL, {})
    for _ in range(3):
        with pytest.raises(Exception, match="X-Evil"):
            fast(blank_response(), [("X-Evil", "a\r\nSet-Cookie: x=1")])


def test_the_table_of_remembered_headers_is_bounded():
    known = {}
    fast = wire.remembering(ORIGINAL, known)
    for i in range(wire.KNOWN_HEADERS_MAX * 2 + 5):
        fast(blank_response(), [("Server-Timing", f"cache;dur={i}")])
        assert len(known) <= wire.KNOWN_HEADERS_MAX


def test_long_values_are_checked_every_time_and_never_kept():
    known = {}
    fast = wire.remembering(ORIGINAL, known)
    location = ("Location", "https://img.example/demo/" + "a" * 180)
    for _ in range(2):
        resp = blank_response()
        fast(resp, [location, ("Vary", "Accept")])
        assert resp.headers == [location, ("Vary", "Accept")]
    assert list(known) == [("Vary", "Accept")]


def test_install_wraps_gunicorn_once():
    before, write_error = Response.process_headers, util.write_error
    try:
        Response.process_headers = ORIGINAL
        wire.install()
        wire.install()
        assert Response.process_headers.__wrapped__ is ORIGINAL
    finally:
        Response.process_headers, util.write_error = before, write_error


def test_refusals_written_by_gunicorn_are_the_contracts_json():
    raw = wire.error_bytes(431)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert f"Content-Length: {len(body)}".encode() in head
