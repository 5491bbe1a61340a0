"""One public image request, as a straight line:

    parse -> authorise -> original (fresh, revalidated, fetched or stale)
          -> variant (cache hit, or transform and store) -> response

The Flask view hands in the request's parts and gets back a Reply; nothing
here knows about Flask.
"""

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field

from . import engine, geometry, logs, negotiate, params, placeholders, probe, smartcrop, tags
from .errors import Gone, NotFound, OriginError, OriginFailure, ProjectNotFound, ShieldError
from .headers import cache_status, etag_matches, image_headers, not_modified_headers, server_timing
from .hot import HOT_TTL, HotEntry, HotSet
from .origin import gevent_patched, make_origin, safe_segments
from .store import Entry, meta_key_of, original_key_of, variant_key_of

PROCESS_PASSTHROUGH = "passthrough"
PROCESS_TRANSFORMED = "transformed"
STORED_ELSEWHERE = object()  # the variant appeared in the cache while this request waited
LQIP_SIDE = 64
LQIP_QUALITY = 30
REFRESH_AHEAD = 0.1  # revalidate in the background in the last tenth of freshness


@dataclass
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


@dataclass
class Reply:
    status: int
    headers: dict
    body: object = b""  # bytes, or an open file to stream
    x_cache: str = ""
    project: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Original:
    meta: dict
    body: bytes | None  # in memory when just fetched
    state: str  # fresh | revalidated | fetched | stale
    origin_ms: float | None = None
    fwd_status: int | None = None


def _lifetime(meta, now):
    """How long the stored original is fresh for, from its last fetch or revalidation."""
    return meta["fresh_until"] - meta.get("validated_at", meta.get("fetched_at", now))


def _etag(body):
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


class Delivery:
    def __init__(self, settings, store, stats, pool, flight, projects, guard=None):
        self.settings = settings
        self.store = store
        self.stats = stats
        self.pool = pool
        self.flight = flight
        self.projects = projects
        self.guard = guard  # signatures, referers, rate limits (security.Guard)
        self._origins = {}
        self._refreshing = set()
        self.hot = HotSet(settings.hot_cache_bytes)

    # -- the request

    def serve(self, req):
        started = time.perf_counter()
        hot_key = (req.project, req.path, req.query, req.accept)
        hot = self.hot.get(hot_key)
        if hot is not None:
            reply = self._serve_hot(req, hot_key, hot, started)
            if reply is not None:
                return reply
        generation = self.store.generation.current()
        project = self.projects.get(req.project)
        if project is None or not project.enabled:
            raise ProjectNotFound(f"No project named {req.project!r}.")
        if safe_segments(req.path) is None:
            raise NotFound()
        if req.args is None:
            req.args = params.parse_query(req.query)
        if self.guard is not None and not req.checked:
            self.guard.check_request(project, req)
        transform = params.parse(req.args, project.quality, project.max_width, project.max_height)
        klass = negotiate.accept_class(req.accept)

        if project.private:
            return self._serve_private(project, req, transform, klass, started)

        original = self._original(project, req.path)
        key = variant_key_of(
            project.name,
            req.path,
            original.meta["version"],
            transform.canonical(),
            klass if transform.fmt == "auto" and not transform.blur else "-",
        )
        entry = self.store.get_variant(key)
        if entry is not None:
            if original.state == "stale":
                return self._reply(req, project, entry, "STALE", started, stored=True, original=original)
            if not req.head and generation is not None:
                self._keep_hot(hot_key, generation, project, original, entry)
            return self._reply(req, project, entry, "HIT", started, stored=True, original=original)

        if self.guard is not None:
            self.guard.check_miss(project, req)
        made = self.flight.once(
            key,
            make=lambda: self._make_variant(project, req.path, original, transform, klass, key),
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
                else self._make_variant(project, req.path, original, transform, klass, key)
            )
        entry, stored, process_ms = made
        x_cache = "STALE" if original.state == "stale" else ("MISS" if process_ms is not None else "HIT")
        return self._reply(
            req, project, entry, x_cache, started, stored=stored, original=original, process_ms=process_ms
        )

    # -- the hot set (hot.py)

    def _serve_hot(self, req, hot_key, hot, started):
        """The kept answer, or None when it no longer holds (then the disk path runs)."""
        project = self.projects.get(req.project)
        if project is not hot.project or time.time() >= hot.valid_until:
            self.hot.discard(hot_key)
            return None
        if self.guard is not None:
            if req.args is None and project.signing_key:
                req.args = params.parse_query(req.query)
            self.guard.check_request(project, req)  # may wait on the rate limiter's lock
            req.checked = True
        # After the checks, which can yield: a purge that ended meanwhile is seen here.
        if self.store.generation.current() != hot.generation:
            self.hot.clear()  # a purge ran somewhere: let go of everything kept before it
            return None
        headers = dict(hot.headers)
        headers["Server-Timing"] = server_timing("HIT", (time.perf_counter() - started) * 1000)
        if etag_matches(req.if_none_match, hot.etag):
            return Reply(304, not_modified_headers(headers), b"", "HIT", project.name)
        if req.head:
            return Reply(200, headers, b"", "HIT", project.name)
        return Reply(200, headers, hot.body, "HIT", project.name)

    def _keep_hot(self, hot_key, generation, project, original, entry):
        """Remember a fresh hit's answer in memory (its body read now if it is a file)."""
        if project.private or not self.hot.admits(entry.size, hot_key):
            return
        meta, now = original.meta, time.time()
        # Until refresh-ahead would start (_maybe_refresh_ahead), so it still runs on time.
        valid_until = min(now + HOT_TTL, meta["fresh_until"] - max(0.0, _lifetime(meta, now)) * REFRESH_AHEAD)
        if valid_until <= now:
            return
        if not isinstance(entry.body, bytes):
            entry.body = entry.read_body()
            if len(entry.body) != entry.size:
                return
        headers = self._entry_headers(entry, "HIT", "", cache_status("HIT", stored=True), private=False)
        self.hot.put(
            hot_key, HotEntry(generation, valid_until, project, headers, entry.header["etag"], entry.body)
        )

    def _stored_elsewhere(self, key):
        entry = self.store.get_variant(key)
        if entry is None:
            return None
        entry.close()
        return STORED_ELSEWHERE

    # -- originals

    def origin_for(self, project):
        origin = self._origins.get(project)
        if origin is None:
            origin = self._origins[project] = make_origin(project, self.settings)
        return origin

    def _original(self, project, path):
        """The stored original's metadata, revalidated or fetched when it is not fresh."""
        mkey = meta_key_of(project.name, path)
        meta = self.store.get(mkey)
        now = time.time()
        if isinstance(meta, dict) and meta.get("negative"):
            if now < meta["expires"]:
                raise (Gone if meta["negative"] == 410 else NotFound)()
            meta = None
        if not isinstance(meta, dict) or "version" not in meta:
            meta = None
        if meta is not None and now < meta["fresh_until"]:
            self._maybe_refresh_ahead(project, path, meta, now)
            return Original(meta, None, "fresh")
        if meta is not None and now < meta.get("retry_at", 0) and self._may_serve_stale(project, meta, now):
            return Original(meta, None, "stale", fwd_status=meta.get("fwd_status"))

        def fresh_in_store():
            found = self.store.get(mkey)
            if isinstance(found, dict) and "version" in found and time.time() < found["fresh_until"]:
                return Original(found, None, "fresh")
            return None

        try:
            return self.flight.once(
                mkey,
                make=lambda: self._fetch_original(project, path, meta),
                check=fresh_in_store,
                timeout=self.settings.origin_timeout,
            )
        except OriginFailure as exc:
            if meta is not None and self._may_serve_stale(project, meta, time.time()):
                meta = dict(
                    meta, retry_at=time.time() + self.settings.origin_retry_interval, fwd_status=exc.status
                )
                self.store.set(mkey, meta)
                return Original(meta, None, "stale", fwd_status=exc.status)
            raise

    def _maybe_refresh_ahead(self, project, path, meta, now):
        """In the last tenth of an original's freshness, revalidate it in the background.

        Requests keep being answered from the cache meanwhile, so a popular
        image never waits on its origin when it expires.
        """
        lifetime = _lifetime(meta, now)
        if lifetime <= 0 or meta["fresh_until"] - now > lifetime * REFRESH_AHEAD or not gevent_patched():
            return
        mkey = meta_key_of(project.name, path)
        if mkey in self._refreshing:
            return
        self._refreshing.add(mkey)

        def refreshed_elsewhere():
            found = self.store.get(mkey)
            if isinstance(found, dict) and found.get("fresh_until", 0) > meta["fresh_until"]:
                return found
            return None

        def refresh():
            try:
                self.flight.once(
                    mkey,
                    make=lambda: self._fetch_original(project, path, meta),
                    check=refreshed_elsewhere,
                    timeout=self.settings.origin_timeout,
                )
            except ShieldError as exc:
                logs.event("refresh_ahead_failed", project=project.name, path=path, code=exc.code)
            finally:
                self._refreshing.discard(mkey)

        import gevent

        gevent.spawn(refresh)

    @staticmethod
    def _may_serve_stale(project, meta, now):
        return now < meta["fresh_until"] + project.stale_if_error

    def _fetch_original(self, project, path, old):
        """Ask the origin (conditionally when we hold a copy) and store what it says."""
        mkey = meta_key_of(project.name, path)
        origin = self.origin_for(project)
        started = time.perf_counter()
        try:
            fetched = origin.fetch(
                path, etag=old and old.get("etag"), last_modified=old and old.get("last_modified")
            )
        except (NotFound, Gone) as exc:
            self.stats.incr(project.name, "origin_fetches")
            if project.negative_ttl:
                self.store.set(mkey, {"negative": exc.status, "expires": time.time() + project.negative_ttl})
            if old is not None:
                self.store.drop_variants_of(project.name, path, except_version=None)
            raise
        finally:
            origin_ms = (time.perf_counter() - started) * 1000
        self.stats.incr(project.name, "origin_fetches")
        now = time.time()
        ttl = fetched.max_age if fetched.max_age is not None else project.cache_ttl

        if fetched.status == 304 and old is not None:
            meta = dict(
                old,
                fresh_until=now + ttl,
                validated_at=now,
                retry_at=0,
                fwd_status=None,
                tags=list(fetched.tags) or old.get("tags", []),
            )
            self.store.set(mkey, meta)
            return Original(meta, None, "revalidated", origin_ms)

        body = fetched.body
        info = self._checked_source(body)
        meta = {
            "version": secrets.token_hex(8),
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "fetched_at": now,
            "validated_at": now,
            "fresh_until": now + ttl,
            "tags": list(fetched.tags),
            "size": len(body),
            "info": {
                "format": info.format,
                "width": info.width,
                "height": info.height,
                "orientation": info.orientation,
                "has_alpha": info.has_alpha,
                "animated": info.animated,
            },
        }
        # The body before the metadata that points at it: a reader never finds one without the other.
        if self.store.set(original_key_of(project.name, path, meta["version"]), body):
            self.store.set(mkey, meta)
            self.store.record_file(project.name, path)
        if old is not None and old.get("version"):
            self.store.drop_variants_of(project.name, path, except_version=meta["version"])
            self.store.delete(original_key_of(project.name, path, old["version"]))
        return Original(meta, body, "fetched", origin_ms)

    def _checked_source(self, body):
        """Probe a new original and refuse, before anything is stored, one that is cut off or does not decode."""
        info = probe.probe(body, self.settings.max_source_pixels)
        if not probe.is_complete(body, info.format):
            raise OriginError(f"The original {info.format.upper()} is cut off before its end.")
        self.pool.run(engine.decode_check, body, info)
        return info

    def _original_body(self, project, path, original):
        if original.body is not None:
            return original.body
        body = self.store.get(original_key_of(project.name, path, original.meta["version"]))
        if isinstance(body, bytes) and len(body) == original.meta["size"]:
            return body
        # The body was evicted (or damaged) while its metadata stayed: fetch it again.
        old_version = original.meta["version"]
        refetched = self._fetch_original(project, path, None)
        if refetched.meta["version"] != old_version:
            # A new version, as after any replaced original: the old one's variants go
            # (and every worker's hot set lets go of them).
            self.store.drop_variants_of(project.name, path, except_version=refetched.meta["version"])
        original.meta.update(refetched.meta)
        original.origin_ms = refetched.origin_ms
        return refetched.body

    # -- variants

    def _make_variant(self, project, path, original, transform, klass, key):
        body = self._original_body(project, path, original)
        if original.meta["version"] not in key:
            key = variant_key_of(
                project.name, path, original.meta["version"], transform.canonical(), key.rsplit("|", 1)[1]
            )
        info = probe.SourceInfo(**original.meta["info"])
        started = time.perf_counter()
        header, out = self._render(
            project, body, info, transform, klass, self._stored_regions(project, path, original, body, info)
        )
        header["process_ms"] = round((time.perf_counter() - started) * 1000, 2)
        header["origin_ms"] = original.origin_ms
        header["etag"] = _etag(out)
        header["tags"] = list(
            tags.variant_tags(
                project.name,
                transform.fit if transform.smart else None,
                original.meta.get("tags", ()),
                project.tags,
            )
        )
        header["created"] = time.time()
        stored = self.store.put_variant(key, header, out, project.name, path, header["tags"])
        return Entry(dict(header, size=len(out)), out, len(out)), stored, header["process_ms"]

    def _render(self, project, body, info, transform, klass, regions):
        """Make the bytes of one variant: (header fields, body).

        `regions(fit)` gives the detected faces or salient region of the
        original (in upright source pixels), computing them at most once.
        """
        if transform.is_passthrough_candidate and negotiate.passthrough_ok(info.format, klass):
            width, height = info.oriented_size
            header = {"content_type": negotiate.CONTENT_TYPES[info.format], "width": width, "height": height}
            return dict(header, process=PROCESS_PASSTHROUGH), body
        src_w, src_h = info.oriented_size
        max_pixels = self.settings.max_output_pixels
        plan = geometry.plan(src_w, src_h, transform.w, transform.h, transform.fit, max_pixels=max_pixels)
        focus = self._focus(transform, plan, src_w, src_h, regions) if transform.smart else None
        if focus is not None:
            plan = geometry.plan(src_w, src_h, transform.w, transform.h, transform.fit, focus, max_pixels)
        if transform.blur:
            rgb = self.pool.run(engine.variant_pixels, body, info, plan)
            blurhash = placeholders.blurhash_of(rgb, transform.bx, transform.by)
            out = json.dumps({"blurhash": blurhash, "width": plan.canvas_w, "height": plan.canvas_h}).encode()
            header = {"content_type": "application/json", "width": plan.canvas_w, "height": plan.canvas_h}
        else:
            fmt = negotiate.output_format(transform.fmt, klass, info.has_alpha, info.animated)
            quality, tiny = transform.q or project.quality, False
            if transform.lqip:
                # The same framing, at most LQIP_SIDE px on its long side, heavily compressed.
                k = min(1.0, LQIP_SIDE / max(plan.canvas_w, plan.canvas_h))
                box_w, box_h = max(1, round(plan.canvas_w * k)), max(1, round(plan.canvas_h * k))
                small_fit = transform.fit if transform.w and transform.h else "inside"
                plan = geometry.plan(src_w, src_h, box_w, box_h, small_fit, focus)
                fmt = "webp" if fmt == "gif" else fmt
                quality, tiny = min(quality, LQIP_QUALITY), True
            rendered = self.pool.run(engine.render, body, info, plan, fmt, quality, tiny)
            out = rendered.body
            header = {
                "content_type": rendered.content_type,
                "width": rendered.width,
                "height": rendered.height,
            }
        self.stats.incr(project.name, "transforms")
        return dict(header, process=PROCESS_TRANSFORMED, smart_crop=focus is not None), out

    @staticmethod
    def _focus(transform, plan, src_w, src_h, regions):
        """The region a face or saliency crop keeps in view, or None to crop centred."""
        found = regions(transform.fit)
        if not found:
            return None
        if transform.fit == "auto":
            return tuple(found[0])
        # The crop window, in source pixels: as many faces as fit in it, most prominent first.
        window_w = plan.crop_w * src_w / plan.resize_w
        window_h = plan.crop_h * src_h / plan.resize_h
        return smartcrop.focus_for_faces([tuple(b) for b in found], window_w, window_h)

    def _detect(self, body, info, fit):
        """Faces (fit=face) or the salient region (fit=auto), in upright source pixels."""
        rgb, scale = self.pool.run(engine.analysis_pixels, body, info)
        if fit == "face":
            boxes = self.pool.run(smartcrop.faces, rgb)
        else:
            boxes = [self.pool.run(smartcrop.salient_region, rgb)]
        return [[round(v / scale) for v in box] for box in boxes]

    def _stored_regions(self, project, path, original, body, info):
        """regions(fit) for a cached original: detected once, kept in its metadata for every size."""

        def regions(fit):
            known = original.meta.setdefault("regions", {})
            if fit not in known:
                known[fit] = self._detect(body, info, fit)
                self.store.set(meta_key_of(project.name, path), original.meta)
            return known[fit]

        return regions

    def _serve_private(self, project, req, transform, klass, started):
        """Private images never enter the shared cache: fetch and transform every time."""
        origin_started = time.perf_counter()
        fetched = self.origin_for(project).fetch(req.path)
        self.stats.incr(project.name, "origin_fetches")
        origin_ms = (time.perf_counter() - origin_started) * 1000
        info = self._checked_source(fetched.body)
        process_started = time.perf_counter()
        header, out = self._render(
            project, fetched.body, info, transform, klass, lambda fit: self._detect(fetched.body, info, fit)
        )
        header.update(
            etag=_etag(out),
            tags=[],
            origin_ms=origin_ms,
            process_ms=(time.perf_counter() - process_started) * 1000,
        )
        entry = Entry(dict(header, size=len(out)), out, len(out))
        return self._reply(req, project, entry, "BYPASS", started, stored=False, private=True)

    # -- the reply

    def _reply(
        self, req, project, entry, x_cache, started, stored, original=None, process_ms=None, private=False
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
        headers = self._entry_headers(entry, x_cache, timing, status_value, private)
        if etag_matches(req.if_none_match, h["etag"]):
            entry.close()
            return Reply(304, not_modified_headers(headers), b"", x_cache, project.name)
        if req.head:
            entry.close()
            return Reply(200, headers, b"", x_cache, project.name)
        return Reply(200, headers, entry.body, x_cache, project.name)

    @staticmethod
    def _entry_headers(entry, x_cache, timing, status_value, private):
        h = entry.header
        return image_headers(
            content_type=h["content_type"],
            length=entry.size,
            etag=h["etag"],
            x_cache=x_cache,
            cache_status_value=status_value,
            timing=timing,
            tags=h.get("tags", ()),
            private=private,
            smart_crop=bool(h.get("smart_crop")),
        )
