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
            settings, services.store, self.local_purger, self.log, apply=self.apply, resync=self.resync
        )
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
        """Before a management write: 503 cluster_unavailable unless Redis answers."""
        if method in ("POST", "PATCH", "PUT", "DELETE") and CONFIG_WRITES.match(path):
            try:
                self.link.call(lambda r: r.ping())
            except ClusterDown:
                raise ClusterUnavailable() from None

    def _publish(self, body, snapshot):
        try:
            self.link.call(snapshot)
            self.log.append(body)
        except ClusterDown:
            self.log.keep(body)  # the follower sends it, and the snapshot with it, when Redis is back

    def _project_written(self, row):
        self._publish(
            {"kind": "project", "row": row}, lambda r: r.hset(PROJECTS, row["name"], json.dumps(row))
        )

    def _keys_written(self, rows):
        if rows:
            self._publish(
                {"kind": "keys", "rows": rows},
                lambda r: r.hset(KEYS, mapping={row["id"]: json.dumps(row) for row in rows}),
            )

    # -- entries of other nodes, applied by the follower

    def apply(self, body):
        kind = body.get("kind")
        if kind == "project":
            self.services.projects.apply_row(body["row"])
            self.link.call(lambda r: r.hset(PROJECTS, body["row"]["name"], json.dumps(body["row"])))
        elif kind == "keys":
            self.services.keys.apply_rows(body["rows"])
        else:
            return False
        return True

    def resync(self):
        """Seed Redis with this node's rows where it has none, then take every row it holds."""
        projects, keys = self.services.projects, self.services.keys

        def run(r):
            for row in projects.rows():
                r.hsetnx(PROJECTS, row["name"], json.dumps(row))
            for row in keys.rows():
                r.hsetnx(KEYS, row["id"], json.dumps(row))
            return r.hvals(PROJECTS), r.hvals(KEYS)

        project_rows, key_rows = self.link.call(run)
        for raw in project_rows:
            projects.apply_row(json.loads(raw))
        keys.apply_rows([json.loads(raw) for raw in key_rows])
