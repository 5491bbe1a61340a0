"""Uploads and assets (contract section 10): signed browser uploads, temporary uploads, asset CRUD.

A translation only: the multipart body streams into an unnamed temporary
file (nothing of a refused or broken-off upload is ever left behind), and
uploads.Uploads checks and keeps it.
"""

import os
import tempfile
import time
from datetime import UTC, datetime

from flask import Blueprint, request
from werkzeug.exceptions import BadRequest as WerkzeugBadRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import parse_form_data

from ..errors import (
    BadRequest,
    ForbiddenOrigin,
    ForbiddenScope,
    InvalidParam,
    InvalidUpload,
    NotFound,
    SourceTooLarge,
    Unauthorized,
)
from ..guard.keys import iso
from ..headers import allowed_origin
from ..uploads import EXTENSIONS, TEMP_PREFIX, ext_for_type, new_id, seo_name
from .auth import principal
from .common import json_body, page_of, project_or_404, require_https, services
from .edge import public_base

uploads_api = Blueprint("uploads", __name__)
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and headers around the file
MAX_SIGNED_TTL = 7 * 86400
_BY_EXTENSION = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp", "avif": "avif"}


def iso_ms(ts):
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def asset_json(asset):
    r = asset.record
    return {
        "_id": asset.id,
        "bucket": r["project"],
        "key": r["key"],
        "name": r["name"],
        "size": asset.size,
        "type": r["type"],
        "width": r["width"],
        "height": r["height"],
        "createdAt": iso_ms(r["created"]),
        "updatedAt": iso_ms(r["updated"]),
        "projectId": r["project"],
        "url": f"{public_base()}/{r['project']}/{r['key']}",
        "expiresAt": iso_ms(r.get("expires")),
    }


# -- CORS for the calls a browser makes


def _cors(project, resp_headers):
    """Allow the page's Origin per the project's cors_origins; 403 forbidden_origin for an unlisted one."""
    origin = request.headers.get("Origin")
    if not origin:
        return
    granted = allowed_origin(project.cors_origins, origin)
    if granted is None:
        raise ForbiddenOrigin(f"Uploads from {origin[:100]} are not allowed for this project.")
    resp_headers["Access-Control-Allow-Origin"] = granted
    if granted != "*":
        resp_headers["Vary"] = "Origin"


def _browser_project():
    """The project a browser call is for, from its token or public key (None when neither tells)."""
    token, key_id = request.args.get("token"), request.args.get("key")
    try:
        if token:
            return services().projects.get(services().uploads.claims(token)["p"])
        if key_id:
            key = services().keys.by_id(key_id)
            return services().projects.get(key.project) if key else None
    except Unauthorized:
        return None
    return None


@uploads_api.route("/v1/uploads", methods=["OPTIONS"])
def preflight():
    headers = {"Allow": "POST, OPTIONS", "Cache-Control": "no-store"}
    project = _browser_project()
    if project is not None and request.headers.get("Origin"):
        try:
            _cors(project, headers)
        except ForbiddenOrigin:
            return "", 204, headers
        headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked[:500]
        headers["Access-Control-Max-Age"] = "600"
    return "", 204, headers


# -- reading the file


def _read_file(max_bytes):
    """(bytes, filename, form) of the multipart field `file`, streamed and refused past max_bytes."""
    incoming = os.path.join(services().assets.root, ".incoming")
    os.makedirs(incoming, exist_ok=True)

    def stream_factory(total_content_length, content_type, filename, content_length=None):
        # Unnamed from the start: a crash or a refusal leaves nothing on disk.
        return tempfile.TemporaryFile(dir=incoming)

    try:
        _stream, form, files = parse_form_data(
            request.environ,
            stream_factory=stream_factory,
            max_content_length=max_bytes + MULTIPART_OVERHEAD,
        )
    except RequestEntityTooLarge:
        raise SourceTooLarge(f"The upload is over {max_bytes} bytes.") from None
    except (WerkzeugBadRequest, ValueError, OSError) as exc:
        raise InvalidUpload(
            f"The upload broke off or is not multipart/form-data ({type(exc).__name__})."
        ) from None
    try:
        part = files.get("file")
        if part is None:
            raise InvalidUpload("Send the image as the multipart field `file`.")
        body = part.stream.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise SourceTooLarge(f"The upload is over {max_bytes} bytes.")
        return body, part.filename or "", form
    finally:
        for stored in files.values():
            stored.close()


# -- the calls


@uploads_api.post("/v1/uploads/sign")
def sign_upload():
    caller = principal()
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    project = project_or_404(caller.project_for(body.get("project"), "assets"))
    limit = services().settings.max_source_bytes
    max_bytes = body.get("max_bytes", limit)
    if type(max_bytes) is not int or not 1 <= max_bytes <= limit:
        raise InvalidParam("max_bytes", f"expected a whole number from 1 to max_source_bytes ({limit})")
    expires_in = body.get("expires_in", 600)
    if type(expires_in) is not int or not 1 <= expires_in <= MAX_SIGNED_TTL:
        raise InvalidParam("expires_in", f"expected seconds from 1 to {MAX_SIGNED_TTL}")
    filename, content_type = body.get("filename", ""), body.get("content_type")
    if not isinstance(filename, str) or len(filename) > 1000:
        raise InvalidParam("filename", "expected a file name")
    if content_type is not None:
        fmt = ext_for_type(content_type) if isinstance(content_type, str) else None
        if fmt not in EXTENSIONS:
            raise InvalidParam(
                "content_type", "expected an image type shield keeps (image/jpeg, image/png...)"
            )
    else:
        fmt = _BY_EXTENSION.get(os.path.splitext(filename)[1][1:].lower(), "jpeg")
    key = f"{new_id()}-{seo_name(filename, fmt)}"
    expires_at = time.time() + expires_in
    token = services().uploads.token(project.name, key, max_bytes, expires_at, content_type)
    return {
        "upload_url": f"{public_base()}/v1/uploads?token={token}",
        "key": key,
        "expires_at": iso(expires_at),
    }


@uploads_api.post("/v1/uploads")
def upload():
    headers = {}
    token, key_id = request.args.get("token"), request.args.get("key")
    if token:
        claims = services().uploads.claims(token)
        project = project_or_404(claims["p"])
        _cors(project, headers)
        body, filename, _form = _read_file(claims["m"])
        if services().uploads.claims(token) != claims:  # used meanwhile by another upload
            raise Unauthorized("This upload token was used already; ask for a new one.")
        asset = services().uploads.keep(project, body, filename, key=claims["k"], content_type=claims["t"])
        return {"asset": asset_json(asset)}, 201, headers
    if not key_id:
        raise Unauthorized(
            "Send ?token=<from /v1/uploads/sign> or ?key=<a public key with the upload scope>."
        )
    key = services().keys.by_id(key_id)
    if key is None:
        raise Unauthorized("This key is unknown, revoked or expired.")
    if "upload" not in key.scopes:
        raise ForbiddenScope("This key has no 'upload' scope.")
    project = project_or_404(key.project)
    _cors(project, headers)
    body, filename, _form = _read_file(services().settings.max_source_bytes)
    asset = services().uploads.keep(project, body, filename, temp=True)
    answer = {
        "tempAssetId": asset.id,
        "name": asset.record["name"],
        "size": asset.size,
        "type": asset.record["type"],
        "expiresAt": iso_ms(asset.record["expires"]),
    }
    return answer, 201, headers


def _persist():
    caller = principal()
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("tempAssetId"), str):
        raise InvalidParam("tempAssetId", "required")
    temp_id = body["tempAssetId"]
    if caller.admin:
        temp = services().assets.get(temp_id) or services().assets.get(temp_id[len(TEMP_PREFIX) :])
        project_name = temp.project if temp is not None else None
    else:
        project_name = caller.project_for(None, "assets")
    project = services().projects.get(project_name) if project_name else None
    if project is not None:
        require_https(project)
    asset = services().uploads.persist(project, temp_id) if project is not None else None
    if asset is None:
        raise NotFound("No such temporary upload (unknown, expired, or another project's).")
    return {"asset": asset_json(asset)}


uploads_api.add_url_rule("/v1/assets/persist", "persist", _persist, methods=["POST"])
uploads_api.add_url_rule("/asset/upload/persist", "persist_legacy", _persist, methods=["POST"])


@uploads_api.post("/v1/assets")
def create_asset():
    caller = principal()
    named = request.args.get("project")
    if caller.admin and not named:
        raise BadRequest("project: required with the admin token (?project=<name>)")
    project = project_or_404(caller.project_for(named, "assets"))
    body, filename, form = _read_file(services().settings.max_source_bytes)
    name = form.get("filename") or filename
    return {"asset": asset_json(services().uploads.keep(project, body, name))}, 201


def _own(asset_id):
    caller = principal()
    asset = services().assets.get(asset_id)
    if asset is None or asset.record.get("kind") != "upload":
        raise NotFound("No such asset.")
    caller.require("assets", asset.project)
    project = services().projects.get(asset.project)
    if project is not None:
        require_https(project)
    return asset


@uploads_api.get("/v1/assets")
def list_assets():
    caller = principal()
    named = request.args.get("project")
    project = caller.project_for(named, "assets") if not caller.admin or named else None
    if project is not None:
        project_or_404(project, serving=False)
    items = [a for a in services().assets.all(project) if a.record.get("kind") == "upload"]
    page, next_cursor = page_of(items, key=lambda a: f"{a.record['created']:017.6f}{a.id}")
    return {"items": [asset_json(a) for a in page], "next_cursor": next_cursor}


@uploads_api.get("/v1/assets/<asset_id>")
def get_asset(asset_id):
    return {"asset": asset_json(_own(asset_id))}


@uploads_api.delete("/v1/assets/<asset_id>")
def delete_asset(asset_id):
    services().uploads.delete(_own(asset_id))
    return {"ok": True}
