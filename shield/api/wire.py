"""Answers for requests too malformed to reach the app: JSON errors, written by gunicorn.

gunicorn refuses a request line over `limit_request_line` or headers over its
limits before any WSGI code runs, and writes an HTML page. `install()`, run
from gunicorn.conf.py, replaces that writer so those answers are the
contract's JSON error with the security headers, like every other error. The
client's bytes are never echoed back.
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


def install():
    """Make gunicorn write shield's JSON errors (in the master, so every worker inherits it)."""
    from gunicorn import util  # noqa: PLC0415 - only under gunicorn

    def write_error(sock, status_int, reason, mesg):
        util.write_nonblock(sock, error_bytes(int(status_int)))

    util.write_error = write_error
