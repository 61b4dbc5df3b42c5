"""Heartbeats and the store's epoch in Redis.

A node's beat writes ``{prefix}:node:{incarnation}`` (expiring after the node
timeout) and its score (epoch ms) in ``{prefix}:nodes``, and reads back those
that beat within half the timeout: a node that stops beating is seen dead
within three quarters of the timeout when it beats four times per timeout.

The epoch is made of one random token per shard of the fleet (``{prefix:s:k}:epoch``,
in the shard's slot), each set only if absent and then read by a script: a shard
that lost its data (a restart, a failover, a FLUSHALL; on a Redis Cluster, of the
primary that holds it) gets a new one from the first node that beats, and every
other node reads that one. The epoch changes when any shard's token does. It
lives while nodes beat; the same holds for the beats' set.

The local wall clock stamps beats (all nodes compare them with their own).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

from ..backend import (
    BEATS_KEPT_AT_LEAST_SECONDS,
    BEATS_KEPT_TIMEOUTS,
    Beat,
    Members,
    StoreLimits,
)
from .connection import Script, ScriptCall, Store
from .keys import SHARDS, Keys

#: KEYS: a shard's epoch. ARGV: a new token, ttl ms. Returns the shard's token.
EPOCH = Script(
    """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[1])
"""
)


class RedisMembers(Members):
    def __init__(self, store: Store, keys: Keys, limits: StoreLimits) -> None:
        self._store = store
        self._keys = keys
        self._timeout_ms = max(1, int(limits.node_timeout_seconds * 1000))
        self._keep_ms = max(
            self._timeout_ms * BEATS_KEPT_TIMEOUTS, int(BEATS_KEPT_AT_LEAST_SECONDS * 1000)
        )

    async def beat(self, node: str, note: bytes = b"") -> Beat:
        now = time.time() * 1000
        now_ms = int(now)
        with self._store.guard():
            pipe = self._store.pipeline(self._store.beat)
            pipe.set(self._keys.node(node), note or str(now_ms), px=self._timeout_ms)
            pipe.zadd(self._keys.nodes, {node: now_ms})
            pipe.pexpire(self._keys.nodes, self._keep_ms)
            pipe.zremrangebyscore(self._keys.nodes, "-inf", now_ms - self._keep_ms)
            # Alive as ``is_alive`` says: beat within half the timeout of now (unrounded).
            pipe.zrangebyscore(self._keys.nodes, now - self._timeout_ms / 2, "+inf")
            results = await self._store.run(pipe)
            calls = [
                ScriptCall(EPOCH, [self._keys.epoch(k)], [secrets.token_hex(8), self._keep_ms])
                for k in range(SHARDS)
            ]
            tokens = await self._store.scripts(calls, self._store.beat)
        alive = frozenset(name.decode() for name in results[4]) | {node}
        epoch = hashlib.sha1(b":".join(tokens)).hexdigest()
        return Beat(alive, epoch)

    async def is_alive(self, node: str) -> bool:
        if not node:
            return False
        with self._store.guard():
            self._store.commands_sent += 1
            last_beat = await self._store.shared.zscore(self._keys.nodes, node)
        return last_beat is not None and last_beat >= time.time() * 1000 - self._timeout_ms / 2

    async def last_beat(self, node: str) -> float | None:
        if not node:
            return None
        with self._store.guard():
            self._store.commands_sent += 1
            last_beat = await self._store.shared.zscore(self._keys.nodes, node)
        return None if last_beat is None else last_beat / 1000

    async def notes(self, nodes: Sequence[str]) -> list[bytes | None]:
        if not nodes:
            return []
        with self._store.guard():
            self._store.commands_sent += 1
            found = await self._store.shared.mget([self._keys.node(node) for node in nodes])
        return [note.encode() if isinstance(note, str) else note for note in found]

    async def leave(self, node: str) -> None:
        with self._store.guard():
            pipe = self._store.pipeline()
            pipe.delete(self._keys.node(node))
            pipe.zrem(self._keys.nodes, node)
            await self._store.run(pipe)
