"""Messages between nodes in Redis: one stream per incarnation, ``{prefix:inbox:{incarnation}}``
(a slot of its own: on a Redis Cluster the blocking read goes to its primary).

``send`` is one pipeline of ``XADD`` (field ``m`` the header; ``b`` the body
when it is small, else ``k`` the key of the body and ``n`` its size), each
inbox and body expiring unread after the message TTL. Bodies never travel
through pub/sub: Redis cuts a subscriber whose buffer passes 32 MB.

``receive`` blocks in ``XREAD`` on the reader's own connection, from the last
entry this transport read for the node (from the start at first: what was
sent before the reader began is still for it). The entries one read returned
are deleted (``XDEL``) in one pipeline with the next read, ahead of it: by then
the requests they woke have answered (``Courier``), and the deletion costs no
round trip and no write of its own (a deletion that failed is sent again by an
idle read). A stream made anew (the store lost its data, or failed over to a
replica whose clock is behind) may number its entries below the last one read;
an idle read therefore checks for entries at or below it that this transport
did not read, and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from typing import Any

from ..backend import (
    BackendError,
    Body,
    Delivery,
    Envelope,
    InlineBody,
    StoreLimits,
    Transport,
)
from .connection import REDIS_FAILURES, Store
from .keys import Keys

#: bodies up to this size travel inside the stream entry
INLINE_BODY_BYTES = 64 * 1024
#: entries an inbox keeps at most (read entries are deleted at once anyway)
INBOX_MAX_ENTRIES = 100_000
READ_BATCH = 500
#: how much longer than its block time a blocking read may take before its connection
#: counts as lost
READ_DEADLINE_EXTRA_SECONDS = 2.0
START = "0-0"


class StoredBody(Body):
    """A body in a key of its own, read and deleted when the receiver has room for it."""

    def __init__(self, store: Store, key: bytes, size: int) -> None:
        self._store = store
        self._key: bytes | None = key
        self.size = size

    async def read(self) -> bytes | None:
        key, self._key = self._key, None
        if key is None:
            return None
        try:
            with self._store.guard():
                pipe = self._store.pipeline()
                pipe.get(key)
                pipe.delete(key)
                data, _ = await self._store.run(pipe)
        except BackendError:
            return None
        return data if isinstance(data, bytes) else None


class RedisTransport(Transport):
    def __init__(self, store: Store, keys: Keys, limits: StoreLimits) -> None:
        self._store = store
        self._keys = keys
        self._ttl_ms = max(1, int(limits.message_ttl_seconds * 1000))
        self._block_ms = max(1, int(limits.receive_wait_seconds * 1000))
        self._read_deadline = limits.receive_wait_seconds + READ_DEADLINE_EXTRA_SECONDS
        #: per node: the last entry id read
        self._last_ids: dict[str, str] = {}
        #: per node: entries read whose deletion is not confirmed yet
        self._undeleted: dict[str, set[bytes]] = {}
        #: per node: entries the last read returned, deleted with the next read
        self._to_delete: dict[str, list[bytes]] = {}
        self._deletions: set[asyncio.Task[None]] = set()

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        with self._store.guard():
            pipe = self._store.pipeline()
            for envelope in envelopes:
                fields: dict[bytes, bytes] = {b"m": envelope.header}
                body = envelope.body
                if body is not None:
                    if len(body) <= INLINE_BODY_BYTES:
                        fields[b"b"] = body
                    else:
                        key = self._keys.body(secrets.token_hex(12))
                        pipe.set(key, body, px=self._ttl_ms)
                        fields[b"k"] = key.encode()
                        fields[b"n"] = b"%d" % len(body)
                inbox = self._keys.inbox(envelope.to)
                pipe.xadd(inbox, fields, maxlen=INBOX_MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
                pipe.pexpire(inbox, self._ttl_ms)
            await self._store.run(pipe)

    async def receive(self, node: str) -> list[Delivery]:
        inbox = self._keys.inbox(node)
        last_id = self._last_ids.get(node, START)
        read_before = self._to_delete.pop(node, [])
        with self._store.guard():
            try:
                async with asyncio.timeout(self._read_deadline):
                    answer = await self._delete_and_read(inbox, last_id, read_before)
            except TimeoutError:
                raise BackendError("TimeoutError: the inbox read did not return") from None
        # Deleted (had the pipeline failed, they would stay undeleted, for an idle read).
        self._undeleted.get(node, set()).difference_update(read_before)
        if not answer:
            await self._check_renumbered(node, inbox, last_id)
            return []
        entries: list[tuple[bytes, dict[bytes, bytes]]] = answer[0][1]
        entry_ids = [entry_id for entry_id, _ in entries]
        self._last_ids[node] = entry_ids[-1].decode()
        self._undeleted.setdefault(node, set()).update(entry_ids)
        self._to_delete[node] = entry_ids
        deliveries = (self._delivery(fields) for _, fields in entries)
        return [delivery for delivery in deliveries if delivery is not None]

    async def _delete_and_read(self, inbox: str, last_id: str, read_before: list[bytes]) -> Any:
        """``XDEL`` of ``read_before`` (if any) and the blocking ``XREAD``, in one pipeline:
        the read's answer. If either fails, nothing read is taken (the next read asks for
        the same entries again)."""
        reader = self._store.reader
        if not read_before:
            self._store.commands_sent += 1
            return await reader.xread({inbox: last_id}, count=READ_BATCH, block=self._block_ms)
        pipe = self._store.pipeline(reader)
        pipe.xdel(inbox, *read_before)
        pipe.xread({inbox: last_id}, count=READ_BATCH, block=self._block_ms)
        _, answer = await self._store.run(pipe)
        return answer

    def _delivery(self, fields: dict[bytes, bytes]) -> Delivery | None:
        header = fields.get(b"m")
        if header is None:
            return None
        data = fields.get(b"b")
        key = fields.get(b"k")
        if data is not None:
            return Delivery(header, InlineBody(data))
        if key is not None:
            size = fields.get(b"n", b"0")
            return Delivery(
                header, StoredBody(self._store, key, int(size) if size.isdigit() else 0)
            )
        return Delivery(header)

    async def _check_renumbered(self, node: str, inbox: str, last_id: str) -> None:
        """Start over if the inbox holds an entry at or below ``last_id`` that was not read
        here (its stream was made anew); delete again those read here whose deletion failed."""
        if last_id == START:
            return
        with self._store.guard():
            self._store.commands_sent += 1
            first = await self._store.shared.xrange(inbox, "-", last_id, count=1)
        undeleted = self._undeleted.get(node, set())
        if not first:
            if not any(not task.done() for task in self._deletions):
                undeleted.clear()  # what was read and not deleted is gone anyway
            return
        if first[0][0] in undeleted:
            if not any(not task.done() for task in self._deletions):
                self._spawn_delete(node, inbox, sorted(undeleted))
            return
        self._last_ids[node] = START
        undeleted.clear()

    def _spawn_delete(self, node: str, inbox: str, entry_ids: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(self._delete(node, inbox, entry_ids))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _delete(self, node: str, inbox: str, entry_ids: list[bytes]) -> None:
        with contextlib.suppress(*REDIS_FAILURES):
            self._store.commands_sent += 1
            await self._store.shared.xdel(inbox, *entry_ids)
            self._undeleted.get(node, set()).difference_update(entry_ids)

    async def close(self) -> None:
        """Cancel the deletions still running and wait for them to end."""
        tasks = list(self._deletions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
