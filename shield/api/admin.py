"""The management API under /v1 (contract section 6): purge, stats, projects."""

from flask import Blueprint, request

from ..cache import purge as purge_mod
from ..errors import BadRequest, Conflict, NotFound
from ..projects import DomainTaken
from ..settings import ConfigError
from .auth import principal
from .common import json_body, page_of, project_or_404, refused, require_https, services, time_arg

admin = Blueprint("admin", __name__, url_prefix="/v1")


KEY_ENDPOINTS = {"admin.purge", "admin.stats"}  # a project key may call these, for its own project


@admin.before_request
def authorise():
    principal(admin_only=request.endpoint not in KEY_ENDPOINTS)


@admin.post("/purge")
def purge():
    caller = principal()
    req = purge_mod.parse(json_body())
    if not caller.admin:
        project = project_or_404(caller.key.project)
        caller.require("purge", project.name)
        services().guard.check_api(project, caller.rate_key, "purge")
        req = purge_mod.within(req, project.name)
    for name in purge_mod.projects_named(req):
        require_https(services().projects.get(name))
    return services().purger.run(req)


@admin.get("/stats")
def stats():
    caller = principal()
    project = request.args.get("project")
    if not caller.admin:
        project = caller.project_for(project, "stats")
    if project:
        require_https(services().projects.get(project))
    result = services().fleet_stats.query(project=project, start=time_arg("from"), end=time_arg("to"))
    if project:
        result["project"] = project
    return result


@admin.get("/projects")
def list_projects():
    page, next_cursor = page_of(services().projects.all(), key=lambda p: p.name)
    return {"items": [p.to_dict() for p in page], "next_cursor": next_cursor}


@admin.post("/projects")
def create_project():
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise BadRequest('The body must be a JSON object with a "name".')
    name = body["name"]
    table = {k: v for k, v in body.items() if k != "name"}
    try:
        project = services().projects.create(name, table)
    except (ConfigError, DomainTaken) as exc:
        raise refused(exc) from None
    if project is None:
        raise Conflict(f"A project named {name!r} exists already.")
    return project.to_dict(), 201


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
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if "name" in body and body["name"] != name:
        raise BadRequest("name: a project cannot be renamed")
    _get_or_404(name)
    try:
        project = services().projects.update(name, {k: v for k, v in body.items() if k != "name"})
    except (ConfigError, DomainTaken) as exc:
        raise refused(exc) from None
    if project is None:
        raise NotFound(f"No project named {name!r}.")
    return project.to_dict()


@admin.delete("/projects/<name>")
def delete_project(name):
    if not services().delete_project(name):
        raise NotFound(f"No project named {name!r}.")
    return {"ok": True}
