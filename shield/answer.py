"""A 200's headers and body -> the Reply the request's conditions and Range make of it.

The last step of every image answer, hits from memory and from disk alike:
If-Match / If-Unmodified-Since (412), If-None-Match / If-Modified-Since
(304), HEAD, and a single byte Range (206, or 416), plus the CORS headers of
a project that lists its origins.
"""

from dataclasses import dataclass, field

from .errors import PreconditionFailed, RangeNotSatisfiable
from .headers import FilePart, byte_range, not_modified_headers, precondition


@dataclass
class Reply:
    status: int
    headers: dict
    body: object = b""  # bytes, or an open file to stream
    x_cache: str = ""
    project: str = ""
    extra: dict = field(default_factory=dict)


def answer(req, profile, headers, etag, modified, body, x_cache, project_name):
    """The Reply for a 200's headers and body, after the request's conditions and Range.

    `body` is bytes or an open file; it is closed here unless it is sent.
    """
    if profile is not None and profile.origins:
        cors = profile.cors_for(req.origin)
        if cors is not None:
            headers.update(cors)
    if not req.conditional:  # nearly every request: no condition, no Range
        if req.head:
            if not isinstance(body, bytes):
                body.close()
            body = b""
        return Reply(200, headers, body, x_cache, project_name)
    status = precondition(req, etag, modified)
    if status != 200 or req.head:
        if not isinstance(body, bytes):
            body.close()
        if status == 412:
            raise PreconditionFailed()
        if status == 304:
            return Reply(304, not_modified_headers(headers), b"", x_cache, project_name)
        return Reply(200, headers, b"", x_cache, project_name)
    if req.range:
        size = int(headers["Content-Length"])
        span = byte_range(req, size, etag, modified)
        if span == "unsatisfiable":
            if not isinstance(body, bytes):
                body.close()
            raise RangeNotSatisfiable(size)
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers["Content-Length"] = str(end - start + 1)
            part = (
                body[start : end + 1] if isinstance(body, bytes) else FilePart(body, start, end - start + 1)
            )
            return Reply(206, headers, part, x_cache, project_name)
    return Reply(200, headers, body, x_cache, project_name)
