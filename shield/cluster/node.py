"""A node of the cluster: its link to Redis, its log, its follower, started once per worker."""

import threading
import time

from .follower import Follower, is_ready
from .link import Link, node_id_of
from .log import ClusterPurger, Log

LEAD_EVERY = 2.0  # seconds between a worker's tries to become the node's follower


class Node:
    def __init__(self, settings, services):
        self.settings = settings
        self.node_id = node_id_of(settings)
        self.link = Link(settings.redis_url)
        self.log = Log(self.link, self.node_id, settings.state_dir)
        self.local_purger = services.purger
        self.purger = ClusterPurger(self.local_purger, self.log, settings.cluster_purge_wait)
        self.follower = Follower(settings, services.store, self.local_purger, self.log)

    def ready(self):
        return is_ready(self.settings.state_dir)

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
