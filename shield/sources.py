"""Which files a request may name by URL: the project's origin, or its source_domains (no I/O).

Both the edge API's optimize (`source`) and path-style URLs (`imageUrl`) name a
file by host and path. A file under the project's HTTP origin resolves to its
path there, so it shares the original cache with `/<project>/<path>` URLs;
a file of a listed source domain resolves to (path, base URL of that host).
Anything else is refused: a host is compared as written, never resolved.
"""

import re
import urllib.parse

from .origin import safe_segments

# A host name as DNS writes it, or an IPv4 address: nothing a URL parser and an HTTP
# client could read two ways (a backslash, a percent sign, brackets, userinfo).
HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_HOST_PORT = re.compile(r"(?P<host>[^:]+)(:(?P<port>[0-9]{1,5}))?")
MAX_URL = 2048


class SourceRefused(ValueError):
    """The named file is not one this project may fetch; the message says why."""


def _entry(entry):
    """A source_domains entry -> (scheme, host, port or None)."""
    scheme = "http" if entry.startswith("http://") else "https"
    host, _, port = entry.split("://", 1)[-1].partition(":")
    return scheme, host, int(port) if port else None


def matching_domain(project, host, port, scheme=None):
    """The base URL of the source_domains entry admitting host:port (and scheme, when given), or None.

    An entry admits its host and every subdomain of it, on its own port only.
    """
    for entry in project.source_domains:
        want_scheme, want_host, want_port = _entry(entry)
        if scheme not in (None, want_scheme) or port != want_port:
            continue
        if host == want_host or host.endswith("." + want_host):
            return f"{want_scheme}://{host}{f':{port}' if port else ''}/"
    return None


def file_path(raw, decoded=False):
    """A URL's path (percent-encoded unless `decoded`, without its leading slash) as a safe file path."""
    path = raw if decoded else urllib.parse.unquote(raw)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceRefused("the path is not UTF-8 text") from None
    if safe_segments(path) is None:
        raise SourceRefused("the path is empty or not a plain file path")
    return path


def _origin_parts(project):
    if not project.is_http:
        return None
    parts = urllib.parse.urlsplit(project.origin)
    return parts.scheme, (parts.hostname or "").lower(), parts.port, parts.path


def resolve_url(project, source):
    """An absolute http(s) URL or a /path -> (path, via); SourceRefused otherwise."""
    if not isinstance(source, str) or not source.strip():
        raise SourceRefused("required, a URL under the project's origin or a path under it")
    source = source.strip()
    if len(source) > MAX_URL:
        raise SourceRefused(f"at most {MAX_URL} characters")
    try:
        parts = urllib.parse.urlsplit(source)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise SourceRefused("not a URL that can be read") from None
    if not parts.scheme and not parts.netloc and source.startswith("/"):
        return file_path(parts.path[1:]), None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceRefused("expected an http(s) URL under the project's origin, or a /path")
    origin = urllib.parse.urlsplit(project.origin) if project.is_http else None
    if (
        origin is not None
        and (parts.scheme, parts.netloc.lower()) == (origin.scheme, origin.netloc.lower())
        and parts.path.startswith(origin.path)
    ):
        return file_path(parts.path[len(origin.path) :]), None
    if parts.username is not None or not HOST.fullmatch(host) or parts.netloc.count(":") > 1:
        raise SourceRefused("the URL's host is not a plain host name")
    via = matching_domain(project, host, port, parts.scheme)
    if via is None:
        raise SourceRefused("not under this project's origin, and its host is not in source_domains")
    return file_path(parts.path[1:]), via


def resolve_host_path(project, image_url):
    """A path-style URL's `host[:port]/path` -> (path, via); SourceRefused otherwise.

    Fetched over https, unless the matching source_domains entry says http:// (or the
    host is the project's own HTTP origin, fetched as the origin says). `image_url` is
    decoded already (the server's PATH_INFO): it is not decoded again, so one signed
    URL names one file. A `?` or `#` in it is refused: the signed string puts `?exp=`
    after it, and the two must never be confused.
    """
    if len(image_url) > MAX_URL:
        raise SourceRefused(f"at most {MAX_URL} characters")
    if "?" in image_url or "#" in image_url:
        raise SourceRefused("the path may not hold ? or #")
    host_port, slash, raw_path = image_url.partition("/")
    if not slash or "@" in host_port:
        raise SourceRefused("expected host[:port]/path, with no user name")
    found = _HOST_PORT.fullmatch(host_port.lower())
    if found is None or not HOST.fullmatch(found["host"]):
        raise SourceRefused("the host is not a plain host name")
    host = found["host"]
    port = int(found["port"]) if found["port"] else None
    origin = _origin_parts(project)
    if origin is not None and (host, port) == (origin[1], origin[2]):
        prefix = origin[3][1:]
        if not raw_path.startswith(prefix):
            raise SourceRefused(f"on the origin's host, only files under /{prefix}")
        return file_path(raw_path[len(prefix) :], decoded=True), None
    via = matching_domain(project, host, port)
    if via is None:
        raise SourceRefused(f"{host_port[:100]} is not the project's origin nor in its source_domains")
    return file_path(raw_path, decoded=True), via
