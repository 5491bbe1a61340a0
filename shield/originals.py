"""The life of a stored original: fresh, refreshed ahead, revalidated, fetched, or served stale.

Every variant of a file is made from its stored original, so the origin is
asked once per file, however many sizes and formats are served. What the
origin said (validators, freshness, tags, the probed size and format) is kept
as the original's metadata; the bytes are kept under a version that changes
whenever the origin sends new ones.
"""

import dataclasses
import logging
import secrets
import threading
import time
from dataclasses import dataclass

from . import logs
from .cache.entries import checksum
from .cache.store import meta_key_of, original_key_of
from .errors import Gone, NotFound, OriginError, OriginFailure, ShieldError, UnsupportedSource, cacheable
from .image import engine, probe
from .origin import gevent_patched, make_origin

REFRESH_AHEAD = 0.1  # revalidate in the background in the last tenth of freshness
MAX_ORIGINS = 256  # connection pools kept per worker
FOREVER = 100 * 365 * 86400  # an asset's freshness: shield keeps it, nobody changes it


@dataclass
class Original:
    meta: dict
    body: bytes | None  # in memory when just fetched
    state: str  # fresh | revalidated | fetched | stale
    origin_ms: float | None = None
    fwd_status: int | None = None


def lifetime(meta, now):
    """How long the stored original is fresh for, from its last fetch or revalidation."""
    return meta["fresh_until"] - meta.get("validated_at", meta.get("fetched_at", now))


def refresh_ahead_at(meta, now):
    """When a request starts revalidating this original in the background."""
    return meta["fresh_until"] - max(0.0, lifetime(meta, now)) * REFRESH_AHEAD


def spawn(fn):
    """Run fn off the request: a greenlet under gevent, else a thread."""
    if gevent_patched():
        import gevent

        gevent.spawn(fn)
    else:
        threading.Thread(target=fn, daemon=True).start()


def remembered_missing(meta, now):
    """The 404/410 an origin gave, remembered: cacheable for what is left of its negative_ttl."""
    exc = Gone() if meta["negative"] == 410 else NotFound()
    return cacheable(exc, meta["expires"] - now)


def may_serve_stale(project, meta, now):
    return now < meta["fresh_until"] + project.stale_if_error


def stored_path(path, via):
    """Where an original lives in the cache: its path, or for a source domain's file the whole URL
    (no origin path can start with a scheme, so the two never meet)."""
    return via + path if via else path


def asset_path(asset_id):
    """Where an asset's variants live in the cache: a path no origin file can have (it starts with /)."""
    return "/" + asset_id


class Originals:
    def __init__(self, settings, store, stats, pool, flight, assets):
        self.settings = settings
        self.assets = assets
        self.store = store
        self.stats = stats
        self.pool = pool
        self.flight = flight
        self._origins = {}
        self._refreshing = set()

    def origin_for(self, project, via=None):
        """The project's origin, or with `via` (a base URL of one of its source_domains) that host."""
        origin = self._origins.get((project, via))
        if origin is None:
            if len(self._origins) >= MAX_ORIGINS:
                # Source domains admit any subdomain: keep the pools of the most recent only.
                _key, oldest = next(iter(self._origins.items()))
                self._origins.pop(_key)
                getattr(oldest, "close", lambda: None)()
            origin = self._origins[(project, via)] = make_origin(project, self.settings, via)
        return origin

    def get(self, project, path, via=None):
        """The stored original's metadata, revalidated or fetched when it is not fresh.

        `via`: fetch from this base URL (a source domain) instead of the project's origin.
        """
        mkey = meta_key_of(project.name, stored_path(path, via))
        meta = self.store.get(mkey)
        now = time.time()
        if isinstance(meta, dict) and meta.get("negative"):
            if now < meta["expires"]:
                raise remembered_missing(meta, now)
            meta = None
        if not isinstance(meta, dict) or "version" not in meta:
            meta = None
        if meta is not None and now < meta["fresh_until"]:
            self._maybe_refresh_ahead(project, path, meta, now, via)
            return Original(meta, None, "fresh")
        if meta is not None and meta.get("fwd_status") and may_serve_stale(project, meta, now):
            # The origin failed last time: answer from the stored copy at once, and ask the
            # origin again in the background (at most every origin_retry_interval).
            if now >= meta.get("retry_at", 0):
                self._retry_in_background(project, path, meta, via)
            return Original(meta, None, "stale", fwd_status=meta.get("fwd_status"))

        def fresh_in_store():
            found = self.store.get(mkey)
            if isinstance(found, dict) and "version" in found and time.time() < found["fresh_until"]:
                return Original(found, None, "fresh")
            return None

        try:
            return self.flight.once(
                mkey,
                make=lambda: self.fetch(project, path, meta, via),
                check=fresh_in_store,
                timeout=self.settings.origin_timeout,
            )
        except (OriginFailure, UnsupportedSource) as exc:
            # A 5xx, a timeout, or a 200 that is not an image: the stored copy stands in.
            if meta is not None and may_serve_stale(project, meta, time.time()):
                meta = self._failed(mkey, meta, exc)
                return Original(meta, None, "stale", fwd_status=meta["fwd_status"])
            raise

    def _failed(self, mkey, meta, exc):
        """Remember that the origin failed (and when to ask again): the stale copy's metadata."""
        fwd = getattr(exc, "fwd_status", None) or (exc.status if isinstance(exc, OriginFailure) else 502)
        meta = dict(meta, retry_at=time.time() + self.settings.origin_retry_interval, fwd_status=fwd)
        self.store.set(mkey, meta)
        return meta

    def _retry_in_background(self, project, path, meta, via):
        """Ask a failing origin again off the request; the stale copy is served meanwhile."""
        mkey = meta_key_of(project.name, stored_path(path, via))
        meta = dict(meta, retry_at=time.time() + self.settings.origin_retry_interval)
        started = self._fetch_in_background(
            project,
            path,
            meta,
            via,
            check=lambda: None,
            failed=lambda exc: self._failed(mkey, meta, exc),
            event="origin_retry_failed",
        )
        if started:
            # Pushed forward, so other workers do not start a retry of their own.
            self.store.set(mkey, meta)

    def _maybe_refresh_ahead(self, project, path, meta, now, via):
        """In the last tenth of an original's freshness, revalidate it in the background.

        Requests keep being answered from the cache meanwhile, so a popular
        image never waits on its origin when it expires.
        """
        if lifetime(meta, now) <= 0 or now < refresh_ahead_at(meta, now) or not gevent_patched():
            return
        mkey = meta_key_of(project.name, stored_path(path, via))

        def refreshed_elsewhere():
            found = self.store.get(mkey)
            if isinstance(found, dict) and found.get("fresh_until", 0) > meta["fresh_until"]:
                return found
            return None

        self._fetch_in_background(
            project, path, meta, via, check=refreshed_elsewhere, failed=None, event="refresh_ahead_failed"
        )

    def _fetch_in_background(self, project, path, meta, via, check, failed, event):
        """One background fetch of an original per worker at a time: False when one is under way.

        `failed(exc)` takes an origin failure (else it is logged as `event`, like any other error).
        """
        mkey = meta_key_of(project.name, stored_path(path, via))
        if mkey in self._refreshing:
            return False
        self._refreshing.add(mkey)

        def run():
            try:
                self.flight.once(
                    mkey,
                    make=lambda: self.fetch(project, path, meta, via),
                    check=check,
                    timeout=self.settings.origin_timeout,
                )
            except (OriginFailure, UnsupportedSource) as exc:
                if failed is None:
                    logs.event(event, project=project.name, path=path, code=exc.code)
                else:
                    failed(exc)
            except ShieldError as exc:
                logs.event(event, project=project.name, path=path, code=exc.code)
            finally:
                self._refreshing.discard(mkey)

        spawn(run)
        return True

    def stored(self, project, path, via=None):
        """The stored original's metadata, fresh or not, without asking the origin; or None.

        A remembered 404 or 410 still in force is raised, as get() would.
        """
        meta = self.store.get(meta_key_of(project.name, stored_path(path, via)))
        if isinstance(meta, dict) and meta.get("negative") and time.time() < meta["expires"]:
            raise remembered_missing(meta, time.time())
        return meta if isinstance(meta, dict) and "version" in meta else None

    def remember_missing(self, project, path, via, status):
        """An origin 404/410 learnt without a fetch (a HEAD probe), kept for negative_ttl."""
        if project.negative_ttl:
            meta = {"negative": status, "expires": time.time() + project.negative_ttl}
            self.store.set(meta_key_of(project.name, stored_path(path, via)), meta)

    def fetch(self, project, path, old, via=None):
        """Ask the origin (conditionally when we hold a copy) and store what it says."""
        origin = self.origin_for(project, via)
        path, fetch_path = stored_path(path, via), path
        mkey = meta_key_of(project.name, path)
        mark = self.store.purges.current()  # a purge after this point: what comes back is not stored
        started = time.perf_counter()
        try:
            fetched = origin.fetch(
                fetch_path, etag=old and old.get("etag"), last_modified=old and old.get("last_modified")
            )
        except (NotFound, Gone) as exc:
            self.stats.incr(project.name, "origin_fetches")
            cacheable(exc, project.negative_ttl)
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
            # RFC 9111 section 4.3.4: the 304's headers update the stored response's. Without
            # a Cache-Control of its own, the stored response's lifetime stands.
            if fetched.max_age is None:
                ttl = old.get("ttl", max(0.0, old["fresh_until"] - old.get("validated_at", now)))
            meta = dict(
                old,
                fresh_until=now + ttl,
                validated_at=now,
                ttl=ttl,
                retry_at=0,
                fwd_status=None,
                tags=list(fetched.tags) or old.get("tags", []),
            )
            if fetched.last_modified:
                meta["last_modified"] = fetched.last_modified
            self.store.set_unless_purged(mkey, meta, mark)
            return Original(meta, None, "revalidated", origin_ms)

        body = fetched.body
        info = self.checked_source(body)
        meta = {
            "version": secrets.token_hex(8),
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "fetched_at": now,
            "validated_at": now,
            "fresh_until": now + ttl,
            "ttl": ttl,
            "tags": list(fetched.tags),
            "size": len(body),
            "crc": checksum(body),
            "info": dataclasses.asdict(info),
        }
        if via:
            meta["via"] = via
        # The body before the metadata that points at it: a reader never finds one without the other.
        # Neither is kept when a purge ran while this fetch was under way: the purge would be undone.
        body_key = original_key_of(project.name, path, meta["version"])
        if self.store.set_unless_purged(body_key, body, mark):
            if self.store.set_unless_purged(mkey, meta, mark):
                self.store.record_file(project.name, path)
            else:
                self.store.delete(body_key)
                logs.event("fetch_outlived_a_purge", project=project.name, path=path)
        elif self.store.purged_since(mark):
            logs.event("fetch_outlived_a_purge", project=project.name, path=path)
        if old is not None and old.get("version"):
            self.store.drop_variants_of(project.name, path, except_version=meta["version"])
            self.store.delete(original_key_of(project.name, path, old["version"]))
        return Original(meta, body, "fetched", origin_ms)

    def fetch_uncached(self, project, path, via=None):
        """A private original: fetched for this request only, never stored. (body, info, origin_ms)"""
        started = time.perf_counter()
        fetched = self.origin_for(project, via).fetch(path)
        self.stats.incr(project.name, "origin_fetches")
        origin_ms = (time.perf_counter() - started) * 1000
        return fetched.body, self.checked_source(fetched.body), origin_ms

    def checked_source(self, body):
        """Probe a new original and refuse, before anything is stored, one that is cut off or does not decode."""
        info = probe.probe(body, self.settings.max_source_pixels)
        if not probe.is_complete(body, info.format):
            raise OriginError(f"The original {info.format.upper()} is cut off before its end.")
        self.pool.run(engine.decode_check, body, info)
        return info

    @staticmethod
    def of_asset(asset):
        """An asset as an original: stored by shield itself, so fresh for good and never refetched."""
        meta = {
            "version": asset.id,
            "asset": asset.id,
            "fetched_at": asset.record["created"],
            "validated_at": asset.record["created"],
            "fresh_until": asset.record["created"] + FOREVER,
            "tags": [f"asset-{asset.id}"],
            "size": asset.size,
            "etag": asset.record.get("etag"),
            "info": asset.info(),
        }
        return Original(meta, None, "fresh")

    def body_of(self, project, path, original):
        """The original's bytes: in memory, from the store, or fetched again when evicted.

        `path` is where the original is stored (stored_path: a source domain's file has its URL).
        """
        if original.body is not None:
            return original.body
        if "asset" in original.meta:
            asset = self.assets.get(original.meta["asset"])
            body = self.assets.read(asset) if asset is not None else None
            if body is None:
                raise NotFound("This asset is gone.")
            return body
        via = original.meta.get("via")  # `path` is then the stored path: the via URL, then the file's
        body = self.store.get(original_key_of(project.name, path, original.meta["version"]))
        if isinstance(body, bytes) and len(body) == original.meta["size"]:
            if "crc" not in original.meta or checksum(body) == original.meta["crc"]:
                return body
            logs.event("cache_original_damaged", logging.WARNING, project=project.name, path=path)
        # The body was evicted (or damaged) while its metadata stayed: fetch it again.
        old_version = original.meta["version"]
        refetched = self.fetch(project, path[len(via) :] if via else path, None, via)
        if refetched.meta["version"] != old_version:
            # A new version, as after any replaced original: the old one's variants go
            # (and every worker's hot set lets go of them).
            self.store.drop_variants_of(project.name, path, except_version=refetched.meta["version"])
        original.meta.update(refetched.meta)
        original.origin_ms = refetched.origin_ms
        return refetched.body

    def remember_regions(self, project, path, original):
        """Store the original's metadata again after its detected regions were added to it."""
        self.store.set(meta_key_of(project.name, path), original.meta)
