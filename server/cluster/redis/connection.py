"""The node's connections to Redis, and how a Redis failure becomes a ``BackendError``.

With ``cluster`` (``REDIS_CLUSTER=1``) each of the three is a ``RedisCluster`` client
with a pool per primary, which routes every command to the primary of its key's slot
(and follows a failover's redirections); else a plain client of one Redis.

Three pools: the commands share eight connections; the inbox reader blocks in
``XREAD`` on a connection of its own (no socket timeout: the read itself waits
up to a second); the heartbeat has its own too, so that a burst queued for the
shared pool cannot delay it past the node timeout (the others would think the
node dead). No retries on the shared pools (the callers decide: 503 or try
again later); the heartbeat retries once, as its connection is stale after a
Redis restart and is made again.

A failure's message is one line that quotes no payload and no password:
redis-py names a failed pipeline command with its arguments ("Command # N
(XADD key ... <body> ...) of pipeline caused error: <server message>"), and a
server's "unknown command" echoes arguments; both are cut away.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ..backend import BackendError

#: connections the node's commands share (the reader and the heartbeat have their own)
SHARED_CONNECTIONS = 8
SOCKET_TIMEOUT_SECONDS = 2.0
SOCKET_CONNECT_TIMEOUT_SECONDS = 1.0
#: how long a command waits for a free connection of its pool
POOL_WAIT_SECONDS = 1.0
#: connections per primary of a Redis Cluster (its client opens them as needed and
#: refuses more rather than waiting)
CLUSTER_SHARED_CONNECTIONS = 64
#: the longest error message
MESSAGE_CHARS = 200
#: what a Redis or its socket failing raises (a Redis Cluster client's own, such as no
#: reachable node or cluster mode off on the node named, is not a ``RedisError``)
REDIS_FAILURES = (RedisError, RedisClusterException, OSError)

_PIPELINE_MARKER = " of pipeline caused error: "
_ECHOED_ARGUMENTS = ", with args beginning with"


def one_line(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """``Type: server message``: the first line, without the command's arguments or a secret."""
    text = str(error)
    _, marker, server_message = text.rpartition(_PIPELINE_MARKER)
    if marker:
        text = server_message
    lines = text.strip().splitlines()
    text = lines[0].strip() if lines else ""
    text = text.split(_ECHOED_ARGUMENTS, 1)[0]
    for secret in secrets:
        text = text.replace(secret, "***")
    name = type(error).__name__
    return (f"{name}: {text}" if text else name)[:MESSAGE_CHARS]


def url_secrets(url: str) -> tuple[str, ...]:
    """The password a Redis URL carries (as written and decoded), to be kept out of messages."""
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return ()
    secrets = {form for value in found if value for form in (value, unquote(value), quote(value))}
    return tuple(sorted(secrets, key=len, reverse=True))


Client = Redis | RedisCluster
AnyPipeline = Pipeline | ClusterPipeline


class Store:
    """The three connections of one node, open until ``close``; ``guard`` every use."""

    def __init__(self, url: str, *, cluster: bool = False) -> None:
        self._secrets = url_secrets(url)
        self.closed = False
        self.cluster = cluster
        #: commands sent to Redis (a script call counts one), for the benchmarks
        self.commands_sent = 0
        self.shared: Client
        self.reader: Client
        self.beat: Client
        with self.guard():
            if cluster:
                self.shared = self._cluster(url, CLUSTER_SHARED_CONNECTIONS)
                self.reader = self._cluster(url, 2, socket_timeout=None)
                self.beat = self._cluster(url, 2)
            else:
                self.shared = Redis(connection_pool=self._pool(url, SHARED_CONNECTIONS))
                self.reader = Redis(connection_pool=self._pool(url, 1, socket_timeout=None))
                self.beat = Redis(connection_pool=self._pool(url, 1, retries=1))

    @staticmethod
    def _pool(
        url: str,
        size: int,
        *,
        socket_timeout: float | None = SOCKET_TIMEOUT_SECONDS,
        retries: int = 0,
    ) -> BlockingConnectionPool:
        return BlockingConnectionPool.from_url(
            url,
            max_connections=size,
            timeout=POOL_WAIT_SECONDS,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries),
            health_check_interval=0,
        )

    @staticmethod
    def _cluster(
        url: str, size: int, *, socket_timeout: float | None = SOCKET_TIMEOUT_SECONDS
    ) -> RedisCluster:
        # One retry: a command that meets a failed-over primary goes again to the new
        # one once the client re-read the cluster's slots.
        return RedisCluster.from_url(
            url,
            max_connections=size,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
            require_full_coverage=False,
        )

    def pipeline(self, client: Client | None = None) -> AnyPipeline:
        return (self.shared if client is None else client).pipeline(transaction=False)

    def error(self, error: BaseException) -> BackendError:
        return BackendError(one_line(error, self._secrets))

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Fail at once when closed; turn a Redis or socket failure into ``BackendError``
        (without its cause attached: the cause's text may quote a payload)."""
        if self.closed:
            raise BackendError("the Redis backend is closed")
        try:
            yield
        except (*REDIS_FAILURES, ValueError) as error:
            raise self.error(error) from None

    async def close(self) -> None:
        self.closed = True
        for client in (self.shared, self.reader, self.beat):
            with contextlib.suppress(*REDIS_FAILURES):
                await client.aclose()
            if isinstance(client, Redis):
                with contextlib.suppress(*REDIS_FAILURES):
                    await client.connection_pool.disconnect()

    async def run(self, pipe: AnyPipeline) -> list[Any]:
        """Run a pipeline (counted) and give its connection back, even when Redis failed."""
        self.commands_sent += len(pipe)
        return await execute(pipe)

    async def scripts(self, calls: Sequence[ScriptCall], client: Client | None = None) -> list[Any]:
        """Run script calls in one pipeline of ``EVALSHA``; the calls a primary answers
        NOSCRIPT (it restarted, or failed over) load their scripts (on every primary)
        and go again, alone: nothing else of the pipeline runs twice."""
        if not calls:
            return []
        client = self.shared if client is None else client
        pipe = self.pipeline(client)
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        self.commands_sent += len(calls)
        try:
            replies = await pipe.execute(raise_on_error=False)
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in {calls[i].script.sha: calls[i].script for i in missing}.values():
                self.commands_sent += 1
                await client.script_load(script.text)
            pipe = self.pipeline(client)
            for i in missing:
                call = calls[i]
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            self.commands_sent += len(missing)
            try:
                again = await pipe.execute(raise_on_error=False)
            finally:
                await pipe.reset()  # type: ignore[no-untyped-call]
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, called by its SHA1."""

    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: Script
    keys: Sequence[str | bytes]
    args: Sequence[str | bytes | int | float]


async def execute(pipe: AnyPipeline) -> list[Any]:
    """Run a pipeline and give its connection back, even when Redis failed."""
    try:
        return await pipe.execute()
    finally:
        await pipe.reset()  # type: ignore[no-untyped-call]
