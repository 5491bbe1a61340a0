"""Uploads: files users send to shield, checked whole and kept as assets (contract section 10).

An upload is checked before anything is kept: its type by its first bytes, its
size while it streams in, its pixels from the header, a full decode (a damaged
file is refused), and the project's quota. Only then is it written to the
asset store, whole (assets.py). Its key, `<10 of [a-z0-9]>-<seo name>.<ext>`,
is its URL under the project: `/<project>/<key>`.

Temporary uploads (public key, then persist) are assets with the id
`temp_<10>` and an expiry; a sweep that whichever worker gets to first
deletes the expired ones, off every request's path.
"""

import base64
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import unicodedata

from . import logs
from .errors import (
    InvalidUpload,
    OriginError,
    QuotaExceeded,
    SourceTooLarge,
    Unauthorized,
    UnsupportedSource,
)
from .headers import strong_etag
from .image import engine, probe
from .image.negotiate import CONTENT_TYPES

ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
TEMP_PREFIX = "temp_"
EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "webp": "webp",
    "avif": "avif",
    "heic": "heic",
    "tiff": "tif",
}
KEY = re.compile(r"(?P<id>[a-z0-9]{10})-[a-z0-9-]{1,80}\.[a-z0-9]{2,4}")
MAX_SEO = 80
SWEEP_EVERY = 1.0  # seconds between a worker's looks for expired temporary uploads


def new_id():
    return "".join(secrets.choice(ID_CHARS) for _ in range(10))


def seo_name(filename, fmt):
    """'Golden Gate Bridge — Sunset.JPG' -> 'golden-gate-bridge-sunset.jpg' (the detected type's extension)."""
    stem = os.path.splitext(os.path.basename(filename or ""))[0]
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_stem).strip("-")[:MAX_SEO].strip("-")
    return f"{slug or 'image'}.{EXTENSIONS[fmt]}"


def ext_for_type(content_type):
    for fmt, known in CONTENT_TYPES.items():
        if known == (content_type or "").split(";")[0].strip().lower():
            return fmt
    return None


def checked(body, settings, max_bytes):
    """Refuse what is not an image shield can serve, or is damaged, or too large: its SourceInfo."""
    if not body:
        raise InvalidUpload("The file is empty.")
    if len(body) > max_bytes:
        raise SourceTooLarge(f"The file is over {max_bytes} bytes.")
    info = probe.probe(body, settings.max_source_pixels)
    if not probe.is_complete(body, info.format):
        raise InvalidUpload(f"The {info.format.upper()} is cut off before its end.")
    try:
        engine.decode_check(body, info)
    except OriginError as exc:
        raise InvalidUpload(f"The image does not decode: {exc}") from None
    return info


class Uploads:
    def __init__(self, settings, assets, pool, store):
        self.settings = settings
        self.assets = assets
        self.pool = pool
        self.store = store
        self._swept_at = 0.0

    # -- signed upload tokens: made for the browser, good once, until they expire

    def token(self, project, key, max_bytes, expires_at, content_type):
        claims = {"p": project, "k": key, "m": max_bytes, "e": int(expires_at), "t": content_type}
        payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
        mac = hmac.new(self.assets.secret(), b"upload:" + payload, hashlib.sha256).digest()
        return payload.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def claims(self, token):
        """The token's claims; 401 when it is forged, expired or was used already."""
        payload, _, mac = (token or "").partition(".")
        expected = hmac.new(self.assets.secret(), b"upload:" + payload.encode(), hashlib.sha256).digest()
        given = mac.encode() + b"=" * (-len(mac) % 4)
        try:
            if not hmac.compare_digest(base64.urlsafe_b64decode(given), expected):
                raise ValueError
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            raise Unauthorized("This upload token is not one shield made.") from None
        if claims["e"] < time.time():
            raise Unauthorized("This upload token has expired; ask for a new one.")
        asset_id = KEY.match(claims["k"])["id"]
        if self.assets.get(asset_id) is not None or os.path.exists(self._spent(asset_id)):
            raise Unauthorized("This upload token was used already; ask for a new one.")
        return claims

    def _spent(self, asset_id):
        """A signed upload's mark, kept after the asset: its token is spent for good."""
        return os.path.join(self.assets.root, ".spent", asset_id)

    # -- keeping uploads

    def keep(self, project, body, filename, *, key=None, temp=False, content_type=None):
        """Check and keep one upload; the asset record. `key` is a signed upload's."""
        max_bytes = self.settings.max_source_bytes
        info = self.pool.run(checked, body, self.settings, max_bytes)
        if content_type and ext_for_type(content_type) not in (None, info.format):
            raise UnsupportedSource(
                f"The file is {info.format.upper()}, not the {content_type} it was signed for."
            )
        self._check_quota(project, len(body))
        signed = key is not None
        if key is not None:
            asset_id = KEY.match(key)["id"]
            want = key.rsplit(".", 1)[1]
            if want != EXTENSIONS[info.format]:
                raise UnsupportedSource(f"The file is {info.format.upper()}, not the type it was signed for.")
        else:
            asset_id = new_id()
            key = f"{asset_id}-{seo_name(filename, info.format)}"
        now = time.time()
        width, height = info.oriented_size
        record = {
            "project": project.name,
            "kind": "temp" if temp else "upload",
            "key": key,
            "name": os.path.basename(filename or "") or key,
            "type": CONTENT_TYPES[info.format],
            "format": info.format,
            "width": width,
            "height": height,
            "etag": strong_etag(body),
            "created": now,
            "updated": now,
            "expires": now + project.temp_upload_ttl if temp else None,
            "info": dataclasses.asdict(info),
        }
        stored_id = TEMP_PREFIX + asset_id if temp else asset_id
        try:
            # Exclusive: a signed upload's key is taken once, whatever races for it.
            asset = self.assets.put(stored_id, EXTENSIONS[info.format], body, record, exclusive=True)
        except FileExistsError:
            raise Unauthorized("This upload token was used already; ask for a new one.") from None
        if signed:
            os.makedirs(os.path.dirname(self._spent(asset_id)), exist_ok=True)
            open(self._spent(asset_id), "a").close()
        logs.event("upload", project=project.name, asset=stored_id, bytes=len(body), temp=temp)
        return asset

    def _check_quota(self, project, adding):
        quota = project.upload_quota_bytes
        if not quota:
            return
        used = sum(
            a.size for a in self.assets.all(project.name) if a.record.get("kind") in ("upload", "temp")
        )
        if used + adding > quota:
            raise QuotaExceeded(
                f"This project keeps {used} of its {quota} bytes of uploads; this file is {adding}."
            )

    def persist(self, project, temp_id):
        """The asset a temporary upload becomes (the same one when persisted again); None if unknown."""
        if not isinstance(temp_id, str) or not temp_id.startswith(TEMP_PREFIX):
            return None
        asset_id = temp_id[len(TEMP_PREFIX) :]
        kept = self.assets.get(asset_id)
        if kept is not None:
            return kept if kept.project == project.name and kept.record.get("kind") == "upload" else None
        temp = self.assets.get(temp_id)
        if temp is None or temp.record.get("kind") != "temp" or temp.project != project.name:
            return None
        if temp.record["expires"] < time.time():
            return None
        body = self.assets.read(temp)
        if body is None:
            return None
        record = dict(temp.record, kind="upload", expires=None, updated=time.time())
        asset = self.assets.put(asset_id, temp.ext, body, record)
        self.assets.delete(temp)
        return asset

    def delete(self, asset):
        """An asset and every cached variant of it."""
        self.assets.delete(asset)
        self.store.purge_tag(f"asset-{asset.id}", asset.project)

    # -- the sweep of expired temporary uploads

    def sweep(self):
        """Delete expired temporary uploads; one process at a time does it (a lock beside the assets)."""
        os.makedirs(self.assets.root, exist_ok=True)
        with open(os.path.join(self.assets.root, ".sweep.lock"), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another worker is at it
            now, removed = time.time(), 0
            for asset in self.assets.all(prefix=TEMP_PREFIX):
                if asset.record.get("kind") == "temp" and asset.record.get("expires", now) < now:
                    self.assets.delete(asset)
                    removed += 1
            if removed:
                logs.event("temp_uploads_swept", removed=removed)
            return removed

    def maybe_sweep(self):
        """A sweep now and then, from a worker's background loop (never a request's path)."""
        if time.monotonic() - self._swept_at >= SWEEP_EVERY:
            self._swept_at = time.monotonic()
            try:
                self.sweep()
            except OSError as exc:
                logs.fault_once("temp_sweep_failed", error=str(exc))
