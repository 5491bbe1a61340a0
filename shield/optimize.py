"""Optimize: a whole image re-encoded once into the best format a client takes, kept as an asset.

The source is a file of the project's origin (by URL or by path) or of one of
its source domains; it goes through the same original cache as image URLs, so
the origin is asked once per file. The asset id is a digest of what was asked
(project, source, quality, strip, format): the same request again finds the
same asset instead of making a second one.
"""

import dataclasses
import hashlib
import hmac
import time

from .assets import crockford
from .errors import Gone, InvalidParam, InvalidSource, NotFound, OriginError, OriginUnreachable
from .headers import strong_etag
from .image import engine, geometry, negotiate, probe
from .originals import stored_path
from .sources import SourceRefused, resolve_url

ASSET_PREFIX = "img_"
EXTENSIONS = {"jpeg": "jpg"}


def extension(fmt):
    return EXTENSIONS.get(fmt, fmt)


def resolve_source(project, source):
    """`source` -> (path under the origin, base URL of a source domain or None); InvalidSource otherwise."""
    try:
        return resolve_url(project, source)
    except SourceRefused as exc:
        raise InvalidSource(f"source: {exc}") from None


def asset_id_of(secret, project, path, via, quality, strip, fmt):
    """A digest of what was asked, keyed with the store's own secret: nobody can compute an id
    from a file's path, yet the same request always finds the same asset."""
    message = f"{project}\n{via or ''}\n{path}\n{quality}\n{strip}\n{fmt}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return ASSET_PREFIX + crockford(int.from_bytes(digest[:7], "big") >> 6, 10)


class Optimizer:
    def __init__(self, settings, originals, pool, flight, assets, stats):
        self.settings = settings
        self.originals = originals
        self.pool = pool
        self.flight = flight
        self.assets = assets
        self.stats = stats

    def optimize(self, project, source, quality, strip, accept):
        """(Asset, created): the source in the best format `accept` allows, at `quality`."""
        if project.private:
            raise InvalidParam("project", "a private project has no public /c/ URLs to optimize into")
        path, via = resolve_source(project, source)
        try:
            original = self.originals.get(project, path, via)
        except OriginUnreachable:
            raise InvalidSource("source: the host could not be reached") from None
        except (NotFound, Gone) as exc:
            raise OriginError(f"The origin answered {exc.status} for this source.") from None
        info = probe.SourceInfo(**original.meta["info"])
        klass = negotiate.accept_class(accept, project.format_order) or "other"
        fmt = negotiate.output_format("auto", klass, info.has_alpha, info.animated)
        quality = quality or project.quality
        overrides = project.format_quality if quality == project.quality else None  # else the table
        asset_id = asset_id_of(self.assets.secret(), project.name, path, via, quality, strip, fmt)
        found = self.assets.get(asset_id)
        if found is not None:
            return found, False

        made_here = []

        def make():
            made_here.append(True)
            body = self.originals.body_of(project, stored_path(path, via), original)
            src_w, src_h = info.oriented_size
            plan = geometry.plan(src_w, src_h, None, None, "inside")
            started = time.perf_counter()
            rendered = self.pool.run(
                engine.render,
                body,
                info,
                plan,
                fmt,
                quality,
                False,
                not strip,
                overrides,
                avif_max_pixels=self.settings.avif_max_pixels,
            )
            self.stats.incr(project.name, "transforms")
            made = probe.probe(rendered.body, self.settings.max_source_pixels)
            record = {
                "project": project.name,
                "kind": "optimize",
                "format": rendered.format,  # WebP for an AVIF over avif_max_pixels
                "width": rendered.width,
                "height": rendered.height,
                "etag": strong_etag(rendered.body),
                "source": (via or "") + path,
                "source_bytes": original.meta["size"],
                "quality": quality,
                "strip": strip,
                "process_ms": round((time.perf_counter() - started) * 1000, 2),
                "info": dataclasses.asdict(made),
            }
            return self.assets.put(asset_id, extension(rendered.format), rendered.body, record)

        asset = self.flight.once(
            f"asset|{asset_id}",
            make=make,
            check=lambda: self.assets.get(asset_id),
            timeout=self.settings.origin_timeout,
        )
        # Only the call that made it answers "created"; one that waited on it found it made.
        return asset, bool(made_here)
