"""Which nodes are alive: each node's heartbeat, and the death of those that stop beating.

A node writes ``{prefix}:node:{name}`` (expiring after ``NODE_TIMEOUT_SECONDS``)
and its score in ``{prefix}:nodes`` (last heartbeat, epoch ms) four times per
timeout, and reads back the nodes that beat within half the timeout. A node
that stops beating is thus seen dead within three quarters of the timeout;
a node that stops gracefully removes itself at once.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from .bus import Bus, execute

logger = logging.getLogger("camrelay.cluster")


class Membership:
    def __init__(self, bus: Bus, node_timeout_seconds: float) -> None:
        self._bus = bus
        self.timeout = node_timeout_seconds
        self.interval = node_timeout_seconds / 4
        self._nodes_key = bus.key("nodes")
        self._node_key = bus.key("node", bus.node)
        #: nodes seen alive at the last heartbeat (this node always counts)
        self.alive: frozenset[str] = frozenset({bus.node})

    def is_alive(self, node: str) -> bool:
        return node == self._bus.node or node in self.alive

    async def confirm_alive(self, node: str) -> bool:
        """``is_alive``, asking Redis about a node not alive at the last heartbeat (it may
        have joined since)."""
        if not node:
            return False
        if self.is_alive(node):
            return True
        try:
            last_beat = await self._bus.redis.zscore(self._nodes_key, node)
        except (RedisError, OSError) as error:
            self._bus.failed(error)
            return False
        alive = last_beat is not None and last_beat >= time.time() * 1000 - self.timeout * 500
        if alive:
            self.alive = self.alive | {node}
        return alive

    async def beat(self) -> bool:
        """One heartbeat; refreshes ``alive``. False (logged once) if Redis is down."""
        now_ms = int(time.time() * 1000)
        timeout_ms = int(self.timeout * 1000)
        pipe = self._bus.beat_redis.pipeline(transaction=False)
        pipe.set(self._node_key, now_ms, px=timeout_ms)
        pipe.zadd(self._nodes_key, {self._bus.node: now_ms})
        pipe.pexpire(self._nodes_key, max(timeout_ms * 10, 60_000))
        # Nodes gone for long are dropped from the set; the rest are read back.
        pipe.zremrangebyscore(self._nodes_key, "-inf", now_ms - timeout_ms * 10)
        pipe.zrangebyscore(self._nodes_key, now_ms - timeout_ms // 2, "+inf")
        pipe.pexpire(self._bus.inbox(self._bus.node), self._bus.key_ttl_ms)
        try:
            results = await execute(pipe)
        except (RedisError, OSError) as error:
            self._bus.failed(error)
            return False
        self._bus.succeeded()
        alive = frozenset(name.decode() for name in results[4]) | {self._bus.node}
        for node in self.alive - alive:
            logger.warning("node %s stopped beating: taking over its cameras' callers", node)
        self.alive = alive
        return True

    async def leave(self) -> None:
        """A graceful stop: the other nodes see this one gone at their next heartbeat."""
        try:
            pipe = self._bus.redis.pipeline(transaction=False)
            pipe.delete(self._node_key)
            pipe.zrem(self._nodes_key, self._bus.node)
            await execute(pipe)
        except (RedisError, OSError) as error:
            self._bus.failed(error)
