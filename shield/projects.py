"""The projects in force: the configuration file's, changed by the admin API.

Projects made, changed or deleted through /v1/projects live in `projects.db`
(SQLite, in state_dir), over the file's: a deletion hides a file project, and
a PATCH of a file project keeps only the fields it changed, over the file's
current values (a later edit of the file's other fields applies at restart). Every write moves a counter in a small mapped file
(`projects.changes`) that each lookup reads, so a request that starts after a
write was answered, in any worker, sees that write; the table's own change
counter is checked too, at most every REFRESH_INTERVAL.
"""

import json
import os
import sqlite3
import threading
import time
import urllib.parse

from . import logs
from .cache.hot import Generation
from .settings import ConfigError, build_project
from .statedb import StateDB

REFRESH_INTERVAL = 0.5
OVERRIDES = "_overrides"  # a stored row holding only the API's changes to a file project


def project_fields(project, changes):
    """The validated values of the fields named in `changes`."""
    settings = project.settings()
    return {name: settings[name] for name in changes if name in settings and name != "name"}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY, body TEXT, deleted INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS created (name TEXT PRIMARY KEY, at REAL NOT NULL);
"""


class DomainTaken(Exception):
    """The domain is another project's: a Host routes to one project only."""


def _domains(projects):
    return {p.domain: p for p in projects.values() if p.domain}


class Registry:
    def __init__(self, settings):
        self._file_projects = dict(settings.projects)
        self._projects = dict(self._file_projects)
        self._by_domain = _domains(self._projects)
        self._public_host = (
            urllib.parse.urlsplit(settings.public_url).hostname if settings.public_url else None
        )
        self.path = os.path.join(settings.state_dir, "projects.db")
        self._state = StateDB(self.path, _SCHEMA)
        self._changes = Generation(os.path.join(settings.state_dir, "projects.changes"))
        self._seen_changes = None
        self._seen_version = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self.on_write = None  # cluster mode: called with every row written here

    def _conn(self):
        return self._state.get()

    def _refresh(self, force=False):
        now = time.monotonic()
        changes = self._changes.current()
        if not force and now - self._checked_at < REFRESH_INTERVAL and changes == self._seen_changes:
            return
        db = self._conn()
        if db is None:
            return  # not marked as seen: the next call tries again
        try:
            # data_version moves whenever another connection commits to the file.
            version = (
                db.execute("PRAGMA data_version").fetchone()[0],
                db.execute("SELECT count(*), max(updated) FROM projects").fetchone(),
            )
            if version == self._seen_version and not force:
                self._checked_at, self._seen_changes = now, changes
                return
            rows = db.execute("SELECT name, body, deleted FROM projects").fetchall()
            self._checked_at, self._seen_changes = now, changes
        except sqlite3.Error as exc:
            logs.fault_once("projects_db_read_failed", error=str(exc))
            return  # not marked as seen: the next call tries again
        projects = dict(self._file_projects)
        for name, body, deleted in rows:
            if deleted:
                projects.pop(name, None)
                continue
            try:
                table = json.loads(body)
                if OVERRIDES in table:
                    # A file project changed through the API: the changed fields over the
                    # file's current ones, so later edits of the file's other fields apply.
                    if name not in self._file_projects:
                        continue  # gone from the file: nothing left to change
                    table = {**self._file_projects[name].settings(), **table[OVERRIDES]}
                projects[name] = build_project(name, table, where="api projects")
            except (ConfigError, ValueError) as exc:
                logs.fault_once(f"project_invalid_{name}", error=str(exc))
        self._projects, self._by_domain, self._seen_version = projects, _domains(projects), version

    def get(self, name):
        self._refresh()
        return self._projects.get(name)

    def by_domain(self, host):
        """The project whose domain this Host is (lower case, no port), or None."""
        self._refresh()
        return self._by_domain.get(host)

    def created_at(self, name):
        db = self._conn()
        try:
            row = db.execute("SELECT at FROM created WHERE name = ?", (name,)).fetchone() if db else None
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def _check_domain(self, project):
        if project.domain and project.domain == self._public_host:
            raise DomainTaken(f"domain: {project.domain} is shield's own public_url host")
        owner = self._by_domain.get(project.domain) if project.domain else None
        if owner is not None and owner.name != project.name:
            raise DomainTaken(f"domain: {project.domain} belongs to project {owner.name!r}")

    def all(self):
        self._refresh()
        return [self._projects[name] for name in sorted(self._projects)]

    def _write(self, name, body, deleted=False, created=False):
        row = {
            "name": name,
            "body": json.dumps(body) if body is not None else None,
            "deleted": int(deleted),
            "updated": time.time(),
            "created": time.time() if created else None,
        }
        self.apply_row(row)
        if self.on_write is not None:
            self.on_write(row)  # cluster mode: to every other node

    def apply_row(self, row, newer_only=False):
        """Store one row as written here or on another node (cluster mode); every worker sees it.

        `newer_only`: not over a row written later (two nodes' concurrent writes agree on the newest).
        """
        db = self._conn()
        if db is None:
            raise OSError(f"cannot open {self.path}")
        with self._lock:
            if newer_only:
                found = db.execute("SELECT updated FROM projects WHERE name = ?", (row["name"],)).fetchone()
                if found is not None and found[0] > row["updated"]:
                    return
            db.execute(
                "INSERT INTO projects (name, body, deleted, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET body = excluded.body, deleted = excluded.deleted,"
                " updated = excluded.updated",
                (row["name"], row["body"], row["deleted"], row["updated"]),
            )
            if row.get("created"):
                db.execute(
                    "INSERT OR REPLACE INTO created (name, at) VALUES (?, ?)", (row["name"], row["created"])
                )
        self._changes.bump()
        self._refresh(force=True)

    def rows(self):
        """Every stored row, as apply_row takes them (a cluster node seeds Redis with these)."""
        db = self._conn()
        found = db.execute(
            "SELECT p.name, p.body, p.deleted, p.updated, c.at FROM projects p LEFT JOIN created c ON c.name = p.name"
        ).fetchall()
        return [dict(zip(("name", "body", "deleted", "updated", "created"), r, strict=True)) for r in found]

    def create(self, name, table):
        project = build_project(name, table, where="projects")
        self._refresh(force=True)  # a write decides on what is stored now, not on this worker's copy
        if self.get(name) is not None:
            return None
        self._check_domain(project)
        self._write(name, project.settings(), created=True)
        return project

    def update(self, name, changes):
        self._refresh(force=True)
        current = self.get(name)
        if current is None:
            return None
        changes = dict(changes)
        if "signing_key" in changes and changes["signing_key"] in (["***"], "***"):
            changes["signing_key"] = current.settings()["signing_key"]
        merged = {**current.settings(), **changes}
        project = build_project(name, merged, where="projects")
        self._check_domain(project)
        overrides = self._overrides(name)
        if overrides is not None:  # a file project: keep only what the API changed
            self._write(name, {OVERRIDES: {**overrides, **project_fields(project, changes)}})
        else:
            self._write(name, project.settings())
        return project

    def _overrides(self, name):
        """The API's changes to a file project ({} before the first), or None for an API-made project."""
        if name not in self._file_projects:
            return None
        db = self._conn()
        row = (
            db.execute("SELECT body, deleted FROM projects WHERE name = ?", (name,)).fetchone()
            if db
            else None
        )
        if row is None:
            return {}
        body = json.loads(row[0]) if row[0] else {}
        return body.get(OVERRIDES) if not row[1] and OVERRIDES in body else None

    def delete(self, name):
        self._refresh(force=True)
        if self.get(name) is None:
            return False
        self._write(name, None, deleted=True)
        return True
