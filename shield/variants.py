"""Making one variant from its original: passthrough, transform, placeholder or smart crop."""

import json
import time

from .cache import tags
from .cache.store import Entry, variant_key_of
from .headers import strong_etag
from .image import engine, geometry, jpegmeta, negotiate, placeholders, probe, smartcrop
from .image.recent import RecentDecodes

PROCESS_PASSTHROUGH = "passthrough"
PROCESS_TRANSFORMED = "transformed"
LQIP_SIDE = 64
LQIP_QUALITY = 30


class Variants:
    def __init__(self, settings, store, stats, pool, originals):
        self.settings = settings
        self.store = store
        self.stats = stats
        self.pool = pool
        self.originals = originals
        self.decodes = RecentDecodes(settings.decode_cache_bytes)

    def make(self, project, path, original, transform, klass, key):
        """Render and store one variant: (Entry, stored, process_ms)."""
        body = self.originals.body_of(project, path, original)
        if original.meta["version"] not in key:
            # The original was fetched again meanwhile: the variant belongs to its new version.
            key = variant_key_of(
                project.name, path, original.meta["version"], transform.canonical(), key.rsplit("|", 1)[1]
            )
        info = probe.SourceInfo(**original.meta["info"])
        started = time.perf_counter()
        header, out = self.render(
            project, body, info, transform, klass, self._stored_regions(project, path, original, body, info)
        )
        header["process_ms"] = round((time.perf_counter() - started) * 1000, 2)
        header["origin_ms"] = original.origin_ms
        header["etag"] = strong_etag(out)
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

    def render(self, project, body, info, transform, klass, regions):
        """Make the bytes of one variant: (header fields, body).

        `regions(fit)` gives the detected faces or salient region of the
        original (in upright source pixels), computing them at most once.
        """
        if transform.is_passthrough_candidate:
            return self._as_it_is(project, body, info, transform, klass)
        return self._transform(project, body, info, transform, klass, regions)

    def _as_it_is(self, project, body, info, transform, klass):
        """No transform parameters: the original (its metadata cut out), or the best format when smaller.

        The original goes as it is with fmt=original, for an animation the
        client shows, and when it already is the class's format; otherwise it
        is re-encoded at the project's quality and the smaller answer wins. A
        JPEG that needs its EXIF orientation is never passed through for
        fmt=auto: the re-encoded one is upright.
        """
        width, height = info.oriented_size

        def original():
            out = body
            if info.format == "jpeg" and not transform.keep_metadata:
                out = jpegmeta.strip(body, info.orientation)
            header = {"content_type": negotiate.CONTENT_TYPES[info.format], "width": width, "height": height}
            return dict(header, process=PROCESS_PASSTHROUGH), out

        if transform.fmt == "original":
            return original()
        showable = negotiate.passthrough_ok(info.format, klass) and (
            info.format != "jpeg" or info.orientation == 1
        )
        target = negotiate.output_format("auto", klass, info.has_alpha, info.animated)
        if showable and (info.animated or info.format == target):
            return original()
        plan = geometry.plan(width, height, None, None, "inside", max_pixels=self.settings.max_output_pixels)
        rendered = self.pool.run(
            engine.render,
            body,
            info,
            plan,
            target,
            project.quality,
            format_quality=project.format_quality,
            opaque_format=self._opaque_format("auto", klass, info, target, info.animated),
            avif_max_pixels=self.settings.avif_max_pixels,
            decodes=self.decodes,
        )
        if showable:
            kept = original()
            if len(kept[1]) <= len(rendered.body):
                return kept
        self.stats.incr(project.name, "transforms")
        header = {"content_type": rendered.content_type, "width": rendered.width, "height": rendered.height}
        return dict(header, process=PROCESS_TRANSFORMED, smart_crop=False), rendered.body

    def _transform(self, project, body, info, transform, klass, regions):
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
            # The project's per-format settings stand for its default q (`?q=` equal to it is
            # the same variant); any other q goes through the quality table.
            overrides = project.format_quality if quality == project.quality else None
            if transform.lqip:
                # The same framing, at most LQIP_SIDE px on its long side, heavily compressed.
                k = min(1.0, LQIP_SIDE / max(plan.canvas_w, plan.canvas_h))
                box_w, box_h = max(1, round(plan.canvas_w * k)), max(1, round(plan.canvas_h * k))
                small_fit = transform.fit if transform.w and transform.h else "inside"
                plan = geometry.plan(src_w, src_h, box_w, box_h, small_fit, focus)
                # A placeholder is a still, in the still format this client accepts (an animation's
                # first frame: JPEG or PNG for a client without WebP, never a WebP it cannot show).
                fmt = negotiate.output_format(transform.fmt, klass, info.has_alpha, animated=False)
                quality, tiny = min(quality, LQIP_QUALITY), True
            rendered = self.pool.run(
                engine.render,
                body,
                info,
                plan,
                fmt,
                quality,
                tiny,
                format_quality=overrides,
                opaque_format=self._opaque_format(
                    transform.fmt, klass, info, fmt, info.animated and not transform.lqip
                ),
                avif_max_pixels=self.settings.avif_max_pixels,
                decodes=self.decodes,
            )
            out = rendered.body
            header = {
                "content_type": rendered.content_type,
                "width": rendered.width,
                "height": rendered.height,
            }
        self.stats.incr(project.name, "transforms")
        return dict(header, process=PROCESS_TRANSFORMED, smart_crop=focus is not None), out

    @staticmethod
    def _opaque_format(asked, klass, info, fmt, animated):
        """What fmt=auto makes if the source's alpha channel turns out unused, when that differs."""
        if asked != "auto" or not info.has_alpha:
            return None
        opaque = negotiate.output_format(asked, klass, False, animated)
        return opaque if opaque != fmt else None

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

    def detect(self, body, info, fit):
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
                known[fit] = self.detect(body, info, fit)
                self.originals.remember_regions(project, path, original)
            return known[fit]

        return regions
