"""The node's line to Redis: a sized connection pool, keys, and each node's inbox.

Every node reads its own inbox, a Redis stream ``{prefix}:inbox:{node}``, with
one blocking ``XREAD`` on one dedicated connection. Sending is ``XADD`` to the
addressee's inbox; messages posted in one loop turn go out in one pipeline.
A result body travels beside its header in the stream entry when small, else
as a key with a TTL that the message names (never through pub/sub: Redis
cuts a subscriber whose buffer passes 32 MB). Every key has a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .messages import Message, decode, encode

logger = logging.getLogger("camrelay.cluster")

#: bodies up to this size travel inside the stream entry
INLINE_BODY_BYTES = 64 * 1024
#: connections the node's commands share (the inbox reader has its own)
POOL_CONNECTIONS = 8
#: entries an inbox keeps at most (read entries are deleted at once anyway)
INBOX_MAX_ENTRIES = 100_000
READ_BATCH = 500
#: how long ``send`` waits for Redis to take a message
SEND_TIMEOUT_SECONDS = 2.0

Handler = Callable[[Message, "Body | None"], Awaitable[None]]


class Body:
    """A message's body: inside the stream entry, or a key read (and deleted) by ``read``,
    so that the receiver can make room for ``size`` bytes first."""

    __slots__ = ("_bus", "_data", "_key", "size")

    def __init__(self, bus: Bus, data: bytes | None, key: bytes | None, size: int) -> None:
        self._bus = bus
        self._data = data
        self._key = key
        #: its length (0 when a sender of the release before did not say)
        self.size = size

    async def read(self) -> bytes | None:
        """The bytes; ``None`` (logged) when the key expired or Redis failed."""
        if self._key is None:
            return self._data
        try:
            pipe = self._bus.redis.pipeline(transaction=False)
            pipe.get(self._key)
            pipe.delete(self._key)
            data, _ = await execute(pipe)
        except (RedisError, OSError) as error:
            self._bus.failed(error)
            return None
        if data is None:
            logger.warning("dropped a message whose body expired")
        return data  # type: ignore[no-any-return]


class RedisDown(Exception):
    """Redis could not be reached; the message is one line without secrets."""


@dataclass(slots=True)
class _Outgoing:
    node: str
    message: Message
    body: bytes | None
    done: asyncio.Future[None] | None


class Bus:
    def __init__(
        self,
        url: str,
        prefix: str,
        node: str,
        *,
        key_ttl_seconds: float,
        on_redis_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.prefix = prefix
        self.node = node
        self.key_ttl_ms = int(key_ttl_seconds * 1000)
        self._url = url
        self._on_redis_error = on_redis_error
        self.redis = Redis(connection_pool=self._pool(POOL_CONNECTIONS, socket_timeout=2.0))
        self._reader_redis = Redis(connection_pool=self._pool(1, socket_timeout=None))
        #: the heartbeat's own connection: requests queued for the shared pool in a
        #: burst must not delay it past the node timeout (the others would think it dead)
        #: (one retry: its connection is stale after a Redis restart, and made again)
        self.beat_redis = Redis(connection_pool=self._pool(1, socket_timeout=2.0, retries=1))
        self._outbox: list[_Outgoing] = []
        self._wake_writer = asyncio.Event()
        self._writing = False
        self._stopped = False
        self._deletions: set[asyncio.Task[None]] = set()
        #: ``flush`` calls waiting for the outbox to empty
        self._flushed: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: ``True`` after a command succeeded, ``False`` after one failed
        self.up = True
        self._last_warning = 0.0

    def _pool(
        self, size: int, *, socket_timeout: float | None, retries: int = 0
    ) -> BlockingConnectionPool:
        return BlockingConnectionPool.from_url(
            self._url,
            max_connections=size,
            timeout=1.0,  # waiting for a free connection
            socket_connect_timeout=1.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries),  # the callers decide: 503 or try again later
            health_check_interval=0,
        )

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def inbox(self, node: str) -> str:
        return self.key("inbox", node)

    # ------------------------------------------------------------------ health

    def succeeded(self) -> None:
        if not self.up:
            logger.warning("Redis is reachable again")
        self.up = True

    def failed(self, error: BaseException) -> None:
        """A Redis command failed: count it; warn in one line (at most once a second)."""
        self._on_redis_error()
        self.up = False
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            logger.warning("Redis unavailable: %s", _one_line(error))

    # ------------------------------------------------------------------ sending

    def post(self, node: str, message: Message, body: bytes | None = None) -> None:
        """Send without waiting (a failure is counted and logged)."""
        self._outbox.append(_Outgoing(node, message, body, None))
        self._wake_writer.set()

    async def send(self, node: str, message: Message, body: bytes | None = None) -> None:
        """Send and wait until Redis has it; raises ``RedisDown``."""
        done = asyncio.get_running_loop().create_future()
        self._outbox.append(_Outgoing(node, message, body, done))
        self._wake_writer.set()
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await done
        except TimeoutError:
            raise RedisDown("Redis did not take the message in time") from None

    async def _write_forever(self) -> None:
        while not self._stopped:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            batch, self._outbox = self._outbox, []
            self._writing = True
            try:
                error = await self._write(batch) if batch else None
            finally:
                self._writing = False
            for item in batch:
                if item.done is not None and not item.done.done():
                    if error is None:
                        item.done.set_result(None)
                    else:
                        item.done.set_exception(RedisDown(error))
            if not self._outbox:
                for marker in self._flushed:
                    if not marker.done():
                        marker.set_result(None)
                self._flushed.clear()

    async def _write(self, batch: list[_Outgoing]) -> str | None:
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for item in batch:
            message = _stamped(item.message, self.node, now_ms)
            fields: dict[bytes, bytes] = {b"m": encode(message)}
            if item.body is not None:
                if len(item.body) <= INLINE_BODY_BYTES:
                    fields[b"b"] = item.body
                else:
                    blob = self.key("blob", secrets.token_hex(12))
                    pipe.set(blob, item.body, px=self.key_ttl_ms)
                    fields[b"k"] = blob.encode()
                    fields[b"n"] = b"%d" % len(item.body)
            inbox = self.inbox(item.node)
            pipe.xadd(inbox, fields, maxlen=INBOX_MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
            pipe.pexpire(inbox, self.key_ttl_ms)
        try:
            await execute(pipe)
        except (RedisError, OSError) as error:
            self.failed(error)
            return _one_line(error)
        except Exception as error:  # a bug must not leave senders waiting for ever
            logger.exception("writing to Redis failed")
            return _one_line(error)
        self.succeeded()
        return None

    # ------------------------------------------------------------------ receiving

    async def _read_forever(self, handle: Handler) -> None:
        inbox = self.inbox(self.node)
        # From the start: what was sent before this reader began is still for this node.
        last_id = "0-0"
        while not self._stopped:
            try:
                answer: Any = await self._reader_redis.xread(
                    {inbox: last_id}, count=READ_BATCH, block=1000
                )
            except (RedisError, OSError) as error:
                self.failed(error)
                await asyncio.sleep(0.2)
                continue
            if not answer:
                continue
            entries: list[tuple[bytes, dict[bytes, bytes]]] = answer[0][1]
            last_id = entries[-1][0].decode()
            # Read entries are deleted in the background: the next read need not wait.
            self._spawn_delete(inbox, [entry_id for entry_id, _ in entries])
            for _, fields in entries:
                await self._dispatch(handle, fields)

    def _spawn_delete(self, inbox: str, entry_ids: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(self._delete(inbox, entry_ids))
        self._deletions.add(task)
        task.add_done_callback(self._deletions.discard)

    async def _delete(self, inbox: str, entry_ids: list[bytes]) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.xdel(inbox, *entry_ids)

    async def _dispatch(self, handle: Handler, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"m")
        message = None if raw is None else decode(raw)
        if message is None:
            return
        data = fields.get(b"b")
        blob = fields.get(b"k")
        body: Body | None = None
        if data is not None:
            body = Body(self, data, None, len(data))
        elif blob is not None:
            size = fields.get(b"n", b"0")
            body = Body(self, None, blob, int(size) if size.isdigit() else 0)
        try:
            await handle(message, body)
        except Exception:
            logger.exception("a cluster message could not be handled")

    # ------------------------------------------------------------------ lifecycle

    def start(self, handle: Handler) -> None:
        self._tasks = [
            asyncio.create_task(self._write_forever(), name=f"camrelay-bus-writer-{self.node}"),
            asyncio.create_task(
                self._read_forever(handle), name=f"camrelay-bus-reader-{self.node}"
            ),
        ]

    async def flush(self) -> None:
        """Wait (a second at most) until what was posted so far is written or failed."""
        if not (self._outbox or self._writing):
            return
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushed.append(marker)
        self._wake_writer.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await marker

    async def close(self) -> None:
        self._stopped = True
        tasks, self._tasks = [*self._tasks, *self._deletions], []
        for task in tasks:
            task.cancel()
        if tasks:
            # A read cancelled inside redis-py may surface as a connection error; the
            # loops then see ``_stopped`` and end.
            await asyncio.wait(tasks, timeout=2.0)
        await self.redis.aclose()
        await self._reader_redis.aclose()
        await self.beat_redis.aclose()
        await self.redis.connection_pool.disconnect()
        await self._reader_redis.connection_pool.disconnect()
        await self.beat_redis.connection_pool.disconnect()


async def execute(pipe: Pipeline) -> list[Any]:
    """Run a pipeline and give its connection back, even when Redis failed."""
    try:
        return await pipe.execute()
    finally:
        await pipe.reset()  # type: ignore[no-untyped-call]


def _stamped(message: Message, node: str, now_ms: int) -> Message:
    return dataclasses.replace(message, sender=node, sent_ms=now_ms)


def _one_line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]
