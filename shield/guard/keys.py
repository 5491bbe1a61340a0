"""Project keys: a public id and a secret, bound to one project, with scopes and an expiry.

Keys live in `keys.db` (SQLite, in state_dir, readable by its owner only),
read on every check, so a revocation or an expiry holds in every worker as
soon as it is written. The secret itself is kept because path-style URLs are
signed with it (HMAC keyed by the whole secret string); a presented secret is
looked up by its SHA-256 and then compared in constant time. Secrets are
answered once, by create and rotate, and never logged.
"""

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .. import logs
from ..errors import InvalidParam
from ..statedb import StateDB

SCOPES = ("images", "optimize", "purge", "stats", "upload", "assets")
ID_PREFIX = "pk_"
SECRET_PREFIX = "sk_"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
MAX_NAME = 100
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, scopes TEXT NOT NULL,
    secret TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created REAL NOT NULL,
    expires REAL, revoked REAL);
CREATE INDEX IF NOT EXISTS keys_project ON keys (project);
"""


def iso(ts):
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw, name):
    """An ISO 8601 time (a bare one is UTC) -> Unix seconds."""
    if not isinstance(raw, str):
        raise InvalidParam(name, "expected an ISO 8601 time such as 2027-03-01T00:00:00Z")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParam(
            name, f"expected an ISO 8601 time such as 2027-03-01T00:00:00Z, got {raw[:40]!r}"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if not datetime(1970, 1, 1, tzinfo=UTC) <= when <= LATEST:
        raise InvalidParam(name, f"must be between 1970 and {LATEST.year}")
    return when.timestamp()


def _hash(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_id():
    return ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(25))


def new_secret():
    # 32 random bytes are 43 characters of base64url without padding.
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


@dataclass(frozen=True)
class Key:
    id: str
    project: str
    name: str
    scopes: tuple
    created: float
    expires: float | None
    revoked: float | None
    secret: str = ""  # only on the Key that create or rotate answers, and for signing checks

    def usable(self, now=None):
        now = time.time() if now is None else now
        return self.revoked is None and (self.expires is None or now < self.expires)

    def to_json(self, with_secret=False):
        out = {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": iso(self.created),
            "expires_at": iso(self.expires),
            "revoked": self.revoked is not None,
        }
        if with_secret:
            out = {"id": self.id, "secret": self.secret, **{k: v for k, v in out.items() if k != "id"}}
        return out


def check_scopes(raw):
    if raw is None:
        return SCOPES
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise InvalidParam("scopes", f"expected a non-empty list of {', '.join(SCOPES)}")
    unknown = [s for s in raw if s not in SCOPES]
    if unknown:
        raise InvalidParam("scopes", f"{unknown[0][:40]!r} is not one of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in raw)


class KeyRing:
    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, "keys.db")
        self._state = StateDB(self.path, _SCHEMA, private=True)
        self._lock = threading.Lock()
        self.on_write = None  # cluster mode: called with the rows of every key written here

    def _written(self, *key_ids):
        if self.on_write is not None:
            self.on_write(self.rows(key_ids))

    def rows(self, key_ids=None):
        """Stored keys as rows for another node (their secrets included: they verify signatures there)."""
        sql = f"SELECT {self._COLUMNS} FROM keys"
        if key_ids is not None:
            sql += f" WHERE id IN ({','.join('?' * len(key_ids))})"
        found = self._db().execute(sql, tuple(key_ids or ())).fetchall()
        return [dict(zip(self._COLUMNS.split(", "), r, strict=True)) for r in found]

    def apply_rows(self, rows):
        """Keys written on another node (cluster mode), stored as they are there."""
        db = self._db()
        with self._lock:
            for row in rows:
                key = Key(
                    row["id"],
                    row["project"],
                    row["name"],
                    tuple(s for s in row["scopes"].split(",") if s),
                    row["created"],
                    row["expires"],
                    row["revoked"],
                    row["secret"],
                )
                found = db.execute("SELECT revoked FROM keys WHERE id = ?", (key.id,)).fetchone()
                if found is not None and found[0] is not None and key.revoked is None:
                    continue  # a revocation is never undone by an older copy of the key
                db.execute("DELETE FROM keys WHERE id = ?", (key.id,))
                self._insert(db, key)

    def _db(self):
        db = self._state.get()
        if db is None:
            raise OSError(f"cannot open {self.path}")
        return db

    @staticmethod
    def _row_key(row, with_secret=False):
        kid, project, name, scopes, secret, created, expires, revoked = row
        return Key(
            kid,
            project,
            name,
            tuple(s for s in scopes.split(",") if s),
            created,
            expires,
            revoked,
            secret if with_secret else "",
        )

    _COLUMNS = "id, project, name, scopes, secret, created, expires, revoked"

    def create(self, project, name="", scopes=None, expires=None):
        """A new key for `project`; the answer is the only time its secret is shown."""
        if not isinstance(name, str) or len(name) > MAX_NAME:
            raise InvalidParam("name", f"expected a string of at most {MAX_NAME} characters")
        scopes = check_scopes(scopes)
        if expires is not None and expires <= time.time():
            raise InvalidParam("expires_at", "must be in the future")
        key = Key(new_id(), project, name, scopes, time.time(), expires, None, new_secret())
        self._insert(self._db(), key)
        self._written(key.id)
        logs.event("key_created", project=project, key_id=key.id, scopes=list(scopes))
        return key

    def _insert(self, db, key):
        db.execute(
            f"INSERT INTO keys ({self._COLUMNS}, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.project,
                key.name,
                ",".join(key.scopes),
                key.secret,
                key.created,
                key.expires,
                key.revoked,
                _hash(key.secret),
            ),
        )

    def list(self, project):
        rows = self._db().execute(
            f"SELECT {self._COLUMNS} FROM keys WHERE project = ? ORDER BY created, id", (project,)
        )
        return [self._row_key(r) for r in rows]

    def get(self, project, key_id):
        row = (
            self._db()
            .execute(f"SELECT {self._COLUMNS} FROM keys WHERE id = ? AND project = ?", (key_id, project))
            .fetchone()
        )
        return self._row_key(row) if row else None

    def rotate(self, project, key_id):
        """A new pair with the old one's name, scopes and expiry; the old key is revoked in the same step."""
        db = self._db()
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    f"SELECT {self._COLUMNS} FROM keys WHERE id = ? AND project = ? AND revoked IS NULL",
                    (key_id, project),
                ).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return None
                old = self._row_key(row)
                now = time.time()
                key = Key(new_id(), project, old.name, old.scopes, now, old.expires, None, new_secret())
                db.execute("UPDATE keys SET revoked = ? WHERE id = ?", (now, key_id))
                self._insert(db, key)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        self._written(key_id, key.id)
        logs.event("key_rotated", project=project, key_id=key_id, new_key_id=key.id)
        return key

    def revoke(self, project, key_id):
        found = self.get(project, key_id)
        if found is None:
            return False
        self._db().execute(
            "UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id)
        )
        self._written(key_id)
        logs.event("key_revoked", project=project, key_id=key_id)
        return True

    def revoke_project(self, project):
        """Deleting a project revokes its keys: a new project of that name starts with none."""
        try:
            db = self._db()
            ids = [
                r[0]
                for r in db.execute("SELECT id FROM keys WHERE project = ? AND revoked IS NULL", (project,))
            ]
            db.execute(
                "UPDATE keys SET revoked = ? WHERE project = ? AND revoked IS NULL", (time.time(), project)
            )
            if ids:
                self._written(*ids)
        except (OSError, sqlite3.Error) as exc:
            logs.fault_once("keys_revoke_failed", project=project, error=str(exc))

    def by_secret(self, secret):
        """The usable key whose secret this is, or None (unknown, revoked or expired)."""
        if not secret.startswith(SECRET_PREFIX):
            return None
        try:
            row = (
                self._db()
                .execute(f"SELECT {self._COLUMNS} FROM keys WHERE secret_hash = ?", (_hash(secret),))
                .fetchone()
            )
        except (OSError, sqlite3.Error) as exc:
            logs.fault_once("keys_read_failed", error=str(exc))
            return None
        if row is None or not hmac.compare_digest(row[4].encode(), secret.encode()):
            return None
        key = self._row_key(row)
        return key if key.usable() else None

    def by_id(self, key_id):
        """The usable key with this public id, its secret included (for checking signatures)."""
        try:
            row = self._db().execute(f"SELECT {self._COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
        except (OSError, sqlite3.Error) as exc:
            logs.fault_once("keys_read_failed", error=str(exc))
            return None
        if row is None:
            return None
        key = self._row_key(row, with_secret=True)
        return key if key.usable() else None
