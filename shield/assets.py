"""The asset store: images shield keeps itself (optimize results, uploads), in `asset_dir`.

One asset is two files side by side: its bytes (`<id>.<ext>`) and its record
(`<id>.json`). Each is written under a temporary name in the same folder,
fsynced and renamed into place, bytes first and record last, so a crash at
any moment leaves the whole asset or nothing: an asset exists exactly when
its record does. Nothing here lives in one process's memory, so every worker
and every node sharing the folder sees the same assets.
"""

import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass

from . import logs

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_EXT = re.compile(r"^[a-z0-9]{1,5}$")


def crockford(number, length):
    """`number` as `length` characters of Crockford base32, most significant first."""
    out = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        out.append(CROCKFORD[digit])
    return "".join(reversed(out))


def random_crockford(length):
    return crockford(secrets.randbits(5 * length), length)


@dataclass(frozen=True)
class Asset:
    """An asset's record: id, project, format, size, dimensions, etag, created... as stored."""

    record: dict

    @property
    def id(self):
        return self.record["id"]

    @property
    def project(self):
        return self.record["project"]

    @property
    def ext(self):
        return self.record["ext"]

    @property
    def size(self):
        return self.record["size"]

    def info(self):
        """The probe.SourceInfo fields of the stored bytes."""
        return dict(self.record["info"])


class AssetStore:
    def __init__(self, root):
        self.root = root
        self._secret = None

    def secret(self):
        """This store's own random key (made once, kept beside the assets, shared by every node)."""
        if self._secret is None:
            path = os.path.join(self.root, ".id-secret")
            os.makedirs(self.root, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                # Written whole before anybody reads it: under a temporary name first.
                os.close(fd)
                _write_whole(self.root, ".id-secret", secrets.token_bytes(32))
            for _ in range(50):
                with open(path, "rb") as fh:
                    value = fh.read()
                if len(value) == 32:
                    self._secret = value
                    break
                time.sleep(0.01)  # another process is writing it this instant
            else:
                raise OSError(f"{path} is not a 32-byte key")
        return self._secret

    def _folder(self, asset_id):
        # Sharded by the id's last two characters (its random end), to keep folders small.
        return os.path.join(self.root, asset_id[-2:].lower())

    def body_path(self, asset):
        return os.path.join(self._folder(asset.id), f"{asset.id}.{asset.ext}")

    def _record_path(self, asset_id):
        return os.path.join(self._folder(asset_id), f"{asset_id}.json")

    def get(self, asset_id):
        """The asset with this id, or None (unknown, malformed id, or an unreadable record)."""
        if not isinstance(asset_id, str) or not _ID.match(asset_id):
            return None
        try:
            with open(self._record_path(asset_id), encoding="utf-8") as fh:
                record = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logs.fault_once(f"asset_record_unreadable:{asset_id}", error=str(exc))
            return None
        if not isinstance(record, dict) or record.get("id") != asset_id:
            return None
        return Asset(record)

    def read(self, asset):
        """The asset's bytes, or None when the file is gone or not the size its record says."""
        try:
            with open(self.body_path(asset), "rb") as fh:
                body = fh.read(asset.size + 1)
        except OSError:
            return None
        return body if len(body) == asset.size else None

    def open(self, asset):
        """The asset's bytes as an open file (to stream), or None."""
        try:
            fh = open(self.body_path(asset), "rb")  # noqa: SIM115 - handed to the WSGI server
        except OSError:
            return None
        if os.fstat(fh.fileno()).st_size != asset.size:
            fh.close()
            return None
        return fh

    def put(self, asset_id, ext, body, record, exclusive=False):
        """Keep an asset: bytes, then record, each written whole before it gets its name.

        `exclusive`: refuse (FileExistsError) when the asset exists already, atomically.
        """
        if not _ID.match(asset_id) or not _EXT.match(ext):
            raise ValueError(f"malformed asset id or extension: {asset_id!r}.{ext!r}")
        record = dict(
            record, id=asset_id, ext=ext, size=len(body), created=record.get("created", time.time())
        )
        folder = self._folder(asset_id)
        os.makedirs(folder, exist_ok=True)
        _write_whole(folder, f"{asset_id}.{ext}", body, exclusive)
        try:
            _write_whole(
                folder, f"{asset_id}.json", json.dumps(record, separators=(",", ":")).encode(), exclusive
            )
        except FileExistsError:
            os.unlink(os.path.join(folder, f"{asset_id}.{ext}"))
            raise
        return Asset(record)

    def delete(self, asset):
        """Forget an asset: its record first, so it is gone at once, then its bytes."""
        for path in (self._record_path(asset.id), self.body_path(asset)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def all(self, project=None, prefix=""):
        """Every asset (of one project; whose id starts with `prefix`), oldest first."""
        found = []
        try:
            shards = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return found
        for shard in shards:
            try:
                names = os.listdir(os.path.join(self.root, shard))
            except (NotADirectoryError, FileNotFoundError):
                continue
            for name in names:
                if name.endswith(".json") and name.startswith(prefix) and not name.startswith("."):
                    asset = self.get(name[:-5])
                    if asset is not None and (project is None or asset.project == project):
                        found.append(asset)
        found.sort(key=lambda a: (a.record.get("created", 0), a.id))
        return found


def _write_whole(folder, name, data, exclusive=False):
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, os.path.join(folder, name))  # fails, atomically, when the name is taken
            os.unlink(tmp)
        else:
            os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
