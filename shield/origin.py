"""Where originals come from: a local folder or an HTTP(S) server.

Both answer `fetch(path, etag=None, last_modified=None)` with a Fetched, or
raise the contract's errors: NotFound (404), Gone (410), SourceTooLarge (413),
OriginError (502), OriginTimeout (504).
"""

import contextlib
import email.utils
import ipaddress
import os
import re
import time
import urllib.parse
from dataclasses import dataclass

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .cache.tags import origin_tags
from .errors import (
    Gone,
    NotFound,
    OriginError,
    OriginPrivateAddress,
    OriginTimeout,
    OriginUnreachable,
    SourceTooLarge,
)

MAX_REDIRECTS = 3
MAX_PATH = 1024  # characters of a file path; longer is no file anybody serves
MAX_SEGMENT = 255  # bytes of one path segment: the limit of every common filesystem
USER_AGENT = "shield/1.0 (+image origin shield)"
_SEGMENT_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class Fetched:
    """An origin's answer: a new body (status 200) or "not modified" (304)."""

    status: int
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    max_age: int | None = None  # from Cache-Control; None: the origin said nothing
    tags: tuple = ()


@dataclass(frozen=True)
class Probed:
    """What a HEAD (or a folder's stat) tells of a file without reading it."""

    size: int | None
    content_type: str | None = None


def safe_segments(path):
    """The path's segments, or None when it is empty, absolute or tries to climb out."""
    if not path or path.startswith("/") or len(path) > MAX_PATH:
        return None
    segments = path.split("/")
    for seg in segments:
        if seg in ("", ".", "..") or _SEGMENT_BAD.search(seg) or len(seg.encode()) > MAX_SEGMENT:
            return None
    return segments


def freshness(cache_control):
    """Seconds of freshness an origin's Cache-Control grants (s-maxage first), or None."""
    if not cache_control:
        return None
    directives = {}
    for part in cache_control.lower().split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip()] = value.strip().strip('"')
    if {"no-store", "no-cache", "private"} & directives.keys():
        return 0
    for name in ("s-maxage", "max-age"):
        if name in directives:
            try:
                return max(0, int(directives[name]))
            except ValueError:
                return 0
    return None


class FolderOrigin:
    """Files under one folder; nothing outside it is ever read, symlinks included."""

    def __init__(self, root, max_bytes):
        self.root = os.path.realpath(root)
        self.max_bytes = max_bytes

    def head(self, path):
        st = os.stat(self._full(path))
        return Probed(st.st_size)

    def _full(self, path):
        """The file's real path inside the folder, or NotFound."""
        segments = safe_segments(path)
        if segments is None:
            raise NotFound()
        full = os.path.realpath(os.path.join(self.root, *segments))
        if (
            os.path.commonpath([full, self.root]) != self.root
            or full == self.root
            or not os.path.isfile(full)
        ):
            raise NotFound()
        return full

    def fetch(self, path, etag=None, last_modified=None):
        segments = safe_segments(path)
        if segments is None:
            raise NotFound()
        full = os.path.realpath(os.path.join(self.root, *segments))
        if os.path.commonpath([full, self.root]) != self.root or full == self.root:
            raise NotFound()
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound() from None
        except OSError as exc:
            raise OriginError(f"The origin folder cannot be read: {exc.strerror}") from None
        if not os.path.isfile(full):
            raise NotFound()
        validator = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        if etag == validator:
            return Fetched(304, etag=validator)
        if st.st_size > self.max_bytes:
            raise SourceTooLarge(
                f"The original is {st.st_size} bytes, over max_source_bytes ({self.max_bytes})."
            )
        try:
            with open(full, "rb") as fh:
                body = fh.read(self.max_bytes + 1)
        except OSError as exc:
            raise OriginError(f"The origin folder cannot be read: {exc.strerror}") from None
        return Fetched(
            200, body, etag=validator, last_modified=email.utils.formatdate(st.st_mtime, usegmt=True)
        )


def _is_public(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PublicOnly:
    """A connection that refuses, once connected, any peer that is not a public address.

    Checking the connected socket rather than a DNS answer leaves no window for
    DNS rebinding.
    """

    def connect(self):
        super().connect()
        peer = self.sock.getpeername()[0]
        if not _is_public(peer):
            self.sock.close()
            raise _PrivateAddress(peer)


class _PrivateAddress(Exception):
    pass


class _PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


def gevent_patched():
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a requirement
        return False
    return monkey.is_module_patched("socket")


@contextlib.contextmanager
def _total_deadline(seconds):
    """One deadline for connect, headers and body (gevent only: sockets yield to it)."""
    if not gevent_patched():
        yield None
        return
    import gevent

    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        yield timer
    finally:
        timer.close()


class HttpOrigin:
    """Files under one http(s):// URL prefix, fetched over pooled connections."""

    def __init__(self, base, max_bytes, timeout, allow_private=False, pool_size=16):
        self.base = base
        self.max_bytes = max_bytes
        self.timeout = timeout
        parts = urllib.parse.urlsplit(base)
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.session = requests.Session()
        adapter_cls = HTTPAdapter if allow_private else _PublicAdapter
        adapter = adapter_cls(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "image/*"}
        )

    def close(self):
        self.session.close()

    def url_for(self, path):
        segments = safe_segments(path)
        if segments is None:
            raise NotFound()
        return self.base + "/".join(urllib.parse.quote(s, safe="@:+,;=!$&'()*") for s in segments)

    def fetch(self, path, etag=None, last_modified=None):
        url = self.url_for(path)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._within_deadline(lambda started: self._fetch(url, headers, started))

    def head(self, path):
        """One HEAD request: the file's size and type as the origin tells them."""
        url = self.url_for(path)
        return self._within_deadline(lambda started: self._head(url, started))

    def _within_deadline(self, run):
        """run(started) under one deadline, its failures as the contract's errors."""
        started = time.monotonic()
        with _total_deadline(self.timeout) as timer:
            try:
                return run(started)
            except requests.Timeout:
                raise OriginTimeout() from None
            except _PrivateAddress:
                raise OriginPrivateAddress() from None
            except requests.exceptions.ConnectionError:
                raise OriginUnreachable() from None
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise OriginError(f"The origin's answer broke off: {type(exc).__name__}") from None
            except BaseException as exc:
                if timer is not None and exc is timer:
                    raise OriginTimeout() from None
                raise

    def _head(self, url, started):
        for _ in range(MAX_REDIRECTS + 1):
            left = max(0.05, self.timeout - (time.monotonic() - started))
            resp = self.session.head(url, allow_redirects=False, timeout=(min(left, 5.0), left))
            with resp:
                if resp.status_code in (301, 302, 303, 307, 308):
                    url = self._same_host_redirect(url, resp.headers.get("Location"))
                    continue
                if resp.status_code == 404:
                    raise NotFound()
                if resp.status_code == 410:
                    raise Gone()
                if resp.status_code != 200:
                    raise OriginError(f"The origin answered {resp.status_code}.")
                length = resp.headers.get("Content-Length", "")
                return Probed(int(length) if length.isdigit() else None, resp.headers.get("Content-Type"))
        raise OriginError(f"The origin redirected more than {MAX_REDIRECTS} times.")

    def _fetch(self, url, headers, started):
        for _ in range(MAX_REDIRECTS + 1):
            left = max(0.05, self.timeout - (time.monotonic() - started))
            resp = self.session.get(
                url, headers=headers, stream=True, allow_redirects=False, timeout=(min(left, 5.0), left)
            )
            with resp:
                if resp.status_code in (301, 302, 303, 307, 308):
                    url = self._same_host_redirect(url, resp.headers.get("Location"))
                    continue
                return self._answer(resp, started)
        raise OriginError(f"The origin redirected more than {MAX_REDIRECTS} times.")

    def _same_host_redirect(self, url, location):
        if not location:
            raise OriginError("The origin sent a redirect without a Location.")
        target = urllib.parse.urljoin(url, location)
        parts = urllib.parse.urlsplit(target)
        if (parts.scheme, parts.netloc) != (self.scheme, self.netloc):
            raise OriginError(
                "The origin redirected to another host; shield follows redirects only on the origin's own host."
            )
        return target

    def _answer(self, resp, started):
        status = resp.status_code
        if status == 304:
            return Fetched(
                304,
                etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                max_age=freshness(resp.headers.get("Cache-Control")),
                tags=origin_tags(resp.headers.get("Surrogate-Key"), resp.headers.get("Cache-Tag")),
            )
        if status == 404:
            raise NotFound()
        if status == 410:
            raise Gone()
        if status != 200:
            exc = OriginError(f"The origin answered {status}.")
            exc.fwd_status = status  # what the origin sent, for Cache-Status (RFC 9211)
            raise exc
        length = resp.headers.get("Content-Length")
        if length is not None:
            if not length.isdigit():
                raise OriginError("The origin sent a malformed Content-Length.")
            if int(length) > self.max_bytes:
                raise SourceTooLarge(
                    f"The original is {length} bytes, over max_source_bytes ({self.max_bytes})."
                )
        chunks, total = [], 0
        for chunk in resp.raw.stream(65536, decode_content=False):
            total += len(chunk)
            if total > self.max_bytes:
                raise SourceTooLarge(f"The original is over max_source_bytes ({self.max_bytes}).")
            if time.monotonic() - started > self.timeout:
                raise OriginTimeout()
            chunks.append(chunk)
        if length is not None and total != int(length):
            raise OriginError(f"The origin's body was cut short ({total} of {length} bytes).")
        return Fetched(
            200,
            b"".join(chunks),
            etag=resp.headers.get("ETag"),
            last_modified=resp.headers.get("Last-Modified"),
            max_age=freshness(resp.headers.get("Cache-Control")),
            tags=origin_tags(resp.headers.get("Surrogate-Key"), resp.headers.get("Cache-Tag")),
        )


def make_origin(project, settings, via=None):
    """The project's origin; with `via`, the base URL of one of its source domains."""
    if via or project.is_http:
        return HttpOrigin(
            via or project.origin,
            settings.max_source_bytes,
            settings.origin_timeout,
            allow_private=project.allow_private_origin,
        )
    return FolderOrigin(project.origin, settings.max_source_bytes)
