"""Answers for requests too malformed to reach the app: JSON errors, written by gunicorn.

gunicorn refuses a request line over `limit_request_line` or headers over its
limits before any WSGI code runs, and writes an HTML page. `install()`, run
from gunicorn.conf.py, replaces that writer so those answers are the
contract's JSON error with the security headers, like every other error. The
client's bytes are never echoed back.

It also remembers the response headers gunicorn has checked (`remembering`): gunicorn
matches every header's name and value against its token and value patterns on every
response, about a microsecond a header, and an image answer sends sixteen, most of them
the same on every hit. A pair it has passed before is appended as gunicorn appended it;
any other pair goes through gunicorn's own code, so what is refused, and how, is
unchanged.
"""

import json
from http import HTTPStatus

from ..errors import BadRequest, HeadersTooLarge, ShieldError, UriTooLong
from ..headers import SECURITY_HEADERS

_BY_STATUS = {414: UriTooLong, 431: HeadersTooLarge, 400: BadRequest}
_MESSAGES = {
    400: "The request is not valid HTTP/1.1.",
    403: "This request is refused.",
    417: "This Expect is not supported.",
    501: "This Transfer-Encoding is not supported.",
}
_REASONS = {400: "Bad Request", 403: "Forbidden", 414: "URI Too Long", 417: "Expectation Failed"}
_REASONS.update(
    {431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented"}
)


def error_bytes(status):
    """The whole HTTP/1.1 response for a request refused before parsing finished."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        exc = kind()
    else:
        exc = ShieldError(_MESSAGES.get(status))
        exc.status, exc.code = status, "bad_request" if 400 <= status < 500 else exc.code
    body = json.dumps(exc.to_json()).encode()
    lines = [
        f"HTTP/1.1 {status} {_reason(status)}",
        "Connection: close",
        "Content-Type: application/json",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1") + body


def _reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


KNOWN_HEADERS_MAX = 4096  # pairs remembered per process; the table starts again when full
# Longer pairs (a Location naming the request's URL, say) are checked every time, so the
# table stays under about a megabyte whatever clients ask for.
KNOWN_PAIR_MAX = 200  # characters of name and value together


def _plain(pair):
    """A (str, str) tuple of exactly those types, short enough to remember."""
    return (
        type(pair) is tuple
        and len(pair) == 2
        and type(pair[0]) is str
        and type(pair[1]) is str
        and len(pair[0]) + len(pair[1]) <= KNOWN_PAIR_MAX
    )


def remembering(process_headers, known=None):
    """gunicorn's Response.process_headers, skipping its checks for pairs it passed before.

    Only exact (str, str) tuples are looked up or kept: a subclass could compare equal to
    a kept pair and hold something else, so anything else goes through gunicorn's code.
    """
    known = {} if known is None else known

    def process(self, headers):
        for pair in headers:
            plain = _plain(pair)
            passed = known.get(pair) if plain else None
            if passed is not None:
                self.headers.append(passed)
                continue
            before = len(self.headers)
            process_headers(self, (pair,))
            added = self.headers[before:]
            # Only a plain header is remembered: gunicorn kept it and set nothing else
            # (Content-Length also sets the length; Connection and the other hop-by-hop
            # headers are not kept).
            if plain and len(added) == 1 and added[0][0].lower() != "content-length":
                if len(known) >= KNOWN_HEADERS_MAX:
                    known.clear()
                known[pair] = added[0]

    process.__wrapped__ = process_headers
    process.remembers_headers = True
    return process


def install():
    """Make gunicorn write shield's JSON errors and remember the headers it has checked.

    Run in the master (gunicorn.conf.py's on_starting), so every worker inherits both.
    """
    from gunicorn import util  # noqa: PLC0415 - only under gunicorn
    from gunicorn.http.wsgi import Response  # noqa: PLC0415

    if not getattr(Response.process_headers, "remembers_headers", False):
        Response.process_headers = remembering(Response.process_headers)

    def write_error(sock, status_int, reason, mesg):
        util.write_nonblock(sock, error_bytes(int(status_int)))

    util.write_error = write_error
