"""Cluster mode in one event loop: several nodes from ``create_app``, one real Redis.

Each node is an app served on its own port with its own ``NODE_NAME``; the
camera and the users speak HTTP to whichever node a test picks, as a load
balancer without stickiness would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.cluster import ClusterRelay
from tests.conftest import LiveServer, MakeLiveServer
from tests.helpers import LogEntries, wait_until
from tests.redis_process import RedisProcess

LOGS: LogEntries = [{"timestamp": float(t), "description": f"event {t}"} for t in range(10)]
MakeNode = Callable[..., Awaitable[LiveServer]]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """A Redis of the test's own, for tests that stop it."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def node_maker(make_live_server: MakeLiveServer, redis: RedisProcess) -> MakeNode:
    prefix = f"test-{secrets.token_hex(4)}"

    async def make(name: str, **overrides: Any) -> LiveServer:
        settings: dict[str, Any] = {
            "redis_url": redis.url,
            "redis_prefix": prefix,
            "node_name": name,
            "node_timeout_seconds": 0.6,
            "poll_hold_seconds": 1.0,
            "connect_timeout_seconds": 1.0,
            "response_timeout_seconds": 1.5,
            **overrides,
        }
        return await make_live_server(**settings)

    return make


@pytest.fixture
def make_node(make_live_server: MakeLiveServer, redis_server: RedisProcess) -> MakeNode:
    return node_maker(make_live_server, redis_server)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def cluster(node: LiveServer) -> ClusterRelay:
    relay = node.relay
    assert isinstance(relay, ClusterRelay)
    return relay


class Camera:
    """Polls the nodes in turn (``poll_at``) and posts each result to ``post_at``."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        poll_at: list[LiveServer],
        post_at: LiveServer | None = None,
        camera_id: str = "cam",
        logs: LogEntries = LOGS,
    ) -> None:
        self.http = http
        self.poll_nodes = itertools.cycle(poll_at)
        self.post_at = post_at
        self.camera_id = camera_id
        self.logs = logs
        self.commands: list[dict[str, Any]] = []
        self.post_answers: list[tuple[int, dict[str, Any]]] = []

    async def poll(self, node: LiveServer) -> tuple[int, dict[str, Any]]:
        async with self.http.get(
            f"{node.url}/poll_for_command", params={"cameraId": self.camera_id}
        ) as response:
            return response.status, await response.json(content_type=None)

    async def post(self, node: LiveServer, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.post(
            f"{node.url}/send_logs", params={"cameraId": self.camera_id}, json=body
        ) as response:
            answer = (response.status, await response.json(content_type=None))
            self.post_answers.append(answer)
            return answer

    async def run(self) -> None:
        while True:
            node = next(self.poll_nodes)
            status, command = await self.poll(node)
            if status == 200 and command["command"] == "send_logs":
                self.commands.append(command)
                start, end = command["startTimestamp"], command["endTimestamp"]
                logs = [e for e in self.logs if start <= e["timestamp"] <= end]
                await self.post(
                    self.post_at or node, {"requestId": command["requestId"], "logs": logs}
                )


async def get_logs(
    http: aiohttp.ClientSession, node: LiveServer, camera_id: str = "cam", **bounds: float
) -> tuple[int, dict[str, Any]]:
    params: dict[str, str] = {"cameraId": camera_id}
    params.update({key: repr(value) for key, value in bounds.items()})
    async with http.get(f"{node.url}/logs", params=params) as response:
        return response.status, await response.json(content_type=None)


def polling_at(node: LiveServer, camera_id: str = "cam") -> Callable[[], bool]:
    def check() -> bool:
        session = node.relay.session(camera_id)
        return session is not None and session.status().polling

    return check


@contextlib.asynccontextmanager
async def background(coro: Awaitable[Any]) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_poll_on_one_node_serves_a_caller_on_another(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    async with background(camera.run()):
        await wait_until(polling_at(a))
        status, body = await get_logs(http, b, startTimestamp=2, endTimestamp=4)
    assert status == 200
    assert body["logs"] == LOGS[2:5]
    assert body["count"] == 3
