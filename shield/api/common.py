"""What every /v1 surface shares: the worker's services, JSON bodies, times, pages, projects."""

from flask import current_app, request

from ..errors import BadRequest, Conflict, HttpsRequired, InvalidParam, ProjectNotFound
from ..guard.keys import parse_time
from ..projects import DomainTaken

DEFAULT_PAGE = 50
MAX_PAGE = 500


def services():
    return current_app.extensions["shield"]


def json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The body must be JSON (Content-Type: application/json).")
    return body


def time_arg(name):
    """An ISO 8601 query parameter as Unix seconds (a time without a zone is UTC), or None."""
    raw = request.args.get(name)
    return None if raw is None else parse_time(raw, name)


def page_of(items, key):
    """One page of `items` (sorted by `key`) from the cursor and limit query parameters."""
    try:
        limit = int(request.args.get("limit", DEFAULT_PAGE))
    except ValueError:
        raise InvalidParam("limit", "expected a whole number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidParam("limit", f"must be from 1 to {MAX_PAGE}")
    cursor = request.args.get("cursor", "")
    after = [item for item in items if key(item) > cursor]
    page = after[:limit]
    return page, key(page[-1]) if len(after) > limit else None


def config_field(exc):
    """'projects.<name>.<key>: ...' names <key>; 'projects.<name>: ...' is about the name."""
    where = str(exc).split(":", 1)[0].split(".")
    return where[2] if len(where) > 2 else "name"


def refused(exc, field_names=None):
    """A registry refusal (ConfigError or DomainTaken) as the API's error; `field_names` renames fields."""
    if isinstance(exc, DomainTaken):
        return Conflict(str(exc))
    field = config_field(exc)
    return InvalidParam((field_names or {}).get(field, field), str(exc).split(": ", 1)[-1])


def require_https(project):
    """A call about an https_only project must come over https (or a trusted proxy's https)."""
    if (
        project is not None
        and project.https_only
        and services().client_address.scheme(request.environ) != "https"
    ):
        raise HttpsRequired(f"Project {project.name!r} answers its API over https only.")


def project_or_404(name, serving=True):
    """The project; 404 project_not_found when there is none or (serving) it is disabled."""
    project = services().projects.get(name) if isinstance(name, str) else None
    if project is None or (serving and not project.enabled):
        raise ProjectNotFound(f"No project named {str(name)[:63]!r}.")
    require_https(project)
    return project
