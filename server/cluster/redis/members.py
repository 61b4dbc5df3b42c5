"""Heartbeats and the store's epoch in Redis.

A node's beat writes ``{prefix}:node:{incarnation}`` (expiring after the node
timeout) and its score (epoch ms) in ``{prefix}:nodes``, and reads back those
that beat within half the timeout: a node that stops beating is seen dead
within three quarters of the timeout when it beats four times per timeout.

The epoch is a random token, set only if absent and then read, in the same
pipeline as the beat: a store that lost its data (a restart, a failover, a
FLUSHALL) gets a new one from the first node that beats, and every other node
reads that one. It lives while nodes beat; the same holds for the beats' set.

The local wall clock stamps beats (all nodes compare them with their own).
"""

from __future__ import annotations

import secrets
import time

from ..backend import Beat, Members, StoreLimits
from .connection import Store, execute
from .keys import Keys

#: the beats' set and the epoch outlive the last beat by this many node timeouts
KEEP_TIMEOUTS = 10
KEEP_AT_LEAST_MS = 60_000


class RedisMembers(Members):
    def __init__(self, store: Store, keys: Keys, limits: StoreLimits) -> None:
        self._store = store
        self._keys = keys
        self._timeout_ms = max(1, int(limits.node_timeout_seconds * 1000))
        self._keep_ms = max(self._timeout_ms * KEEP_TIMEOUTS, KEEP_AT_LEAST_MS)

    async def beat(self, node: str) -> Beat:
        now_ms = int(time.time() * 1000)
        with self._store.guard():
            pipe = self._store.beat.pipeline(transaction=False)
            pipe.set(self._keys.node(node), now_ms, px=self._timeout_ms)
            pipe.zadd(self._keys.nodes, {node: now_ms})
            pipe.pexpire(self._keys.nodes, self._keep_ms)
            pipe.zremrangebyscore(self._keys.nodes, "-inf", now_ms - self._keep_ms)
            pipe.zrangebyscore(self._keys.nodes, now_ms - self._timeout_ms // 2, "+inf")
            pipe.set(self._keys.epoch, secrets.token_hex(16), nx=True, px=self._keep_ms)
            pipe.pexpire(self._keys.epoch, self._keep_ms)
            pipe.get(self._keys.epoch)
            results = await execute(pipe)
        alive = frozenset(name.decode() for name in results[4]) | {node}
        epoch: bytes = results[7]
        return Beat(alive, epoch.decode())

    async def is_alive(self, node: str) -> bool:
        if not node:
            return False
        with self._store.guard():
            last_beat = await self._store.shared.zscore(self._keys.nodes, node)
        return last_beat is not None and last_beat >= time.time() * 1000 - self._timeout_ms / 2

    async def leave(self, node: str) -> None:
        with self._store.guard():
            pipe = self._store.shared.pipeline(transaction=False)
            pipe.delete(self._keys.node(node))
            pipe.zrem(self._keys.nodes, node)
            await execute(pipe)
