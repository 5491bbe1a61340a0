"""The disk cache: originals, variants and the index that finds them by tag or path.

The only module that touches diskcache. One diskcache (values, bounded by
cache_max_bytes) plus one SQLite index (`index.db`: which variant belongs to
which file and carries which tags). Both are shared by every worker process
on the machine and survive restarts.

Every cache fault (a full or unwritable disk, a missing or damaged entry, a
locked database) is a miss, never an error: the request is served straight
from the origin and the fault is logged once.
"""

import logging
import os
import sqlite3
import time

import diskcache

from .. import logs, pid
from .entries import Entry, pack_entry, unpack_entry
from .hot import Generation
from .lru import ReadCache as _Cache
from .lru import real_thread_local as _real_thread_local
from .upkeep import Upkeep, rollback

__all__ = ["Entry", "Store", "meta_key_of", "original_key_of", "variant_key_of"]

PURGE_CHUNK = 500
RETRY_OPEN_AFTER = 5.0


_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS variants (
    key TEXT PRIMARY KEY, project TEXT NOT NULL, path TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS variants_file ON variants (project, path);
CREATE TABLE IF NOT EXISTS variant_tags (
    tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS variant_tags_key ON variant_tags (key);
CREATE TABLE IF NOT EXISTS files (
    project TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (project, path)) WITHOUT ROWID;
"""


class Store:
    def __init__(self, cache_dir, max_bytes):
        self.cache_dir = cache_dir
        self.max_bytes = max_bytes
        self._cache = None
        self._index = None
        self._pid = None
        self._failed_at = None
        self._local = _real_thread_local()
        # Moves forward after every purge and every dropped set of variants, so
        # workers' in-memory hot sets (hot.py) let go of what was removed.
        self.generation = Generation(os.path.join(cache_dir, "generation"))
        # Moves forward after every purge only: what was fetched or made before one is not stored.
        self.purges = Generation(os.path.join(cache_dir, "purges"))
        self.upkeep = Upkeep(self)

    # -- opening (lazily, once per process: workers fork after the app is built)

    def _open(self):
        if self._pid == pid.current() and self._cache is not None:
            return self._cache
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_OPEN_AFTER:
            return None
        try:
            cache = _Cache(
                self.cache_dir,
                size_limit=self.max_bytes,
                eviction_policy="least-recently-used",
                timeout=5,
                cull_limit=32,
            )
            cache._local = self._local
            index = sqlite3.connect(
                os.path.join(self.cache_dir, "index.db"),
                timeout=5,
                isolation_level=None,
                check_same_thread=False,
            )
            index.execute("PRAGMA journal_mode=WAL")
            index.execute("PRAGMA synchronous=NORMAL")
            index.executescript(_INDEX_SCHEMA)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            self._failed_at = time.monotonic()
            logs.fault_once("cache_unavailable", cache_dir=self.cache_dir, error=str(exc))
            return None
        self._cache, self._index, self._pid, self._failed_at = cache, index, pid.current(), None
        return cache

    @property
    def available(self):
        return self._open() is not None

    def health(self):
        """ "ok", "unavailable" (cannot be opened) or "unwritable" (writes fail): images then come from the origin."""
        cache = self._open()
        if cache is None:
            return "unavailable"
        try:
            writable = self.upkeep.probe(cache, self._index)
        except (diskcache.Timeout, ValueError) as exc:
            logs.fault_once("cache_write_probe_failed", cache_dir=self.cache_dir, error=str(exc))
            writable = False
        return "ok" if writable and not self.upkeep.failing else "unwritable"

    def _guard(self, what, default, fn, *args):
        cache = self._open()
        if cache is None:
            return default
        try:
            return fn(cache, *args)
        except (OSError, sqlite3.Error, diskcache.Timeout, ValueError, EOFError) as exc:
            logs.fault_once(f"cache_{what}_failed", cache_dir=self.cache_dir, error=str(exc))
            if what != "read":
                self.upkeep.failed()
            return default

    # -- plain values (original metadata, originals, small records)

    def get(self, key):
        def run(cache, key):
            found = cache.read(key)
            if found is None or isinstance(found, (bytes, str, int, float, dict, list)):
                return found
            try:  # a large value: diskcache handed back its file
                return found.read()
            finally:
                found.close()

        return self._guard("read", None, run, key)

    def set(self, key, value):
        def run(cache):
            cache.set(key, value)
            self.upkeep.maybe_run(cache, self._index)
            return True

        return self._guard("write", False, run)

    def delete(self, key):
        return self._guard("delete", False, lambda cache: cache.delete(key))

    def record_file(self, project, path):
        def run(cache):
            self._index.execute("INSERT OR IGNORE INTO files (project, path) VALUES (?, ?)", (project, path))
            return True

        return self._guard("index", False, run)

    # -- variants

    def get_variant(self, key):
        def run(cache):
            found = cache.read(key)
            if found is None:
                return None
            entry, damage = unpack_entry(found)
            if entry is None:
                # Dropped now, so logged once per damaged entry; the request is a miss.
                logs.event("cache_entry_damaged", logging.WARNING, key=key[:200], damage=damage)
                cache.delete(key)
            return entry

        return self._guard("read", None, run)

    def purged_since(self, mark):
        """Whether a purge ran after `mark` (a purges.current() taken before a fetch or transform)."""
        return mark is not None and self.purges.current() != mark

    def set_unless_purged(self, key, value, mark):
        """set(), unless a purge ran since `mark`; checked again after, so a purge never loses the race."""
        if self.purged_since(mark):
            return False
        stored = self.set(key, value)
        if stored and self.purged_since(mark):
            self.delete(key)
            return False
        return stored

    def put_variant(self, key, header, body, project, path, tags, mark=None):
        """Store a variant, index first: a dangling index row is harmless, an unindexed variant is not.

        With `mark`, nothing is stored when a purge ran since it was taken.
        """
        if self.purged_since(mark):
            return False

        def run(cache):
            now = time.time()
            with_header = dict(header, size=len(body))
            self._index.execute("BEGIN IMMEDIATE")
            try:
                self._index.execute(
                    "INSERT OR REPLACE INTO variants (key, project, path, created) VALUES (?, ?, ?, ?)",
                    (key, project, path, now),
                )
                self._index.executemany(
                    "INSERT OR IGNORE INTO variant_tags (tag, key) VALUES (?, ?)", [(t, key) for t in tags]
                )
                self._index.execute("COMMIT")
            except BaseException:
                rollback(self._index)
                raise
            stored = bool(cache.set(key, pack_entry(with_header, body)))
            if stored and self.purged_since(mark):
                cache.delete(key)  # the purge may have looked before this was written
                return False
            self.upkeep.maybe_run(cache, self._index)
            return stored

        return self._guard("write", False, run)

    # -- purging

    def _delete_keys(self, cache, keys):
        removed = 0
        for start in range(0, len(keys), PURGE_CHUNK):
            chunk = keys[start : start + PURGE_CHUNK]
            # One short write transaction per chunk: hits read without locks,
            # and other writers wait at most one chunk.
            with cache.transact():
                for key in chunk:
                    removed += bool(cache.delete(key))
            marks = ",".join("?" * len(chunk))
            self._index.execute("BEGIN IMMEDIATE")
            try:
                self._index.execute(f"DELETE FROM variants WHERE key IN ({marks})", chunk)
                self._index.execute(f"DELETE FROM variant_tags WHERE key IN ({marks})", chunk)
                self._index.execute("COMMIT")
            except BaseException:
                rollback(self._index)
                raise
        return removed

    def _forget_files(self, cache, files):
        """Drop the stored originals of these files, so the next request asks the origin."""
        for project, path in files:
            meta_key = meta_key_of(project, path)
            meta = cache.get(meta_key)
            cache.delete(meta_key)
            if isinstance(meta, dict) and meta.get("version"):
                cache.delete(original_key_of(project, path, meta["version"]))
            self._index.execute("DELETE FROM files WHERE project = ? AND path = ?", (project, path))

    def _purge(self, variant_sql, file_sql, params, counts=None):
        """Remove what the queries find; `counts` ({project: n}) gets the variants removed per project."""

        def run(cache):
            rows = self._index.execute(variant_sql, params).fetchall()
            by_project = {}
            for key, project, _path in rows:
                by_project.setdefault(project, []).append(key)
            files = {(r[1], r[2]) for r in rows}
            if file_sql:
                files |= set(self._index.execute(file_sql, params).fetchall())
            self.purges.bump()  # first: a fetch or transform under way now will not store
            removed = 0
            try:
                for project, keys in by_project.items():
                    n = self._delete_keys(cache, keys)
                    removed += n
                    if counts is not None:
                        counts[project] = counts.get(project, 0) + n
                self._forget_files(cache, files)
            finally:
                self.generation.bump()
            return removed

        return self._guard("purge", 0, run)

    def purge_tag(self, tag, project=None, counts=None):
        """Every variant with this tag (of one project only, when it is given)."""
        return self._purge(
            "SELECT v.key, v.project, v.path FROM variant_tags t JOIN variants v ON v.key = t.key"
            " WHERE t.tag = ?" + (" AND v.project = ?" if project else ""),
            None,
            (tag, project) if project else (tag,),
            counts,
        )

    def purge_file(self, project, path, counts=None):
        """Every variant of one file (all sizes and formats), and its stored original."""
        return self._purge(
            "SELECT key, project, path FROM variants WHERE project = ? AND path = ?",
            "SELECT project, path FROM files WHERE project = ? AND path = ?",
            (project, path),
            counts,
        )

    def purge_prefix(self, project, prefix, counts=None):
        hi = prefix + "\U0010ffff"
        return self._purge(
            "SELECT key, project, path FROM variants WHERE project = ? AND path >= ? AND path < ?",
            "SELECT project, path FROM files WHERE project = ? AND path >= ? AND path < ?",
            (project, prefix, hi),
            counts,
        )

    def purge_project(self, project, counts=None):
        return self._purge(
            "SELECT key, project, path FROM variants WHERE project = ?",
            "SELECT project, path FROM files WHERE project = ?",
            (project,),
            counts,
        )

    def drop_all(self):
        """Forget every variant and original (a cluster node that cannot trust its cache): how many went."""

        def run(cache):
            self.purges.bump()
            try:
                count = len(cache)
                cache.clear()
                self._index.execute("BEGIN IMMEDIATE")
                try:
                    for table in ("variants", "variant_tags", "files"):
                        self._index.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
                    self._index.execute("COMMIT")
                except BaseException:
                    rollback(self._index)
                    raise
            finally:
                self.generation.bump()
            return count

        return self._guard("purge", 0, run)

    def drop_variants_of(self, project, path, except_version):
        """A changed original makes the variants of its old bytes garbage: delete them now."""
        marker = f"|{except_version}|" if except_version else None

        def run(cache):
            keys = [
                k
                for (k,) in self._index.execute(
                    "SELECT key FROM variants WHERE project = ? AND path = ?", (project, path)
                )
                if marker is None or marker not in k
            ]
            try:
                return self._delete_keys(cache, keys)
            finally:
                self.generation.bump()

        return self._guard("purge", 0, run)

    def count_variants(self, project=None):
        def run(cache):
            if project is None:
                return self._index.execute("SELECT count(*) FROM variants").fetchone()[0]
            return self._index.execute(
                "SELECT count(*) FROM variants WHERE project = ?", (project,)
            ).fetchone()[0]

        return self._guard("index", 0, run)

    def volume(self):
        return self._guard("read", 0, lambda cache: cache.volume())


def meta_key_of(project, path):
    return f"m|{project}|{path}"


def original_key_of(project, path, version):
    return f"o|{project}|{path}|{version}"


def variant_key_of(project, path, version, canonical, klass):
    return f"v|{project}|{path}|{version}|{canonical}|{klass}"
