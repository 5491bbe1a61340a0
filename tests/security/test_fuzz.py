"""Property-based fuzzing of the public URL surface and of the originals' bytes.

No input, however malformed, may answer 500 or stop the app from serving.
A few hundred examples by default, the same ones on every run (derandomized),
so the suite stays quick and repeatable; set SHIELD_FUZZ_EXAMPLES=5000 to run
that many examples per test, randomly chosen, for a deeper search.
"""

import itertools
import json
import os
import urllib.parse

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from shield.params import KNOWN
from tests import imaging
from tests.security import client_of

_DEEP = os.environ.get("SHIELD_FUZZ_EXAMPLES")


def fuzz_settings(default_examples):
    return settings(
        max_examples=int(_DEEP) if _DEEP else default_examples,
        deadline=None,
        derandomize=not _DEEP,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


URL_STATUSES = {200, 206, 304, 400, 404, 406, 412, 413, 415, 416}
CODES = {
    400: {"invalid_param", "bad_request"},
    401: {"unauthorized"},
    404: {"not_found", "project_not_found"},
    405: {"method_not_allowed"},
    406: {"not_acceptable"},
    412: {"precondition_failed"},
    416: {"range_not_satisfiable"},
    413: {"source_too_large"},
    415: {"unsupported_source"},
    502: {"origin_error"},
}


def check_answer(resp, method, allowed):
    if currently_in_test_context():
        event(f"status {resp.status_code}")  # shown by --hypothesis-show-statistics
    assert resp.status_code in allowed, (resp.status_code, resp.data[:300])
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    if resp.status_code >= 400:
        assert resp.content_type == "application/json"
        if method == "HEAD":
            assert resp.data == b""
            return
        body = json.loads(resp.data)
        assert set(body) == {"error"}
        assert body["error"]["code"] in CODES[resp.status_code], body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    elif resp.status_code in (200, 206):
        assert resp.headers["Content-Type"].split(";")[0] in (
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/avif",
            "application/json",
        )
        assert int(resp.headers["Content-Length"]) > 0
        if method == "GET":
            assert len(resp.data) == int(resp.headers["Content-Length"])


@pytest.fixture
def fuzz_app(make_app, folder):
    # Small limits keep every transform quick; the paths through the code are the same.
    return make_app(
        {
            "demo": {
                "origin": str(folder) + "/",
                "rate_limit": 0,
                "rate_limit_miss": 0,
                "max_width": 600,
                "max_height": 600,
            }
        },
        max_output_pixels=250_000,
        max_source_pixels=4_000_000,
    )


def assert_still_serving(client):
    resp = client.get("/demo/rocket.jpg?w=64")
    assert resp.status_code == 200 and imaging.decode(resp.data).size == (64, 43)


# -- (a) URL parameters

PARAM_NAMES = [*KNOWN, "sig", "exp", "token"]
VALID_VALUES = {
    "w": ["1", "64", "600", "8192", "99999"],
    "h": ["1", "48", "600", "99999"],
    "dpr": ["1", "1.5", "2", "3.9999", "4"],
    "fit": ["cover", "contain", "fill", "inside", "face", "auto"],
    "q": ["1", "50", "80", "100"],
    "fmt": ["auto", "avif", "webp", "jpeg", "png"],
    "blur": ["true", "false", "1", "0"],
    "lqip": ["true", "false", "1", "0"],
    "bx": ["1", "4", "9"],
    "by": ["1", "3", "9"],
}
EDGE_VALUES = [
    "",
    "0",
    "-1",
    "+5",
    " 5",
    "5 ",
    "1e3",
    "0x10",
    "1.",
    ".5",
    "NaN",
    "inf",
    "٣",
    "１２",
    "9" * 40,
    "\x00",
    "%00",
    "true\x00",
    "TRUE",
    "a" * 5000,
    "🙂",
    "\ud800",
]

values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(EDGE_VALUES),
    st.integers(min_value=-10, max_value=10**7).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def query_params(draw):
    params = {}
    for name in draw(st.lists(st.sampled_from(PARAM_NAMES), max_size=6, unique=True)):
        if name in VALID_VALUES and draw(st.booleans()):
            params[name] = draw(st.sampled_from(VALID_VALUES[name]))
        else:
            params[name] = draw(values)
    for _ in range(draw(st.integers(0, 2))):
        params[draw(st.text(min_size=0, max_size=12))] = draw(values)
    return params


def encode_query(params):
    return urllib.parse.urlencode(
        [(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass")) for k, v in params.items()]
    )


raw_queries = st.one_of(
    st.text(alphabet=st.sampled_from("wh=&%;+#?/.0123456789abcdefxyzWH\\ \t"), max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)

headers = st.fixed_dictionaries(
    {},
    optional={
        "Accept": st.one_of(
            st.sampled_from(["image/avif,image/webp,*/*", "image/webp", "*/*", "", "image/*;q=0"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
        ),
        "If-None-Match": st.one_of(
            st.just("*"), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
        ),
        "Referer": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        "Range": st.one_of(
            st.sampled_from(["bytes=0-99", "bytes=-10", "bytes=5-", "bytes=99999999-", "bytes=1-2,4-5"]),
            st.text(alphabet=st.sampled_from("bytes=-,0123456789 "), max_size=24),
        ),
        "If-Match": st.sampled_from(["*", '"nope"', "", 'W/"x"']),
        "If-Modified-Since": st.sampled_from(
            ["Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT", "x"]
        ),
        "If-Range": st.sampled_from(['"nope"', "Thu, 01 Jan 1970 00:00:00 GMT", "junk"]),
        "X-Forwarded-For": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    },
)


@fuzz_settings(250)
@given(
    method=st.sampled_from(["GET", "HEAD"]),
    image=st.sampled_from(["rocket.jpg", "coffee.png", "missing.jpg"]),
    query=st.one_of(query_params().map(encode_query), raw_queries),
    extra_headers=headers,
)
def test_url_parameters_never_break_the_app(fuzz_app, method, image, query, extra_headers):
    client = client_of(fuzz_app)
    resp = client.open(f"/demo/{image}", method=method, query_string=query, headers=extra_headers)
    check_answer(resp, method, URL_STATUSES)
    if image == "missing.jpg":
        assert resp.status_code in (400, 404, 406)


path_segments = st.one_of(
    st.sampled_from(
        ["..", ".", "", "%2e%2e", "%252e", "rocket.jpg", "coffee.png", "a\\b", "%00", "~", "CON"]
    ),
    st.text(max_size=12).map(lambda s: urllib.parse.quote(s.encode("utf-8", "surrogatepass"), safe="")),
    st.text(alphabet=st.sampled_from("./\\%2eE0aé "), max_size=12),
)


@fuzz_settings(100)
@given(
    project=st.sampled_from(["demo", "nope", "v1", "health", "%64emo", ""]),
    segments=st.lists(path_segments, min_size=1, max_size=6),
)
def test_paths_never_break_the_app(fuzz_app, project, segments):
    client = client_of(fuzz_app)
    raw = f"/{project}/" + "/".join(segments)
    # As a server hands it over: PATH_INFO is the percent-decoded path, bytes as latin-1.
    path_info = urllib.parse.unquote_to_bytes(raw).decode("latin-1")
    resp = client.get(
        "/",
        query_string="w=32",
        environ_overrides={"PATH_INFO": path_info, "RAW_URI": raw, "REQUEST_URI": raw},
    )
    # /v1 is the admin API: without the token nothing under it answers but 401, 404 or 405.
    # /health/<anything> is no route: 404. Every answer keeps the JSON error contract.
    if project == "v1":
        check_answer(resp, "GET", {401, 404, 405})
    elif project == "health":
        check_answer(resp, "GET", {404, 405})
    else:
        check_answer(resp, "GET", {200, 400, 404, 405})


# -- (b) the originals' bytes


def small_gif():
    return imaging.animated_gif(3, (48, 32))


def small_webp():
    im = Image.new("RGBA", (48, 32), (0, 0, 0, 0))
    im.paste(Image.new("RGBA", (24, 16), (255, 0, 0, 255)), (12, 8))
    return imaging.encode(im, "WEBP", quality=70)


def small_png():
    return imaging.encode(imaging.rgba_logo(48, 32), "PNG")


def small_tiff():
    return imaging.encode(Image.new("RGB", (48, 32), (10, 200, 30)), "TIFF")


def small_avif():
    return imaging.encode(Image.new("RGB", (48, 32), (10, 30, 200)), "AVIF", quality=50)


SEEDS = {
    "rocket.jpg": imaging.sample("rocket.jpg"),
    "coffee.png": imaging.sample("coffee.png"),
    "small.gif": small_gif(),
    "small.webp": small_webp(),
    "small.png": small_png(),
    "exif.jpg": imaging.exif_rotated_jpeg(6, (64, 32)),
    "small.tiff": small_tiff(),
    "small.avif": small_avif(),
}


@st.composite
def mutated_image(draw):
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "flip-head", "truncate", "splice", "insert", "overwrite-head"]))
        n = len(data)
        if n == 0:
            break
        if op in ("flip", "flip-head"):
            # The header is where the type and size are read: mutate it most.
            at = draw(st.integers(0, min(n, 512) - 1 if op == "flip-head" else n - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            data = data[: draw(st.integers(0, n - 1))]
        elif op == "splice":
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            data = data[: draw(st.integers(0, n))] + other[draw(st.integers(0, len(other))) :]
        elif op == "insert":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            at = draw(st.integers(0, min(n, 64)))
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
    return name, bytes(data)


_names = itertools.count()
BYTES_STATUSES = {200, 400, 413, 415, 502}


@fuzz_settings(150)
@given(
    image=mutated_image(),
    query=st.sampled_from(
        [
            "w=40",
            "",
            "w=40&h=40&fit=contain&fmt=png",
            "lqip=true",
            "blur=true",
            "w=40&fmt=webp",
            "w=48&h=48&fit=auto",
        ]
    ),
)
def test_mutated_originals_never_break_the_app(fuzz_app, folder, image, query):
    seed, body = image
    name = f"fuzz-{next(_names)}-{seed}"
    (folder / name).write_bytes(body)
    client = client_of(fuzz_app)
    for method in ("GET", "HEAD"):
        resp = client.open(f"/demo/{name}", method=method, query_string=query)
        check_answer(resp, method, BYTES_STATUSES)
    assert_still_serving(client)


def test_the_fuzz_targets_are_live(fuzz_app, folder):
    """The checks above can fail: a known 500 and a known-bad status are caught."""
    client = client_of(fuzz_app)
    assert_still_serving(client)
    with pytest.raises(AssertionError):
        check_answer(client.get("/demo/rocket.jpg?w=40"), "GET", {404})
    with pytest.raises(AssertionError):
        check_answer(client.get("/demo/rocket.jpg?w=0"), "GET", {200})
    (folder / "seed.gif").write_bytes(SEEDS["small.gif"])
    resp = client.get("/demo/seed.gif?w=40")
    check_answer(resp, "GET", BYTES_STATUSES)
    assert resp.status_code == 200
