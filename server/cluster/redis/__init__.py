"""The cluster's shared store on Redis: ``RedisBackend`` (``RedisBackend.from_url``).

One concept per module: ``keys`` (every key name under the prefix),
``connection`` (the pools, of one Redis or of a Redis Cluster, and how a failure
becomes a one-line ``BackendError``),
``directory`` (homes, claims, status, parked work), ``members`` (heartbeats
and the epoch), ``transport`` (inboxes and bodies). Every key has a TTL.
"""

from __future__ import annotations

from ..backend import Backend, StoreLimits
from .connection import Store
from .directory import RedisDirectory
from .keys import Keys
from .members import RedisMembers
from .transport import RedisTransport

__all__ = ["RedisBackend"]


class RedisBackend(Backend):
    """One node's connections to Redis, behind ``Directory``, ``Members`` and ``Transport``."""

    directory: RedisDirectory
    members: RedisMembers
    transport: RedisTransport

    def __init__(self, store: Store, prefix: str, limits: StoreLimits) -> None:
        keys = Keys(prefix)
        self._store = store
        self._prefix = prefix
        self.directory = RedisDirectory(store, keys, limits)
        self.members = RedisMembers(store, keys, limits)
        self.transport = RedisTransport(store, keys, limits)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, limits: StoreLimits, *, cluster: bool = False
    ) -> RedisBackend:
        """Connect lazily (no round trip here); raises ``BackendError`` for a bad URL,
        without the URL's password. ``cluster``: ``url`` names a node of a Redis Cluster."""
        return cls(Store(url, cluster=cluster), prefix, limits)

    @property
    def commands_sent(self) -> int:
        """Commands this node sent to Redis (a script call counts one)."""
        return self._store.commands_sent

    @property
    def closed(self) -> bool:
        return self._store.closed

    async def close(self) -> None:
        if self._store.closed:
            return
        self._store.closed = True
        await self.transport.close()
        await self._store.close()

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        state = "closed" if self._store.closed else "open"
        return f"<RedisBackend prefix={self._prefix!r} {state}>"
