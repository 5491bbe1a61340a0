"""Cluster mode (contract section 12): many nodes, one Redis, each node with its own cache.

- link: the Redis connection, with short timeouts; Redis down is ClusterDown, never a hang.
- log: the replicated log (a Redis Stream with gap-free sequence numbers) and what a
  purge publishes and waits for.
- follower: the one worker per node that applies the log to the node's cache, replays
  what it missed, and says when the node is ready.
"""
