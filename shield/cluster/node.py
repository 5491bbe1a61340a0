"""A node of the cluster: its link to Redis, its log, its follower, started once per worker.

Projects and keys: Redis holds the truth (the hashes `shield:projects` and
`shield:keys`, one row per project or key), and every change is also an entry of
the log, which each node's follower applies to its own copy in state_dir. A node
keeps serving from that copy while Redis is away; writes then answer 503
`cluster_unavailable`. A node that resyncs (another Redis, a trimmed log) first
seeds an empty Redis with its own rows, then takes every row Redis holds.
"""

import json
import re
import threading
import time

from ..errors import ClusterUnavailable
from .follower import Follower, is_ready, ready_epoch
from .link import PREFIX, ClusterDown, Link, node_id_of
from .log import ClusterPurger, Log
from .shared import FleetStats, SharedLimiter

LEAD_EVERY = 2.0  # seconds between a worker's tries to become the node's follower
PROJECTS = PREFIX + "projects"
KEYS = PREFIX + "keys"
# The management calls that change projects or keys: refused while Redis is away.
# HSET a row only over an older one (or none): concurrent writes on two nodes agree on the newest.
_NEWER = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local stamp = cjson.decode(old)['_stamp'] or 0
  if tonumber(stamp) > tonumber(ARGV[3]) then return 0 end
end
local row = cjson.decode(ARGV[2])
row['_stamp'] = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
return 1
"""


def _stamp(row):
    """When a row was last written: a project's `updated`; a key's creation or revocation."""
    return max(float(row.get("updated") or 0), float(row.get("created") or 0), float(row.get("revoked") or 0))


CONFIG_WRITES = re.compile(r"^/v1/(projects(/|$)|cdn/distribution/)")


class Node:
    def __init__(self, settings, services):
        self.settings = settings
        self.services = services
        self.node_id = node_id_of(settings)
        self.link = Link(settings.redis_url)
        self.log = Log(self.link, self.node_id, settings.state_dir)
        self.local_purger = services.purger
        self.purger = ClusterPurger(self.local_purger, self.log, settings.cluster_purge_wait)
        self.follower = Follower(
            settings,
            services.store,
            self.local_purger,
            self.log,
            apply=self.apply,
            resync=self.resync,
            write_snapshot=self.write_snapshot,
        )
        self._newer = None
        services.projects.on_write = self._project_written
        services.keys.on_write = self._keys_written
        services.guard.limiter = SharedLimiter(self.link, services.guard.limiter, self.log)
        self.stats = FleetStats(self.link, self.node_id, services.stats)

    def ready(self):
        return is_ready(self.settings.state_dir)

    def epoch(self):
        return ready_epoch(self.settings.state_dir)

    def start(self):
        """In each worker: try to become the node's follower now and every LEAD_EVERY seconds."""
        from ..origin import gevent_patched

        def lead():
            while not self.follower.try_lead():
                time.sleep(LEAD_EVERY)
            self.follower.run_forever()

        if gevent_patched():
            import gevent

            gevent.spawn(lead)
        else:
            threading.Thread(target=lead, daemon=True, name="shield-follower").start()

    # -- writes of projects and keys

    def check_writable(self, method, path):
        """Before a management write: 503 cluster_unavailable unless Redis answers (after 401, not before)."""
        if method in ("POST", "PATCH", "PUT", "DELETE") and CONFIG_WRITES.match(path):
            from ..api.auth import principal

            principal()  # an unauthenticated write is 401 whatever Redis's state
            try:
                self.link.call(lambda r: r.ping())
            except ClusterDown:
                raise ClusterUnavailable() from None

    def _publish(self, body, snapshot):
        """Snapshot rows into Redis, then the log entry; both kept in the outbox if Redis fails."""
        try:
            self.write_snapshot(snapshot)
            self.log.append(body)
        except ClusterDown:
            self.log.keep(body, snapshot)  # the follower sends both when Redis is back

    def write_snapshot(self, snapshot):
        """Rows into Redis's hashes, each only over an older one (newest `updated` wins)."""

        def run(r):
            if self._newer is None:
                self._newer = r.register_script(_NEWER)
            for kind, key_field, rows in (
                ("project", "name", snapshot.get("projects", ())),
                ("key", "id", snapshot.get("keys", ())),
            ):
                for row in rows:
                    self._newer(
                        keys=[PROJECTS if kind == "project" else KEYS],
                        args=[row[key_field], json.dumps(row), _stamp(row)],
                    )

        self.link.call(run)

    def _project_written(self, row):
        self._publish({"kind": "project", "row": row}, {"projects": [row]})

    def _keys_written(self, rows):
        if rows:
            self._publish({"kind": "keys", "rows": rows}, {"keys": rows})

    # -- entries of other nodes, applied by the follower

    def apply(self, body):
        kind = body.get("kind")
        if kind == "project":
            self.services.projects.apply_row(body["row"], newer_only=True)
        elif kind == "keys":
            self.services.keys.apply_rows(body["rows"])
        else:
            return False
        return True

    def resync(self):
        """Seed Redis with this node's rows where it has none, then take every row it holds."""
        projects, keys = self.services.projects, self.services.keys

        self.write_snapshot({"projects": projects.rows(), "keys": keys.rows()})  # where Redis's are older
        project_rows, key_rows = self.link.call(lambda r: (r.hvals(PROJECTS), r.hvals(KEYS)))
        for raw in project_rows:
            projects.apply_row(json.loads(raw), newer_only=True)
        keys.apply_rows([json.loads(raw) for raw in key_rows])
