"""One worker per node applies the log to the node's cache, in order, and says when it is ready.

The worker that holds `state_dir/cluster-follower.lock` (an flock, released if
it dies) is the node's follower; the others try again every few seconds. It:

1. catches up before the node is ready: from its saved position (the epoch of
   the Redis it followed, the last stream id and sequence applied), it replays
   every later entry. When it cannot (no saved position, the stream no longer
   holds the next entry, or Redis is not the same Redis: another epoch) it drops
   the node's whole cache instead, then starts from the end of the stream;
2. then reads new entries as they come (XREAD BLOCK), applies each one, saves
   its position and records the sequence in `shield:applied`;
3. every loop sends its heartbeat (`shield:nodes`) and the outbox of purges
   made while Redis was away.

Readiness is the file `state_dir/cluster-ready`, holding the gunicorn master's
pid: every worker of this run of the node answers /health/ready from it.
"""

import fcntl
import json
import os
import time

from .. import logs
from ..cache.purge import PurgeRequest
from .link import ClusterDown
from .log import APPLIED, LIVE_FOR, NODES, STREAM

BLOCK = 1.0  # seconds an XREAD waits for new entries
RETRY = 0.5  # seconds between attempts while Redis is away
BATCH = 200


def ready_path(state_dir):
    return os.path.join(state_dir, "cluster-ready")


def ready_epoch(state_dir):
    """The epoch of the Redis this run of the node (this gunicorn master) has caught up with, or None."""
    try:
        with open(ready_path(state_dir)) as fh:
            run, _, epoch = fh.read().strip().partition(" ")
    except OSError:
        return None
    return epoch if run == str(_run_id()) else None


def is_ready(state_dir):
    return ready_epoch(state_dir) is not None


def _run_id():
    # gunicorn's workers share their master: the follower and every worker that asks
    # have the same parent. (Without gunicorn the follower runs in the asking process.)
    return os.getppid()


class Follower:
    def __init__(self, settings, store, purger, log, apply=None, resync=None):
        self.state_dir = settings.state_dir
        self.apply_other = apply  # entries that are not purges (projects, keys): True when handled
        self.resync = resync
        self.store = store
        self.purger = purger  # the node's local Purger
        self.log = log
        self.link = log.link
        self.position_path = os.path.join(self.state_dir, "cluster-position.json")
        self._lock_fd = None
        self.position = None  # {"epoch", "id", "seq"}
        self.caught_up = False

    # -- who follows

    def try_lead(self):
        """Take the node's follower lock; True when this process holds it."""
        if self._lock_fd is not None:
            return True
        os.makedirs(self.state_dir, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, "cluster-follower.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    # -- the loop

    def run_forever(self, sleep=time.sleep):
        while True:
            try:
                if not self.caught_up:
                    self.catch_up()
                self.step()
            except ClusterDown:
                sleep(RETRY)
            except Exception:  # noqa: BLE001 - the follower must outlive any one bad entry
                logs.logger.exception("cluster_follower_failed")
                sleep(RETRY)

    def catch_up(self):
        epoch = self.link.epoch()
        saved = self._load_position()
        if saved is None or saved.get("epoch") != epoch:
            self._drop_cache(epoch, "no position" if saved is None else "another Redis")
        else:
            self.position = saved
            while self._apply_batch(replaying=True):
                pass
        self._heartbeat()
        with open(ready_path(self.state_dir) + ".tmp", "w") as fh:
            fh.write(f"{_run_id()} {epoch}")
        os.replace(ready_path(self.state_dir) + ".tmp", ready_path(self.state_dir))
        self.caught_up = True
        logs.event("cluster_ready", node=self.log.node_id, seq=self.position["seq"])

    def step(self):
        if self.link.epoch() != self.position["epoch"]:
            # Redis was replaced (or emptied) under us: nothing it says continues our log.
            self._unready()
            return
        self._heartbeat()
        self.log.flush_outbox()
        self._apply_batch(block=True)

    def _unready(self):
        try:
            os.unlink(ready_path(self.state_dir))
        except FileNotFoundError:
            pass
        self.caught_up = False

    # -- entries

    def _apply_batch(self, replaying=False, block=False):
        """Apply the entries after our position: True when there may be more."""
        last_id = self.position["id"]
        if block:
            found = self.link.call(
                lambda r: r.xread({STREAM: last_id}, count=BATCH, block=int(BLOCK * 1000)), blocking_for=BLOCK
            )
            entries = found[0][1] if found else []
        else:
            entries = self.link.call(lambda r: r.xrange(STREAM, min="(" + last_id, count=BATCH))
        if not entries and replaying and self.position["seq"] < self._last_seq():
            # The stream was trimmed past the next entry we need: what we hold cannot be trusted.
            self._drop_cache(self.position["epoch"], "log trimmed past this node")
            return False
        for entry_id, fields in entries:
            seq = int(fields["seq"])
            if seq != self.position["seq"] + 1:
                self._drop_cache(self.position["epoch"], f"log gap: {self.position['seq']} then {seq}")
                return False
            if fields.get("node") != self.log.node_id:
                self._apply(json.loads(fields["body"]))
            self.position = {"epoch": self.position["epoch"], "id": entry_id, "seq": seq}
        if entries:
            self._save_position()
            seq = self.position["seq"]
            self.link.call(lambda r: r.hset(APPLIED, self.log.node_id, seq))
        return len(entries) == BATCH

    def _apply(self, body):
        if body.get("kind") != "purge":
            if self.apply_other is not None:
                self.apply_other(body)
            return
        req = PurgeRequest(
            tags=tuple(body["tags"]),
            paths=tuple(tuple(p) for p in body["paths"]),
            prefixes=tuple(tuple(p) for p in body["prefixes"]),
            everything=body["everything"],
            ids=tuple(body["ids"]),
            within=body.get("within"),
        )
        self.purger.run(req)

    def _last_seq(self):
        return int(self.link.call(lambda r: r.get("shield:seq")) or 0)

    def _drop_cache(self, epoch, why):
        """Forget everything cached on this node, then follow from the end of the log."""
        self._unready()
        dropped = self.store.drop_all()
        last = self.link.call(lambda r: r.xrevrange(STREAM, count=1))
        self.position = {
            "epoch": epoch,
            "id": last[0][0] if last else "0-0",
            # An empty stream may have been trimmed: the next entry is the counter's next.
            "seq": int(last[0][1]["seq"]) if last else self._last_seq(),
        }
        self._save_position()
        seq = self.position["seq"]
        self.link.call(lambda r: r.hset(APPLIED, self.log.node_id, seq))
        logs.event("cluster_cache_dropped", node=self.log.node_id, why=why, entries=dropped)
        if self.resync is not None:
            self.resync()  # projects and keys: what Redis holds, seeded with ours where it has none

    def _heartbeat(self):
        self.link.call(lambda r: r.zadd(NODES, {self.log.node_id: time.time()}))
        old = list(self.log._known)
        now = time.time()
        live = self.link.call(lambda r: r.zrangebyscore(NODES, now - LIVE_FOR, "+inf"))
        self.log.remember_nodes(live, force=not os.path.exists(self.log.known_path))
        if live != old:
            logs.event("cluster_nodes", node=self.log.node_id, live=live)

    # -- the position, kept across restarts

    def _load_position(self):
        try:
            with open(self.position_path) as fh:
                found = json.load(fh)
            return found if {"epoch", "id", "seq"} <= set(found) else None
        except (OSError, ValueError):
            return None

    def _save_position(self):
        tmp = self.position_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.position, fh)
        os.replace(tmp, self.position_path)
