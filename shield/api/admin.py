"""The management API under /v1 (contract section 6): purge, stats, projects."""

from datetime import UTC, datetime

from flask import Blueprint, request

from ..cache import purge as purge_mod
from ..errors import BadRequest, Conflict, InvalidParam, NotFound
from ..settings import ConfigError
from .auth import principal, project_or_404, services

DEFAULT_PAGE = 50
MAX_PAGE = 500

admin = Blueprint("admin", __name__, url_prefix="/v1")


KEY_ENDPOINTS = {"admin.purge", "admin.stats"}  # a project key may call these, for its own project


@admin.before_request
def authorise():
    principal(admin_only=request.endpoint not in KEY_ENDPOINTS)


def _json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The body must be JSON (Content-Type: application/json).")
    return body


@admin.post("/purge")
def purge():
    caller = principal()
    req = purge_mod.parse(_json_body())
    if not caller.admin:
        project = project_or_404(caller.key.project)
        caller.require("purge", project.name)
        services().guard.check_api(project, caller.rate_key, "purge")
        req = purge_mod.within(req, project.name)
    return services().purger.run(req)


def _time_arg(name):
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParam(
            name, f"expected an ISO 8601 time such as 2026-11-23T12:00:00Z, got {raw[:40]!r}"
        ) from None
    # A time without a zone is UTC, whatever the server's local zone.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@admin.get("/stats")
def stats():
    caller = principal()
    project = request.args.get("project")
    if not caller.admin:
        project = caller.project_for(project, "stats")
    result = services().stats.query(project=project, start=_time_arg("from"), end=_time_arg("to"))
    if project:
        result["project"] = project
    return result


@admin.get("/projects")
def list_projects():
    try:
        limit = int(request.args.get("limit", DEFAULT_PAGE))
    except ValueError:
        raise InvalidParam("limit", "expected a whole number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidParam("limit", f"must be from 1 to {MAX_PAGE}")
    cursor = request.args.get("cursor", "")
    items = [p for p in services().projects.all() if p.name > cursor]
    page = items[:limit]
    next_cursor = page[-1].name if len(items) > limit else None
    return {"items": [p.to_dict() for p in page], "next_cursor": next_cursor}


@admin.post("/projects")
def create_project():
    body = _json_body()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise BadRequest('The body must be a JSON object with a "name".')
    name = body["name"]
    table = {k: v for k, v in body.items() if k != "name"}
    try:
        project = services().projects.create(name, table)
    except ConfigError as exc:
        raise InvalidParam(_config_field(exc), str(exc).split(": ", 1)[-1]) from None
    if project is None:
        raise Conflict(f"A project named {name!r} exists already.")
    return project.to_dict(), 201


def _config_field(exc):
    """'projects.<name>.<key>: ...' names <key>; 'projects.<name>: ...' is about the name."""
    where = str(exc).split(":", 1)[0].split(".")
    return where[2] if len(where) > 2 else "name"


def _get_or_404(name):
    project = services().projects.get(name)
    if project is None:
        raise NotFound(f"No project named {name!r}.")
    return project


@admin.get("/projects/<name>")
def get_project(name):
    return _get_or_404(name).to_dict()


@admin.patch("/projects/<name>")
def update_project(name):
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if "name" in body and body["name"] != name:
        raise BadRequest("name: a project cannot be renamed")
    _get_or_404(name)
    try:
        project = services().projects.update(name, {k: v for k, v in body.items() if k != "name"})
    except ConfigError as exc:
        raise InvalidParam(_config_field(exc), str(exc).split(": ", 1)[-1]) from None
    if project is None:
        raise NotFound(f"No project named {name!r}.")
    return project.to_dict()


@admin.delete("/projects/<name>")
def delete_project(name):
    if not services().projects.delete(name):
        raise NotFound(f"No project named {name!r}.")
    # A new project of the same name starts with no keys and no assets of this one.
    services().keys.revoke_project(name)
    for asset in services().assets.all(name):
        services().assets.delete(asset)
    return {"ok": True}
