"""Project keys under /v1/projects/<name>/keys (contract section 7): the admin token manages them."""

from flask import Blueprint, request

from ..errors import BadRequest, NotFound
from ..guard.keys import parse_time
from .auth import principal
from .common import project_or_404, services

keys_api = Blueprint("keys", __name__, url_prefix="/v1/projects/<name>/keys")


@keys_api.before_request
def authorise():
    principal(admin_only=True)


def _body():
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object (Content-Type: application/json).")
    return body


@keys_api.post("")
def create_key(name):
    project = project_or_404(name, serving=False)
    body = _body()
    unknown = set(body) - {"name", "scopes", "expires_at"}
    if unknown:
        raise BadRequest(f"{sorted(unknown)[0]}: unknown field")
    expires = body.get("expires_at")
    key = services().keys.create(
        project.name,
        name=body.get("name") or "",
        scopes=body.get("scopes"),
        expires=parse_time(expires, "expires_at") if expires is not None else None,
    )
    return key.to_json(with_secret=True), 201


@keys_api.get("")
def list_keys(name):
    project = project_or_404(name, serving=False)
    return {"items": [key.to_json() for key in services().keys.list(project.name)]}


@keys_api.post("/<key_id>/rotate")
def rotate_key(name, key_id):
    project = project_or_404(name, serving=False)
    key = services().keys.rotate(project.name, key_id)
    if key is None:
        raise NotFound(f"No usable key {key_id[:40]!r} in project {name!r}.")
    return key.to_json(with_secret=True), 201


@keys_api.delete("/<key_id>")
def revoke_key(name, key_id):
    project = project_or_404(name, serving=False)
    if not services().keys.revoke(project.name, key_id):
        raise NotFound(f"No key {key_id[:40]!r} in project {name!r}.")
    return {"ok": True}
