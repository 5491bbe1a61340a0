"""Purge requests: validate the selectors, run them against the store, remember the answer.

A purge deletes the variants (and the stored originals of their files) from
the shared cache before it answers, so no worker can serve them afterwards.
An `idempotency_key` seen before answers the first result again, from
`purges.db` in state_dir.
"""

import json
import os
import time
import uuid
from dataclasses import dataclass, replace

from .. import logs
from ..errors import BadRequest, Conflict, ForbiddenScope
from ..statedb import StateDB

MAX_SELECTORS = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS purges (
    key TEXT PRIMARY KEY, request TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL);
"""
KEEP_RECORDS = 7 * 86400


@dataclass(frozen=True)
class PurgeRequest:
    tags: tuple = ()
    paths: tuple = ()  # (project, path) pairs
    prefixes: tuple = ()  # (project, path prefix) pairs
    everything: str | None = None
    idempotency_key: str | None = None
    ids: tuple = ()  # asset ids: every cached variant of those assets goes (the assets stay)
    within: str | None = None  # a project key's purge: nothing outside its project is touched


def _str_list(body, name):
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequest(f"{name}: expected a list of non-empty strings")
    if len(value) > MAX_SELECTORS:
        raise BadRequest(f"{name}: at most {MAX_SELECTORS} per call")
    return value


def _split(url_path, name, prefix=False):
    """'/demo/a/b.jpg' -> ('demo', 'a/b.jpg')."""
    if "?" in url_path or "#" in url_path:
        raise BadRequest(
            f"{name}: {url_path!r} has a query; a purge covers every variant of a file, give its path alone"
        )
    if not url_path.startswith("/") or url_path.count("/") < 2:
        raise BadRequest(f"{name}: {url_path!r} is not /<project>/<path>")
    project, _, path = url_path[1:].partition("/")
    if not project or (not path and not prefix):
        raise BadRequest(f"{name}: {url_path!r} is not /<project>/<path>")
    return project, path


def parse(body):
    """A purge body -> PurgeRequest; BadRequest names what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    unknown = set(body) - {"tags", "paths", "prefixes", "project", "everything", "idempotency_key", "ids"}
    if unknown:
        raise BadRequest(f"{sorted(unknown)[0]}: unknown field")
    tags = _str_list(body, "tags")
    paths = [_split(p, "paths") for p in _str_list(body, "paths")]
    prefixes = [_split(p, "prefixes", prefix=True) for p in _str_list(body, "prefixes")]
    ids = _str_list(body, "ids")
    everything = None
    if body.get("everything") is not None:
        if body.get("everything") is not True or not isinstance(body.get("project"), str):
            raise BadRequest('everything: give "project": "<name>" with "everything": true')
        everything = body["project"]
    elif "project" in body:
        raise BadRequest('project: only used with "everything": true')
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
        raise BadRequest("idempotency_key: expected a string of 1-200 characters")
    if not (tags or paths or prefixes or everything or ids):
        raise BadRequest("Nothing to purge: give tags, paths, prefixes, ids, or project with everything.")
    return PurgeRequest(tuple(tags), tuple(paths), tuple(prefixes), everything, key, tuple(ids))


def projects_named(req):
    """The projects a purge names (its paths', prefixes' and everything's)."""
    return {p for p, _ in req.paths} | {p for p, _ in req.prefixes} | ({req.everything} - {None})


def within(req, project):
    """A project key's purge: refused when it names another project, its tags count in its own only."""
    if projects_named(req) - {project}:
        raise ForbiddenScope("This key may purge its own project's files only.")
    return replace(req, within=project)


class Purger:
    def __init__(self, store, stats, state_dir, assets):
        self.store = store
        self.assets = assets
        self.stats = stats
        self._state = StateDB(os.path.join(state_dir, "purges.db"), _SCHEMA)

    def _conn(self):
        return self._state.get()

    def run(self, req):
        foreign = [
            i
            for i in req.ids
            if req.within and (a := self.assets.get(i)) is not None and a.project != req.within
        ]
        if foreign:
            raise ForbiddenScope(f"{foreign[0]} is another project's asset.")
        db = self._conn()
        selectors = [req.tags, req.paths, req.prefixes, req.everything]
        if req.ids or req.within:  # (records made before ids existed keep their fingerprint)
            selectors += [req.ids, req.within]
        fingerprint = json.dumps(selectors)
        # A project key's idempotency keys are its project's own: they cannot meet another's.
        record_key = f"{req.within}\x1f{req.idempotency_key}" if req.within else req.idempotency_key
        if req.idempotency_key and db is not None:
            row = db.execute("SELECT request, result FROM purges WHERE key = ?", (record_key,)).fetchone()
            if row:
                if row[0] != fingerprint:
                    raise Conflict("This idempotency_key was used for a different purge; use a new key.")
                return json.loads(row[1])
        started = time.perf_counter()
        purged, counts = 0, {}  # counts: variants removed per project, for its stats
        for tag in req.tags:
            purged += self.store.purge_tag(tag, req.within, counts=counts)
        for asset_id in req.ids:
            asset = self.assets.get(asset_id)
            if asset is not None and req.within in (None, asset.project):
                self.store.purge_tag(f"asset-{asset_id}", asset.project)
                purged += 1  # an id counts once, found, whatever number of variants it had
                counts[asset.project] = counts.get(asset.project, 0) + 1
        for project, path in req.paths:
            purged += self.store.purge_file(project, path, counts=counts)
        for project, prefix in req.prefixes:
            purged += self.store.purge_prefix(project, prefix, counts=counts)
        if req.everything:
            purged += self.store.purge_project(req.everything, counts=counts)
        result = {"purged": purged, "status": "done", "purge_id": uuid.uuid4().hex}
        if req.idempotency_key and db is not None:
            now = time.time()
            db.execute(
                "INSERT OR IGNORE INTO purges (key, request, result, created) VALUES (?, ?, ?, ?)",
                (record_key, fingerprint, json.dumps(result), now),
            )
            db.execute("DELETE FROM purges WHERE created < ?", (now - KEEP_RECORDS,))
            row = db.execute("SELECT result FROM purges WHERE key = ?", (record_key,)).fetchone()
            result = json.loads(row[0])
        for project, n in counts.items():
            if n:
                self.stats.incr(project, "purged", n)
        logs.event(
            "purge",
            purge_id=result["purge_id"],
            purged=purged,
            tags=list(req.tags),
            paths=["/".join(p) for p in req.paths],
            prefixes=["/".join(p) for p in req.prefixes],
            everything=req.everything,
            ids=list(req.ids),
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return result
