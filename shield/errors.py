"""The one exception tree of shield: every error a client can see.

    ShieldError
    ├── InvalidParam            400 invalid_param
    ├── BadRequest              400 bad_request
    ├── InvalidSource           400 invalid_source
    ├── InvalidUpload           400 invalid_upload
    ├── Unauthorized            401 unauthorized
    ├── Forbidden               403
    │   ├── InvalidSignature        invalid_signature
    │   ├── Expired                 expired
    │   ├── ForbiddenReferer        forbidden_referer
    │   ├── HttpsRequired           https_required
    │   ├── ForbiddenOrigin         forbidden_origin
    │   ├── ForbiddenScope          forbidden_scope
    │   └── ForbiddenSource         forbidden_source
    ├── NotFound                404 not_found
    │   └── ProjectNotFound         project_not_found
    ├── MovedToHttps            301 https_required    (Location; an https_only image)
    ├── MethodNotAllowed        405 method_not_allowed (Allow)
    ├── NotAcceptable           406 not_acceptable
    ├── Conflict                409 conflict
    ├── Gone                    410 gone
    ├── PreconditionFailed      412 precondition_failed
    ├── SourceTooLarge          413 source_too_large
    ├── QuotaExceeded           413 quota_exceeded
    ├── UriTooLong              414 uri_too_long
    ├── UnsupportedSource       415 unsupported_source
    ├── RangeNotSatisfiable     416 range_not_satisfiable (Content-Range)
    ├── RateLimited             429 rate_limited      (Retry-After)
    ├── HeadersTooLarge         431 headers_too_large
    ├── Overloaded              503 overloaded        (Retry-After)
    ├── NotReady                503 not_ready         (a cluster node still replaying)
    ├── ClusterUnavailable      503 cluster_unavailable (a cluster write while Redis is away)
    └── OriginFailure
        ├── OriginError         502 origin_error
        │   ├── OriginUnreachable   (no connection: refused, DNS)
        │   └── OriginPrivateAddress (a private, loopback or link-local peer)
        └── OriginTimeout       504 origin_timeout

The web layer turns any of these into the contract's JSON body; nothing else
builds error JSON.
"""


class ShieldError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Something went wrong inside shield."
    retry_after = None
    headers = ()  # extra response headers: Allow, Location
    cache_control = "no-store"  # an origin 404/410 may be kept for what is left of negative_ttl

    def __init__(self, message=None, *, retry_after=None, headers=()):
        super().__init__(message or self.default_message)
        if retry_after is not None:
            self.retry_after = retry_after
        if headers:
            self.headers = tuple(headers)

    @property
    def message(self):
        return str(self)

    def to_json(self):
        return {"error": {"code": self.code, "message": self.message}}


class InvalidParam(ShieldError):
    status = 400
    code = "invalid_param"

    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.param = name


class BadRequest(ShieldError):
    status = 400
    code = "bad_request"


class InvalidSource(ShieldError):
    status = 400
    code = "invalid_source"
    default_message = "source must be a URL under the project's origin, or a path under it."


class InvalidUpload(ShieldError):
    status = 400
    code = "invalid_upload"
    default_message = "The upload is not a whole image: send it as the multipart field `file`."


class Unauthorized(ShieldError):
    status = 401
    code = "unauthorized"
    default_message = "Send Authorization: Bearer <admin_token>."


class Forbidden(ShieldError):
    status = 403
    code = "forbidden"


class InvalidSignature(Forbidden):
    code = "invalid_signature"
    default_message = "The sig parameter is missing or does not match this URL."


class Expired(Forbidden):
    code = "expired"
    default_message = "This URL has expired (exp is in the past)."


class ForbiddenReferer(Forbidden):
    code = "forbidden_referer"
    default_message = "This project does not serve pages of that Referer."


class ForbiddenScope(Forbidden):
    code = "forbidden_scope"
    default_message = "This key may not make this call (its scopes or its project do not allow it)."


class ForbiddenOrigin(Forbidden):
    code = "forbidden_origin"
    default_message = "This project takes browser uploads from its cors_origins only."


class ForbiddenSource(Forbidden):
    code = "forbidden_source"
    default_message = "This project may not fetch from that host (see source_domains)."


class NotFound(ShieldError):
    status = 404
    code = "not_found"
    default_message = "No such image at the origin."


class ProjectNotFound(NotFound):
    code = "project_not_found"
    default_message = "No such project."


class MethodNotAllowed(ShieldError):
    status = 405
    code = "method_not_allowed"
    default_message = "This method is not allowed here."

    def __init__(self, allowed=("GET", "HEAD", "OPTIONS"), message=None):
        super().__init__(
            message or f"This method is not allowed here: this URL answers {', '.join(allowed)}.",
            headers=[("Allow", ", ".join(allowed))],
        )


class NotAcceptable(ShieldError):
    status = 406
    code = "not_acceptable"
    default_message = "The Accept header admits no image type shield makes."


class PreconditionFailed(ShieldError):
    status = 412
    code = "precondition_failed"
    default_message = "If-Match names no current version of this image."


class UriTooLong(ShieldError):
    status = 414
    code = "uri_too_long"
    default_message = "The request line is longer than 8,190 bytes."


class RangeNotSatisfiable(ShieldError):
    status = 416
    code = "range_not_satisfiable"
    default_message = "The Range asks for no byte of this image."

    def __init__(self, size):
        super().__init__(
            f"The Range asks for no byte of this image ({size} bytes).",
            headers=[("Content-Range", f"bytes */{size}")],
        )


class HeadersTooLarge(ShieldError):
    status = 431
    code = "headers_too_large"
    default_message = "The request headers are too many or too large."


class MovedToHttps(ShieldError):
    status = 301
    code = "https_required"
    default_message = "This project is served over https only."

    def __init__(self, location):
        super().__init__(
            f"This project is served over https only: {location}", headers=[("Location", location)]
        )


class HttpsRequired(Forbidden):
    code = "https_required"
    default_message = "This project's API is answered over https only."


class Conflict(ShieldError):
    status = 409
    code = "conflict"


def cacheable(exc, max_age):
    """An origin 404/410 a cache may keep for `max_age` seconds (what is left of negative_ttl)."""
    if max_age > 0:
        exc.cache_control = f"public, max-age={int(max_age)}"
    return exc


class Gone(ShieldError):
    status = 410
    code = "gone"
    default_message = "The origin says this image is gone for good."


class SourceTooLarge(ShieldError):
    status = 413
    code = "source_too_large"


class QuotaExceeded(ShieldError):
    status = 413
    code = "quota_exceeded"


class UnsupportedSource(ShieldError):
    status = 415
    code = "unsupported_source"
    default_message = "The original is not a JPEG, PNG, GIF, WebP, AVIF/HEIC or TIFF image."


class RateLimited(ShieldError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests; retry after the Retry-After seconds."


class Overloaded(ShieldError):
    status = 503
    code = "overloaded"
    default_message = "shield is busy transforming images; retry after the Retry-After seconds."


class NotReady(ShieldError):
    status = 503
    code = "not_ready"
    default_message = "This node is replaying the purges it missed; it serves again when it has caught up."


class ClusterUnavailable(ShieldError):
    status = 503
    code = "cluster_unavailable"
    default_message = "Redis, which holds the cluster's projects and keys, cannot be reached: retry shortly."
    retry_after = 5


class OriginFailure(ShieldError):
    """The origin could not give a usable answer; a stale copy may stand in."""

    status = 502
    code = "origin_error"


class OriginError(OriginFailure):
    default_message = "The origin failed or sent bytes that do not decode."


class OriginUnreachable(OriginError):
    default_message = "The origin could not be reached."


class OriginPrivateAddress(OriginError):
    default_message = (
        "The origin resolves to a private, loopback or link-local address; "
        "set allow_private_origin = true for this project if that is intended."
    )


class OriginTimeout(OriginFailure):
    status = 504
    code = "origin_timeout"
    default_message = "The origin did not answer within origin_timeout."
