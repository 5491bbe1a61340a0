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
import logging
import os
import secrets
import time

from .. import logs
from ..cache.purge import PurgeRequest
from .link import ClusterDown
from .log import APPLIED, NODES, STREAM

BLOCK = 1.0  # seconds an XREAD waits for new entries
READY_WITHOUT_REDIS = 30.0  # seconds after start a node with a saved position serves without Redis
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


RUN_ENV = "SHIELD_RUN_ID"


def _run_id():
    """This run of the node: a random token the gunicorn master makes at start (gunicorn.conf.py)
    and every worker inherits; without gunicorn, this process's own. Never a pid, which a
    restarted container's master would share with the last run."""
    token = os.environ.get(RUN_ENV)
    if not token:
        token = os.environ[RUN_ENV] = secrets.token_hex(8)
    return token


class Follower:
    def __init__(self, settings, store, purger, log, apply=None, resync=None, write_snapshot=None):
        self.state_dir = settings.state_dir
        self.write_snapshot = write_snapshot
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
        self.started = time.monotonic()

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
                self._ready_without_redis()
                sleep(RETRY)
            except Exception:  # noqa: BLE001 - the follower must outlive any one bad entry
                logs.logger.exception("cluster_follower_failed")
                sleep(RETRY)

    def _ready_without_redis(self):
        """Redis has been away since this node started: after READY_WITHOUT_REDIS, with a saved
        position, serve from the cache as it is (the whole fleet may be restarting during a Redis
        outage); the replay still runs as soon as Redis answers."""
        if self.caught_up or is_ready(self.state_dir):
            return
        if time.monotonic() - self.started < READY_WITHOUT_REDIS or self._load_position() is None:
            return
        self._mark_ready(self._load_position()["epoch"])
        logs.event("cluster_ready_without_redis", logging.WARNING, node=self.log.node_id)

    def _mark_ready(self, epoch):
        with open(ready_path(self.state_dir) + ".tmp", "w") as fh:
            fh.write(f"{_run_id()} {epoch}")
        os.replace(ready_path(self.state_dir) + ".tmp", ready_path(self.state_dir))

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
        self._mark_ready(epoch)
        self.caught_up = True
        logs.event("cluster_ready", node=self.log.node_id, seq=self.position["seq"])

    def step(self):
        if self.link.epoch() != self.position["epoch"]:
            # Redis was replaced (or emptied) under us: nothing it says continues our log.
            self._unready()
            return
        self._heartbeat()
        self.log.flush_outbox(self.write_snapshot)
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
        failed_before = self.store.upkeep.write_failed_at
        if body.get("kind") != "purge":
            if self.apply_other is not None:
                self.apply_other(body)
            return
        self._purge(body)
        if self.store.upkeep.write_failed_at != failed_before:
            # The cache refused the purge (locked, full): not applied, so not recorded; tried again.
            raise RuntimeError("the cache could not apply a purge from the log")

    def _purge(self, body):
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
        """Forget everything cached on this node, then follow from the end of the log.

        The end is read before the cache is dropped (an entry published meanwhile is
        replayed, not skipped), and the new position is saved only once projects and keys
        are resynced too: a failure on the way means the whole drop runs again.
        """
        self._unready()
        last = self.link.call(lambda r: r.xrevrange(STREAM, count=1))
        last_seq = self._last_seq()
        dropped = self.store.drop_all()
        if self.resync is not None:
            self.resync()  # projects and keys: what Redis holds, seeded with ours where it has none
        self.position = {
            "epoch": epoch,
            "id": last[0][0] if last else "0-0",
            # An empty stream may have been trimmed: the next entry is the counter's next.
            "seq": int(last[0][1]["seq"]) if last else last_seq,
        }
        self._save_position()
        seq = self.position["seq"]
        self.link.call(lambda r: r.hset(APPLIED, self.log.node_id, seq))
        logs.event("cluster_cache_dropped", node=self.log.node_id, why=why, entries=dropped)

    def _heartbeat(self):
        self.link.call(lambda r: r.zadd(NODES, {self.log.node_id: time.time()}))
        if self.log.share_nodes():
            logs.event("cluster_nodes", node=self.log.node_id, live=self.log.known)

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
