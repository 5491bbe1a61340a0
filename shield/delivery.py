"""One public image request, as a straight line:

    parse -> authorise -> original (originals.py) -> variant (cache hit, or
    variants.py makes and stores it) -> reply

The front door hands in the request's parts and gets back a Reply; nothing
here knows about HTTP frameworks.
"""

import dataclasses
import logging
import time
import urllib.parse
from dataclasses import dataclass

from . import logs, params
from .answer import answer
from .cache.hot import HOT_TTL, HotEntry, HotSet
from .cache.store import Entry, variant_key_of
from .errors import (
    MethodNotAllowed,
    MovedToHttps,
    NotFound,
    ProjectNotFound,
)
from .headers import (
    IMMUTABLE_CACHE_CONTROL,
    cache_status,
    image_headers,
    modified_of,
    profile_of,
    server_timing,
    strong_etag,
)
from .image import negotiate, probe
from .origin import safe_segments
from .originals import Originals, asset_path, refresh_ahead_at, stored_path
from .uploads import KEY as UPLOAD_KEY
from .variants import Variants

STORED_ELSEWHERE = object()  # the variant appeared in the cache while this request waited


@dataclass(slots=True)
class Request:
    project: str
    path: str
    args: dict | None = None  # parsed from `query` when None
    query: str = ""  # the raw query string
    accept: str = ""
    if_none_match: str = ""
    referer: str = ""
    client_ip: str = ""
    head: bool = False
    checked: bool = False  # signature, referer and rate limits already passed
    asset: str | None = None  # "<10 characters>.<ext>" of a /c/ URL; then `project` is unused
    via: str | None = None  # a source domain's base URL: `path` is a file there, not at the origin
    method: str = "GET"
    scheme: str = "https"  # as the client used it (a trusted proxy's X-Forwarded-Proto)
    host: str = ""  # the Host header, and the path as asked for: where https_only redirects
    url_path: str = ""
    origin: str = ""  # the Origin header (CORS)
    if_match: str = ""
    if_unmodified_since: str = ""
    if_modified_since: str = ""
    range: str = ""
    if_range: str = ""
    immutable: bool = False  # the URL's bytes can never change (a signed path-style URL)
    conditional: bool = True  # any If-* or Range header (False lets a reply skip evaluating them)


def admit(project, req):
    """The project's own rules for its image URLs: allowed_methods, https_only."""
    if req.method not in project.allowed_methods:
        raise MethodNotAllowed(project.allowed_methods)
    if project.https_only and req.scheme != "https":
        path = urllib.parse.quote(req.url_path, safe="/:@!$&()*+,;=-._~")
        raise MovedToHttps(f"https://{req.host}{path}" + (f"?{req.query}" if req.query else ""))


class Delivery:
    def __init__(self, settings, store, stats, pool, flight, projects, assets, guard=None):
        self.settings = settings
        self.store = store
        self.stats = stats
        self.pool = pool
        self.flight = flight
        self.projects = projects
        self.assets = assets
        self.guard = guard  # signatures, referers, rate limits (security.Guard)
        self.originals = Originals(settings, store, stats, pool, flight, assets)
        self.variants = Variants(settings, store, stats, pool, self.originals)
        self.hot = HotSet(settings.hot_cache_bytes)

    # -- the request

    def serve(self, req):
        started = time.perf_counter()
        hot_key = (req.project, req.path, req.query, req.accept, req.via or "")
        hot = self.hot.get(hot_key)
        if hot is not None:
            reply = self._serve_hot(req, hot_key, hot, started)
            if reply is not None:
                return reply
        generation = self.store.generation.current()
        asset, project = self._target(req)
        admit(project, req)
        if req.args is None:
            req.args = params.parse_query(req.query)
        if self.guard is not None and not req.checked:
            self._check(project, req)
        transform = params.parse(
            params.with_preset(req.args, project), project.quality, project.max_width, project.max_height
        )
        klass = self.accept_class(project, req, transform)
        if project.keep_metadata and transform.is_passthrough_candidate:
            transform = dataclasses.replace(transform, keep_metadata=True)
        cache_control = None
        if asset is not None or req.immutable:
            cache_control = IMMUTABLE_CACHE_CONTROL  # an asset's bytes never change

        if asset is not None and req.asset is not None:
            original, path = self.originals.of_asset(asset), asset_path(asset.id)
            if transform.is_passthrough_candidate:
                return self._serve_asset_bytes(req, hot_key, generation, project, asset, original, started)
        elif project.private:
            return self._serve_private(project, req, transform, klass, started, asset)
        elif asset is not None:
            original, path = self.originals.of_asset(asset), req.path  # an upload: like any original
        else:
            original, path = self.originals.get(project, req.path, req.via), stored_path(req.path, req.via)
        key = variant_key_of(
            project.name,
            path,
            original.meta["version"],
            transform.canonical(),
            klass if transform.fmt == "auto" and not transform.blur else "-",
        )
        entry = self.store.get_variant(key)
        if entry is not None:
            x_cache = "STALE" if original.state == "stale" else "HIT"
            if x_cache == "HIT" and not req.head and generation is not None:
                if self._keep_hot(hot_key, generation, project, original, entry, cache_control) is False:
                    entry = None  # its file read short: damaged, made again below
                    self.store.delete(key)
        if entry is not None:
            return self._reply(
                req, project, entry, x_cache, started, True, original, cache_control=cache_control
            )

        if self.guard is not None:
            self.guard.check_miss(project, req)
        made = self.flight.once(
            key,
            make=lambda: self.variants.make(project, path, original, transform, klass, key),
            check=lambda: self._stored_elsewhere(key),
            timeout=self.settings.origin_timeout,
        )
        if made is STORED_ELSEWHERE:
            # Another worker made it. Followers share this answer, so each opens the
            # cache file itself: an open file can be sent once only.
            entry = self.store.get_variant(key)
            made = (
                (entry, True, None)
                if entry is not None
                else self.variants.make(project, path, original, transform, klass, key)
            )
        entry, stored, process_ms = made
        x_cache = "STALE" if original.state == "stale" else ("MISS" if process_ms is not None else "HIT")
        return self._reply(
            req, project, entry, x_cache, started, stored, original, process_ms, cache_control=cache_control
        )

    @staticmethod
    def accept_class(project, req, transform):
        """The accept class of the cache key (406 when the client admits nothing shield makes)."""
        if transform.blur:
            return "other"  # JSON: the same for every client
        if transform.fmt == "auto":
            klass = negotiate.require_class(req.accept, project.format_order)
            # Only the original-or-re-encode choice depends on whether JPEG is admitted too.
            return klass if transform.is_passthrough_candidate else klass.rstrip("!")
        if transform.fmt != "original":
            negotiate.require_format(req.accept, transform.fmt)
        return negotiate.accept_class(req.accept, project.format_order) or "other"

    def _target(self, req):
        """(asset or None, project) of a request, or the contract's 404."""
        if req.asset is not None:
            asset = self.assets.get("img_" + req.asset[:10])
            if asset is None or asset.ext != req.asset[11:]:
                raise NotFound("No such asset.")
            project = self.projects.get(asset.project)
            if project is None or not project.enabled or project.private:
                raise NotFound("No such asset.")
            return asset, project
        project = self.projects.get(req.project)
        if project is None or not project.enabled:
            raise ProjectNotFound(f"No project named {req.project!r}.")
        if safe_segments(req.path) is None:
            raise NotFound()
        upload = UPLOAD_KEY.fullmatch(req.path) and self.assets.get(req.path[:10])
        if upload and upload.project == project.name and upload.record.get("key") == req.path:
            return upload, project  # an uploaded asset: looked up before the origin
        return None, project

    def _check(self, project, req):
        if req.asset is not None:
            self.guard.check_public(project, req)  # an asset's URL is public: no signature
        else:
            self.guard.check_request(project, req)

    def _serve_asset_bytes(self, req, hot_key, generation, project, asset, original, started):
        """An asset URL without transform parameters: the stored bytes exactly, from their file."""
        body = self.assets.open(asset)
        if body is None:
            raise NotFound("This asset is gone.")
        header = {
            "content_type": negotiate.CONTENT_TYPES[asset.record["format"]],
            "etag": asset.record["etag"],
            "tags": [f"project-{project.name}", f"asset-{asset.id}", *project.tags],
        }
        entry = Entry(header, body, asset.size)
        if not req.head and generation is not None:
            self._keep_hot(hot_key, generation, project, original, entry, IMMUTABLE_CACHE_CONTROL)
        return self._reply(
            req, project, entry, "HIT", started, True, original, cache_control=IMMUTABLE_CACHE_CONTROL
        )

    # -- the hot set (hot.py)

    def _serve_hot(self, req, hot_key, hot, started):
        """The kept answer, or None when it no longer holds (then the disk path runs)."""
        project = self.projects.get(hot.project.name)
        if project is not hot.project or time.time() >= hot.valid_until:
            self.hot.discard(hot_key)
            return None
        admit(project, req)
        if self.guard is not None and not req.checked:
            if req.args is None and project.signing_key:
                req.args = params.parse_query(req.query)
            self._check(project, req)  # may wait on the rate limiter's lock
            req.checked = True
        # After the checks, which can yield: a purge that ended meanwhile is seen here.
        if self.store.generation.current() != hot.generation:
            self.hot.clear()  # a purge ran somewhere: let go of everything kept before it
            return None
        headers = dict(hot.headers)
        headers["Server-Timing"] = server_timing("HIT", (time.perf_counter() - started) * 1000)
        return answer(
            req, profile_of(project), headers, hot.etag, hot.modified, hot.body, "HIT", project.name
        )

    def _keep_hot(self, hot_key, generation, project, original, entry, cache_control):
        """Remember a fresh hit's answer in memory (its body read now if it is a file)."""
        if project.private or not self.hot.admits(entry.size, hot_key):
            return
        meta, now = original.meta, time.time()
        # Until refresh-ahead would start, so it still runs on time.
        valid_until = min(now + HOT_TTL, refresh_ahead_at(meta, now))
        if valid_until <= now:
            return
        if not isinstance(entry.body, bytes):
            entry.body = entry.read_body()
            if len(entry.body) != entry.size:
                logs.event("cache_entry_damaged", logging.WARNING, key=hot_key[1][:200], damage="short read")
                return False
        modified = modified_of(meta)
        headers = self._entry_headers(
            entry, "HIT", "", cache_status("HIT", stored=True), project, cache_control, modified
        )
        etag = entry.header["etag"]
        self.hot.put(hot_key, HotEntry(generation, valid_until, project, headers, etag, entry.body, modified))

    def _stored_elsewhere(self, key):
        entry = self.store.get_variant(key)
        if entry is None:
            return None
        entry.close()
        return STORED_ELSEWHERE

    def _serve_private(self, project, req, transform, klass, started, upload=None):
        """Private images never enter the shared cache: fetch (or read) and transform every time."""
        if upload is not None:
            body = self.assets.read(upload)
            if body is None:
                raise NotFound("This asset is gone.")
            info, origin_ms = probe.SourceInfo(**upload.info()), 0.0
        else:
            body, info, origin_ms = self.originals.fetch_uncached(project, req.path, req.via)
        process_started = time.perf_counter()
        header, out = self.variants.render(
            project, body, info, transform, klass, lambda fit: self.variants.detect(body, info, fit)
        )
        header.update(
            etag=strong_etag(out),
            tags=[],
            origin_ms=origin_ms,
            process_ms=(time.perf_counter() - process_started) * 1000,
        )
        entry = Entry(dict(header, size=len(out)), out, len(out))
        return self._reply(req, project, entry, "BYPASS", started, stored=False, private=True)

    # -- the reply

    def _reply(
        self,
        req,
        project,
        entry,
        x_cache,
        started,
        stored,
        original=None,
        process_ms=None,
        private=False,
        cache_control=None,
    ):
        h = entry.header
        cache_ms = (time.perf_counter() - started) * 1000
        if x_cache == "MISS" or (x_cache == "BYPASS"):
            timing = server_timing(
                x_cache,
                cache_ms,
                origin_ms=h.get("origin_ms") or 0.0,
                process=h.get("process"),
                process_ms=h.get("process_ms"),
            )
        else:
            timing = server_timing(x_cache, cache_ms)
        status_value = cache_status(
            x_cache, stored=stored, fwd_status=original.fwd_status if original else None
        )
        modified = (
            modified_of(original.meta) if original is not None else int(h.get("created") or time.time())
        )
        headers = self._entry_headers(
            entry, x_cache, timing, status_value, None if private else project, cache_control, modified
        )
        profile = None if private else profile_of(project)
        try:
            return answer(req, profile, headers, h["etag"], modified, entry.body, x_cache, project.name)
        except BaseException:
            entry.close()
            raise

    @staticmethod
    def _entry_headers(entry, x_cache, timing, status_value, project, cache_control, modified):
        """The 200 headers of an entry; `project` None for a private answer."""
        h = entry.header
        return image_headers(
            content_type=h["content_type"],
            length=entry.size,
            etag=h["etag"],
            x_cache=x_cache,
            cache_status_value=status_value,
            timing=timing,
            tags=h.get("tags", ()),
            private=project is None,
            smart_crop=bool(h.get("smart_crop")),
            profile=profile_of(project) if project is not None else None,
            cache_control=cache_control,
            modified=modified,
        )
