"""Who is calling a /v1 API: the admin token, or a project key with its scopes.

Every /v1 surface asks `principal()` first. The admin token may do anything
and names the project in the body or query; a key acts for its own project
only, within its scopes (contract section 7).
"""

import hmac
from dataclasses import dataclass

from flask import g, request

from ..errors import BadRequest, ForbiddenScope, ShieldError, Unauthorized
from .common import services


class AdminDisabled(ShieldError):
    status = 404
    code = "not_found"
    default_message = "The admin API is not served here."


@dataclass(frozen=True)
class Principal:
    admin: bool
    key: object = None  # guard.keys.Key

    def project_for(self, given, scope):
        """The project a call is about: the key's own, or for the admin token the one it names."""
        if self.admin:
            if not isinstance(given, str) or not given:
                raise BadRequest('project: required with the admin token ("project": "<name>")')
            return given
        if given not in (None, "", self.key.project):
            raise ForbiddenScope("This key belongs to another project.")
        self.require(scope, self.key.project)
        return self.key.project

    def require(self, scope, project):
        if self.admin:
            return
        if scope not in self.key.scopes:
            raise ForbiddenScope(f"This key has no {scope!r} scope.")
        if project != self.key.project:
            raise ForbiddenScope("This key belongs to another project.")

    def require_admin(self):
        if not self.admin:
            raise ForbiddenScope("This call needs the admin token; a project key cannot make it.")

    @property
    def rate_key(self):
        return None if self.admin else self.key.id


def _local_port():
    """The port this request came in on, from the socket (the Host header is the client's to choose)."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        try:
            return str(sock.getsockname()[1])
        except (OSError, IndexError, TypeError):
            return ""
    return str(request.environ.get("SERVER_PORT", ""))


def _bearer():
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def principal(admin_only=False):
    """Authenticate this request once (kept on flask.g); admin-only calls refuse keys."""
    found = g.get("principal")
    if found is None:
        found = g.principal = _authenticate(admin_only)
    if admin_only:
        found.require_admin()
    return found


def _authenticate(admin_only):
    settings = services().settings
    admin_here = settings.admin_enabled and (
        not settings.admin_bind or _local_port() == settings.admin_bind.rsplit(":", 1)[-1]
    )
    if admin_only and not settings.admin_enabled:
        raise AdminDisabled("The admin API is turned off (admin_enabled = false).")
    if admin_only and not admin_here:
        raise AdminDisabled(f"The admin API is served on {settings.admin_bind} only.")
    given = _bearer()
    token = settings.admin_token
    if given and token and admin_here and hmac.compare_digest(given.encode(), token.encode()):
        return Principal(admin=True)
    key = services().keys.by_secret(given) if given else None
    if key is not None:
        return Principal(admin=False, key=key)
    if not given.startswith("sk_") and not admin_here:
        # Not a key, and the admin API is not served here: answer as if it did not exist.
        if not settings.admin_enabled:
            raise AdminDisabled("The admin API is turned off (admin_enabled = false).")
        raise AdminDisabled(f"The admin API is served on {settings.admin_bind} only.")
    if given.startswith("sk_"):
        raise Unauthorized("This key is unknown, revoked or expired.")
    if not token:
        raise Unauthorized(
            "The admin API is off until an admin token is set: add admin_token (16+ characters) "
            "under [shield] in the configuration, or set SHIELD_ADMIN_TOKEN"
            + ("." if admin_only else "; or send a project key's secret.")
        )
    raise Unauthorized("Send Authorization: Bearer <admin_token> or a project key's secret.")
