"""Who may fetch an image: signatures, private tokens, referers, rate limits.

Checked in that order, so a request with a bad signature cannot spend
anybody's quota. Misses (which cost a transform) have a budget of their own.
"""

import ipaddress
import os
import urllib.parse

from ..errors import ForbiddenReferer, InvalidSignature, RateLimited
from . import signing
from .ratelimit import RateLimiter


def referer_allowed(project, referer):
    """Host-suffix match: 'example.com' allows example.com and any subdomain of it."""
    if not project.allowed_referers:
        return True
    if not referer:
        return not project.require_referer
    host = (urllib.parse.urlsplit(referer).hostname or "").lower().rstrip(".")
    if not host:
        return False
    for allowed in project.allowed_referers:
        allowed = allowed.lower().strip(".")
        if host == allowed or host.endswith("." + allowed):
            return True
    return False


def _networks(entries):
    nets = []
    for entry in entries:
        nets.append(ipaddress.ip_network(entry, strict=False))
    return nets


class ClientAddress:
    """The client's IP: the peer's, or behind a trusted proxy the X-Forwarded-For hop before it."""

    def __init__(self, trusted_proxies):
        self.trusted = _networks(trusted_proxies)

    def _is_trusted(self, address):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def scheme(self, environ):
        """http or https as the client used it: a trusted proxy's X-Forwarded-Proto, else the server's."""
        forwarded = self.trusted and environ.get("HTTP_X_FORWARDED_PROTO")
        if forwarded and self._is_trusted(environ.get("REMOTE_ADDR") or ""):
            return forwarded.split(",")[0].strip().lower()
        return environ.get("wsgi.url_scheme", "http")

    def of(self, remote_addr, forwarded_for):
        if not self.trusted or not forwarded_for or not self._is_trusted(remote_addr):
            return remote_addr
        # Walk from the nearest hop back; the first address we do not trust is the client.
        for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                return hop
        return remote_addr


class Guard:
    def __init__(self, settings):
        self.limiter = RateLimiter(os.path.join(settings.cache_dir, "ratelimit.bin"))

    def check_request(self, project, req):
        path = f"/{project.name}/{req.path}"
        if project.private:
            token = req.args.get("token")
            if not token:
                raise InvalidSignature("This project is private: the URL needs a token parameter.")
            signing.verify_token(project.signing_key, path, token)
        elif project.signing_key:
            signing.verify(project.signing_key, path, req.args)
        self.check_public(project, req)

    def check_public(self, project, req):
        """What even a URL that needs no signature (an asset's /c/ URL) must pass."""
        self.check_referer(project, req)
        self.check_rate(project, req)

    @staticmethod
    def check_referer(project, req):
        if not referer_allowed(project, req.referer):
            raise ForbiddenReferer()

    def check_rate(self, project, req):
        self._limit(f"ip|{project.name}|{req.client_ip}", project.rate_limit, "per client")
        self._limit(f"project|{project.name}", project.project_rate_limit, "for this project")

    def check_api(self, project, key_id, endpoint):
        """A project key's calls of one edge endpoint a minute (api_rate_limits); the admin token has none."""
        if key_id is not None:
            limit = project.api_rate_limits.get(endpoint, 0)
            self._limit(f"api|{endpoint}|{key_id}", limit, f"of {endpoint} per key")

    def check_miss(self, project, req):
        self._limit(
            f"miss|{project.name}|{req.client_ip}", project.rate_limit_miss, "of new variants per client"
        )

    def _limit(self, key, limit, what):
        if limit <= 0:
            return
        allowed, retry_after = self.limiter.hit(key, limit)
        if not allowed:
            raise RateLimited(
                f"Over {limit} requests a minute {what}; retry after {retry_after} s.",
                retry_after=retry_after,
            )
