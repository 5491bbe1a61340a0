"""The replicated log: purges (and later other changes) every node applies, in order.

A Redis Stream (`shield:log`) whose entries carry a gap-free sequence number,
given by one Lua script together with the XADD, so no two entries share or skip
one. Each node's follower records the last sequence it applied in
`shield:applied` and shows it is alive in `shield:nodes` (a sorted set of last
heartbeats). A purge is applied on the receiving node first, then published,
then waited for: its answer says, per node seen in the last minute, whether
that node has applied it.

When Redis is down the purge is applied here and kept in an outbox file in
state_dir; the follower publishes it once Redis answers again.
"""

import contextlib
import fcntl
import json
import os
import secrets
import threading
import time

from .. import logs
from .link import PREFIX, ClusterDown

STREAM = PREFIX + "log"
SEQ = PREFIX + "seq"
APPLIED = PREFIX + "applied"
NODES = PREFIX + "nodes"
ONCE = PREFIX + "once:"  # ids of entries already published, kept a day
LIVE_FOR = 60.0  # a node seen within this many seconds is listed in purge answers
KEEP_ENTRIES = 100_000  # the stream is trimmed (approximately) to this many entries
POLL = 0.02

_APPEND = """
if ARGV[4] ~= '' and not redis.call('SET', KEYS[3] .. ARGV[4], '1', 'NX', 'EX', 86400) then
  return {0, ''}
end
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'node', ARGV[1], 'body', ARGV[2])
return {seq, id}
"""


def purge_body(req):
    """A PurgeRequest as the JSON every node rebuilds it from (no idempotency key: it was used here)."""
    return {
        "kind": "purge",
        "tags": list(req.tags),
        "paths": [list(p) for p in req.paths],
        "prefixes": [list(p) for p in req.prefixes],
        "everything": req.everything,
        "ids": list(req.ids),
        "within": req.within,
    }


class Log:
    def __init__(self, link, node_id, state_dir):
        self.link = link
        self.node_id = node_id
        self.outbox_path = os.path.join(state_dir, "cluster-outbox.jsonl")
        self._script = None
        self._outbox_lock = threading.Lock()
        self.known_path = os.path.join(state_dir, "cluster-nodes.json")  # written by the follower
        self._known = []
        self._shared = None  # what share_nodes last wrote

    def append(self, body):
        """Publish one entry: its sequence number (0 when this entry was published already).

        Every entry carries a unique `once` id: an append whose reply was lost, sent again
        from the outbox, is not published twice. Raises ClusterDown.
        """
        body.setdefault("once", secrets.token_hex(8))

        def run(r):
            if self._script is None:
                self._script = r.register_script(_APPEND)
            seq, _id = self._script(
                keys=[STREAM, SEQ, ONCE], args=[self.node_id, json.dumps(body), KEEP_ENTRIES, body["once"]]
            )
            return int(seq)

        return self.link.call(run)

    def live_nodes(self):
        now = time.time()
        self._known = self.link.call(lambda r: r.zrangebyscore(NODES, now - LIVE_FOR, "+inf"))
        return self._known

    @property
    def known(self):
        """The live nodes when Redis last answered, in this worker or in the node's follower."""
        if self._known:
            return self._known
        try:
            with open(self.known_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return []

    def share_nodes(self):
        """Ask Redis for the live nodes and keep them for this node's other workers: True when they changed."""
        nodes = self.live_nodes()
        if nodes == self._shared and os.path.exists(self.known_path):
            return False
        tmp = self.known_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(nodes, fh)
        os.replace(tmp, self.known_path)
        self._shared = nodes
        return True

    def wait_applied(self, seq, timeout):
        """{node: "done" | "pending"} for every live node once all have applied `seq`, or at `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.live_nodes()
            applied = self.link.call(lambda r, nodes=nodes: r.hmget(APPLIED, nodes)) if nodes else []
            status = {
                node: "done" if node == self.node_id or int(got or 0) >= seq else "pending"
                for node, got in zip(nodes, applied, strict=True)
            }
            status[self.node_id] = "done"  # applied here before it was published
            if all(v == "done" for v in status.values()) or time.monotonic() >= deadline:
                return status
            time.sleep(POLL)

    # -- the outbox: entries made while Redis was away

    @contextlib.contextmanager
    def _outbox(self):
        """The outbox, locked against this node's other workers (an flock) and threads."""
        with self._outbox_lock:
            fd = os.open(self.outbox_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def keep(self, body, snapshot=None):
        """Keep an entry (and the snapshot write it needs) until Redis answers. Owner-only: a key's
        row holds its secret."""
        body.setdefault("once", secrets.token_hex(8))
        if snapshot is not None:
            body = dict(body, snapshot=snapshot)
        with self._outbox():
            fd = os.open(self.outbox_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(json.dumps(body) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def flush_outbox(self, write_snapshot=None):
        """Publish what the outbox holds, in order; what fails stays for next time."""
        with self._outbox():
            try:
                with open(self.outbox_path) as fh:
                    waiting = [json.loads(line) for line in fh if line.strip()]
            except FileNotFoundError:
                return 0
            if not waiting:
                return 0
            sent = 0
            try:
                for body in waiting:
                    snapshot = body.pop("snapshot", None)
                    if snapshot is not None and write_snapshot is not None:
                        write_snapshot(snapshot)
                    self.append(body)
                    sent += 1
            except ClusterDown:
                if sent < len(waiting) and snapshot is not None:
                    waiting[sent]["snapshot"] = snapshot
            rest = waiting[sent:]
            fd = os.open(self.outbox_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.writelines(json.dumps(b) + "\n" for b in rest)
            os.replace(self.outbox_path + ".tmp", self.outbox_path)
            if sent:
                logs.event("cluster_outbox_sent", entries=sent, left=len(rest))
            return sent


class ClusterPurger:
    """The node's Purger, with every purge published to the other nodes and waited for."""

    def __init__(self, local, log, wait):
        self.local = local
        self.log = log
        self.wait = wait

    def run(self, req):
        result = dict(self.local.run(req))
        body = purge_body(req)
        try:
            seq = self.log.append(body)
        except ClusterDown:
            seq = None
        try:
            nodes = self.log.wait_applied(seq, self.wait) if seq is not None else None
        except ClusterDown:
            nodes = None  # published: the others apply it; only the waiting failed
        if nodes is None:
            if seq is None:
                self.log.keep(body)  # sent by the follower when Redis is back (once: see append)
            nodes = {node: "pending" for node in self.log.known}
            nodes[self.log.node_id] = "done"
            result.update(nodes=nodes, status="scheduled")
            return result
        result["nodes"] = nodes
        result["status"] = "done" if all(v == "done" for v in nodes.values()) else "scheduled"
        return result
