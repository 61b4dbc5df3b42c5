"""Shared fixtures: the app built with short test timeouts, and a client per test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server import Settings, create_app
from server.cluster import ClusterNode
from server.relay import CameraStatus, Relay, RelayService
from server.serve.runner import make_runner
from server.state import get_relay
from tools.redis_server import (
    LocalRedisCluster,
    RedisServer,
    RedisServerNotFound,
    find_redis_cli,
    find_redis_server,
)
from tools.redis_server import redis_cluster as start_redis_cluster
from tools.redis_server import redis_server as start_redis_server

#: Short, distinct timeouts so that tests finish fast and a mix-up shows.
TEST_SETTINGS = Settings(
    host="127.0.0.1",
    port=0,
    poll_hold_seconds=5.0,
    connect_timeout_seconds=1.0,
    response_timeout_seconds=1.5,
    shutdown_timeout_seconds=1.0,
)

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def settings_for(**overrides: Any) -> Settings:
    return dataclasses.replace(TEST_SETTINGS, **overrides)


def local_relay(service: RelayService) -> Relay:
    if isinstance(service, ClusterNode):
        return service.relay
    assert isinstance(service, Relay)
    return service


def relay_of(client: Client) -> Relay:
    assert isinstance(client.server, TestServer)
    return local_relay(get_relay(client.server.app))


def busy_cameras(relay: Relay) -> list[CameraStatus]:
    return [s for s in relay.cameras() if s.polling or s.waiting or s.in_flight]


def assert_relay_idle(relay: Relay) -> None:
    """No held polls, queued callers or unanswered commands anywhere (no leaks)."""
    assert busy_cameras(relay) == [], "relay state leaked"


async def wait_for_relay_idle(relay: Relay, timeout: float = 2.0) -> None:
    """Disconnects reach the server a loop turn or two after the client hangs up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while busy_cameras(relay):
                await asyncio.sleep(0.002)
    assert_relay_idle(relay)


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> AsyncIterator[MakeClient]:
    """Build a client for ``create_app(settings_for(**overrides))``; checks for leaks after."""
    clients: list[Client] = []

    async def make(**overrides: Any) -> Client:
        client = await aiohttp_client(create_app(settings_for(**overrides)))
        clients.append(client)
        return client

    yield make
    for client in clients:
        if not relay_of(client).closed:
            await wait_for_relay_idle(relay_of(client))


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


@dataclasses.dataclass(frozen=True)
class LiveServer:
    """An app served as ``python -m server`` serves it (handler cancellation, backlog)."""

    app: web.Application
    url: str

    @property
    def service(self) -> RelayService:
        return get_relay(self.app)

    @property
    def relay(self) -> Relay:
        """The sessions held in this process (a cluster node's cameras homed here)."""
        return local_relay(self.service)


MakeLiveServer = Callable[..., Awaitable[LiveServer]]


async def serve_on_loopback(
    settings: Settings, send_buffer_bytes: int | None = None
) -> tuple[web.AppRunner, str]:
    """``create_app(settings)`` served as ``python -m server`` serves it, on 127.0.0.1:<free>.

    ``send_buffer_bytes`` fixes its connections' kernel send buffer (Linux grows it
    up to megabytes on loopback), for tests that depend on how fast a client reads.
    Returns the runner (``cleanup()`` it) and the base URL.
    """
    runner = make_runner(create_app(settings), settings)
    await runner.setup()
    site: web.BaseSite
    if send_buffer_bytes is None:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=settings.listen_backlog)
    else:
        listener = socket.socket()
        # accepted connections inherit the listener's send buffer
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        listener.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, listener, backlog=settings.listen_backlog)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def live_servers() -> AsyncIterator[MakeLiveServer]:
    """``make(**overrides)`` serves ``create_app(settings_for(**overrides))`` on loopback;
    every server made is checked for leaks and stopped when the block ends."""
    runners: list[web.AppRunner] = []

    async def make(send_buffer_bytes: int | None = None, **overrides: Any) -> LiveServer:
        runner, url = await serve_on_loopback(settings_for(**overrides), send_buffer_bytes)
        runners.append(runner)
        return LiveServer(runner.app, url)

    yield make
    for runner in runners:
        await wait_for_relay_idle(local_relay(get_relay(runner.app)))
        await runner.cleanup()


@pytest.fixture
async def make_live_server() -> AsyncIterator[MakeLiveServer]:
    async with live_servers() as make:
        yield make


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """A real, empty redis-server on a free port (``.url``; ``.restart()`` empties it)."""
    try:
        binary = find_redis_server()
    except RedisServerNotFound as error:
        # Never a silent skip: the cluster's tests are the point of running against Redis.
        pytest.fail(f"the cluster tests need a real redis-server: {error}", pytrace=False)
    async with start_redis_server(binary) as server:
        yield server


class SessionRedisCluster:
    """The session's Redis Cluster of three primaries, each with a replica (for a test that
    fails one over), managed by a loop of its own in a thread. It starts in the background
    as soon as the collected tests are known to use it (its start takes 2-3 s, mostly
    waiting for the nodes to agree), and stops at the end of the session."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running: contextlib.AbstractAsyncContextManager[LocalRedisCluster] | None = None
        self._started: concurrent.futures.Future[LocalRedisCluster] | None = None
        self._missing: RedisServerNotFound | None = None

    def start(self) -> None:
        if self._started is not None or self._missing is not None:
            return
        try:
            binary = find_redis_server()
            find_redis_cli(binary)
        except RedisServerNotFound as error:
            self._missing = error  # the fixture fails with it
            return
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="redis-cluster", daemon=True)
        self._thread.start()
        self._running = start_redis_cluster(3, 1, binary)
        self._started = asyncio.run_coroutine_threadsafe(self._running.__aenter__(), loop)

    def get(self) -> LocalRedisCluster:
        self.start()
        if self._missing is not None:
            pytest.fail(f"the Redis Cluster tests need redis-server and redis-cli: {self._missing}")
        assert self._started is not None
        return self._started.result(60)

    def stop(self) -> None:
        loop, thread, running, started = self._loop, self._thread, self._running, self._started
        if loop is None or thread is None or running is None or started is None:
            return
        try:
            if started.exception(60) is None:  # a start that failed has stopped its nodes
                stopping = running.__aexit__(None, None, None)
                asyncio.run_coroutine_threadsafe(stopping, loop).result(60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


SESSION_REDIS_CLUSTER = SessionRedisCluster()


def _on_the_redis_cluster(item: pytest.Item) -> bool:
    """The test runs on the session's Redis Cluster: as a fixture, or by its parameter."""
    return "redis_cluster" in getattr(item, "fixturenames", ()) or "[redis-cluster" in item.nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under xdist, one worker runs them all: a cluster is 6 redis-servers, and one per
    # worker on 2 cores slowed both past the tests' short holds.
    for item in items:
        if _on_the_redis_cluster(item):
            item.add_marker(pytest.mark.xdist_group("redis-cluster"))


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Each worker collects every test but runs its share: it starts the cluster when a
        # test of its share first asks for it, not because another worker's might.
        return
    if any(_on_the_redis_cluster(item) for item in session.items):
        SESSION_REDIS_CLUSTER.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    SESSION_REDIS_CLUSTER.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> LocalRedisCluster:
    """A real Redis Cluster of three primaries, each with a replica, for the session
    (``SessionRedisCluster``). Tests keep apart by their key prefix; ``flush()`` empties
    every primary; a test may fail a primary over (the cluster stays whole)."""
    return SESSION_REDIS_CLUSTER.get()
