"""The distribution API (contract section 9): projects seen as distributions.

A translation only: a distribution is a project of the one registry, its purge
is the one purger, its stats the one stats store. distribution_id is the
project's name.
"""

import re
import secrets
import urllib.parse

from flask import Blueprint, request

from ..cache.purge import PurgeRequest
from ..errors import BadRequest, Conflict, InvalidParam, NotFound
from ..guard.keys import iso
from ..projects import DomainTaken
from ..settings import ConfigError
from .auth import principal
from .common import json_body, page_of, project_or_404, refused, require_https, services, time_arg

cdn = Blueprint("cdn", __name__, url_prefix="/v1/cdn")
KEY_ENDPOINTS = {"cdn.purge", "cdn.stats"}
# Distribution field -> project setting.
FIELDS = {
    "origin": "origin",
    "domain": "domain",
    "enabled": "enabled",
    "cache_ttl_seconds": "cache_ttl",
    "allowed_methods": "allowed_methods",
    "https_only": "https_only",
    "tags": "tags",
}
SETTING_FIELDS = {v: k for k, v in FIELDS.items()}
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


@cdn.before_request
def authorise():
    principal(admin_only=request.endpoint not in KEY_ENDPOINTS)


def cname():
    """The host a CNAME should point at: public_url's, else the one this request came to."""
    public = services().settings.public_url
    host = urllib.parse.urlsplit(public).hostname if public else None
    return host or request.host.partition(":")[0]


def as_distribution(project):
    return {
        "distribution_id": project.name,
        "origin": project.origin,
        "domain": project.domain or None,
        "enabled": project.enabled,
        "status": "deployed" if project.enabled else "disabled",
        "cache_ttl_seconds": project.cache_ttl,
        "allowed_methods": list(project.allowed_methods),
        "https_only": project.https_only,
        "tags": list(project.tags),
        "vendor": "shield",
        "cname": cname(),
        "created_at": iso(services().projects.created_at(project.name)),
    }


def _settings_of(body, creating):
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    allowed = set(FIELDS) | {"vendor"} | ({"name"} if creating else set())
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidParam(unknown[0], "unknown field")
    if body.get("vendor") not in (None, "shield"):
        raise InvalidParam("vendor", "only 'shield' (or no vendor) is served here")
    if creating and "origin" not in body:
        raise InvalidParam("origin", "required")
    return {FIELDS[k]: v for k, v in body.items() if k in FIELDS}


@cdn.post("/distribution/create")
def create():
    body = json_body()
    table = _settings_of(body, creating=True)
    name = body.get("name")
    if name is None:
        name = "d" + "".join(secrets.choice(_ID_CHARS) for _ in range(9))
    elif not isinstance(name, str):
        raise InvalidParam("name", "expected a string")
    try:
        project = services().projects.create(name, table)
    except (ConfigError, DomainTaken) as exc:
        raise refused(exc, SETTING_FIELDS) from None
    if project is None:
        raise Conflict(f"A distribution (project) named {name!r} exists already.")
    return as_distribution(project), 201


def _get(distribution_id):
    project = services().projects.get(distribution_id)
    if project is None:
        raise NotFound(f"No distribution {distribution_id[:63]!r}.")
    require_https(project)
    return project


@cdn.get("/distribution/get/<distribution_id>")
def get(distribution_id):
    return as_distribution(_get(distribution_id))


@cdn.get("/distribution/list")
def list_distributions():
    page, next_cursor = page_of(services().projects.all(), key=lambda p: p.name)
    return {"items": [as_distribution(p) for p in page], "next_cursor": next_cursor}


@cdn.patch("/distribution/update/<distribution_id>")
def update(distribution_id):
    _get(distribution_id)
    table = _settings_of(json_body(), creating=False)
    try:
        project = services().projects.update(distribution_id, table)
    except (ConfigError, DomainTaken) as exc:
        raise refused(exc, SETTING_FIELDS) from None
    if project is None:
        raise NotFound(f"No distribution {distribution_id[:63]!r}.")
    return as_distribution(project)


@cdn.delete("/distribution/delete/<distribution_id>")
def delete(distribution_id):
    _get(distribution_id)
    if not services().delete_project(distribution_id):
        raise NotFound(f"No distribution {distribution_id[:63]!r}.")
    return {"ok": True}


def _purge_request(body, project):
    """This API's purge body as the one purger's request, relative to the distribution."""
    unknown = sorted(set(body) - {"distribution_id", "paths", "tags", "purge_everything", "idempotency_key"})
    if unknown:
        raise InvalidParam(unknown[0], "unknown field")
    paths, prefixes = [], []
    raw_paths = body.get("paths", [])
    tags = body.get("tags", [])
    for name, value in (("paths", raw_paths), ("tags", tags)):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InvalidParam(name, "expected a list of non-empty strings")
    for raw in raw_paths:
        try:
            path = urllib.parse.urlsplit(raw).path if re.match(r"https?://", raw) else raw.split("?", 1)[0]
        except ValueError:
            raise InvalidParam("paths", f"{raw[:80]!r} is not a URL or a /path") from None
        if not path.startswith("/"):
            raise InvalidParam("paths", f"{raw[:80]!r} is not a URL or a /path")
        path = urllib.parse.unquote(path[1:])
        if path.endswith("*") or path.endswith("/") or not path:
            prefixes.append((project.name, path.rstrip("*")))
        else:
            paths.append((project.name, path))
    everything = body.get("purge_everything", False)
    if not isinstance(everything, bool):
        raise InvalidParam("purge_everything", "expected true or false")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise InvalidParam("idempotency_key", "expected a string of 1-200 characters")
    if not (paths or prefixes or tags or everything):
        raise BadRequest("Nothing to purge: give paths, tags, or purge_everything: true.")
    return PurgeRequest(
        tuple(tags),
        tuple(paths),
        tuple(prefixes),
        project.name if everything else None,
        key,
        within=project.name,
    )


@cdn.post("/cache/purge")
def purge():
    caller = principal()
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("distribution_id"), str):
        raise InvalidParam("distribution_id", "required")
    project = project_or_404(body["distribution_id"], serving=False)
    caller.require("purge", project.name)
    services().guard.check_api(project, caller.rate_key, "purge")
    result = services().purger.run(_purge_request(body, project))
    return {
        "ok": True,
        "purge_id": result["purge_id"],
        "purged": result["purged"],
        "status": result["status"],
    }


@cdn.get("/cache/stats")
def stats():
    caller = principal()
    distribution_id = request.args.get("distribution_id")
    if not distribution_id:
        raise InvalidParam("distribution_id", "required")
    project = project_or_404(distribution_id, serving=False)
    caller.require("stats", project.name)
    result = services().fleet_stats.query(project=project.name, start=time_arg("from"), end=time_arg("to"))
    result["distribution_id"] = project.name
    return result
