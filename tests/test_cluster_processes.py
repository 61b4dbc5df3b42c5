"""Cluster mode with real node processes (``python -m server``) sharing one real Redis.

What only processes can show: a node killed with SIGKILL (its sockets and its
heartbeat simply stop), a node stopped with SIGTERM (a rolling deploy), Redis
restarted empty under running nodes, and what the nodes write to their logs.
Every node runs with timeouts of about a second, so each test waits on
conditions for a few seconds at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import LogEntries
from tests.helpers import running as running_task
from tests.processes import child_env, free_port, python, wait_healthy
from tools.procs import Child, running, spawn
from tools.redis_server import RedisServer, find_redis_server, server_args

POLL_HOLD = 1.0
CONNECT_TIMEOUT = 1.0
RESPONSE_TIMEOUT = 1.5
NODE_TIMEOUT = 1.0
LOGS: LogEntries = [{"timestamp": float(t), "description": f"event {t}", "n": t} for t in range(10)]


@dataclass(slots=True)
class Node:
    name: str
    url: str
    child: Child

    def stderr(self) -> str:
        return "\n".join(self.child.stderr_lines())


@contextlib.asynccontextmanager
async def cluster_nodes(
    workdir: Path, redis_url: str, names: list[str], **env: str
) -> AsyncIterator[dict[str, Node]]:
    """``python -m server`` nodes on their own ports, one Redis; stopped when the block ends."""
    prefix = f"proc-{secrets.token_hex(4)}"
    async with contextlib.AsyncExitStack() as stack:
        nodes: dict[str, Node] = {}
        for name in names:
            port = free_port()
            settings = child_env(
                **{
                    "LOG_LEVEL": "INFO",
                    "SHUTDOWN_TIMEOUT_SECONDS": "3",
                    **env,
                },
                PORT=str(port),
                REDIS_URL=redis_url,
                REDIS_PREFIX=prefix,
                NODE_NAME=name,
                POLL_HOLD_SECONDS=str(POLL_HOLD),
                CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT),
                RESPONSE_TIMEOUT_SECONDS=str(RESPONSE_TIMEOUT),
                NODE_TIMEOUT_SECONDS=str(NODE_TIMEOUT),
            )
            child = await spawn(name, python("-m", "server"), settings, workdir)
            await stack.enter_async_context(running(child))
            nodes[name] = Node(name, f"http://127.0.0.1:{port}", child)
        await asyncio.gather(*(wait_healthy(node.url, node.child) for node in nodes.values()))
        yield nodes


async def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Ask ``check`` (a coroutine function) until it returns something true; return that."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.02)
    return found


@dataclass
class Camera:
    """A scripted camera. It polls ``nodes[0]`` and moves to the next node when its
    connection breaks (as a camera behind a load balancer reconnects elsewhere).

    It answers a command at once, unless ``hold`` is set: then it keeps the command
    (the camera is busy) until ``release`` is set.
    """

    http: aiohttp.ClientSession
    nodes: list[Node]
    camera_id: str = "cam"
    post_to: Node | None = None
    hold: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    posts: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    polled: list[str] = field(default_factory=list)
    got_command: asyncio.Event = field(default_factory=asyncio.Event)

    async def posted(self, count: int) -> list[tuple[str, int]]:
        """Wait for the answers to its first ``count`` posts (a caller may get its result
        before the camera gets its receipt); (node, status) of each."""
        await wait_for(lambda: asyncio.sleep(0, len(self.posts) >= count), 5)
        return [(name, status) for name, status, _ in self.posts[:count]]

    @property
    def node(self) -> Node:
        return self.nodes[0]

    def move_on(self) -> None:
        self.nodes = [*self.nodes[1:], self.nodes[0]]

    async def run(self) -> None:
        while True:
            try:
                if not await self.cycle():
                    self.move_on()
            except aiohttp.ClientConnectionError:
                self.move_on()

    async def cycle(self) -> bool:
        """One poll (and post); False when the node answered that it is stopping."""
        node = self.node
        self.polled.append(node.name)
        async with self.http.get(
            f"{node.url}/poll_for_command", params={"cameraId": self.camera_id}
        ) as response:
            status, command = response.status, await response.json(content_type=None)
        if status == 503:
            return False
        if status != 200 or command["command"] != "send_logs":
            if status == 409:
                await asyncio.sleep(0.2)
            return True
        self.commands.append((node.name, command))
        self.got_command.set()
        if self.hold:
            await self.release.wait()
        start, end = command["startTimestamp"], command["endTimestamp"]
        body = {
            "requestId": command["requestId"],
            "logs": [e for e in LOGS if start <= e["timestamp"] <= end],
        }
        target = self.post_to or self.node
        async with self.http.post(
            f"{target.url}/send_logs", params={"cameraId": self.camera_id}, json=body
        ) as response:
            answer = (target.name, response.status, await response.json(content_type=None))
        self.posts.append(answer)
        return answer[1] != 503


def camera_running(camera: Camera) -> contextlib.AbstractAsyncContextManager[Any]:
    return running_task(asyncio.create_task(camera.run()))


async def get(
    http: aiohttp.ClientSession, node: Node, path: str, **params: Any
) -> tuple[int, dict[str, str], Any]:
    """Status, headers, and the body: JSON, or the text of ``/metrics``."""
    async with http.get(
        f"{node.url}{path}", params={k: str(v) for k, v in params.items()}
    ) as response:
        text = await response.text()
        body = text if path == "/metrics" else json.loads(text)
        return response.status, dict(response.headers), body


async def camera_polling_seen_by(http: aiohttp.ClientSession, node: Node, camera_id: str) -> bool:
    status, _, body = await get(http, node, "/cameras")
    return status == 200 and any(
        c["cameraId"] == camera_id and c["polling"] for c in body["cameras"]
    )


def exact_answer(body: dict[str, Any], start: float, end: float, camera_id: str = "cam") -> None:
    expected = [e for e in LOGS if start <= e["timestamp"] <= end]
    assert body == {
        "cameraId": camera_id,
        "startTimestamp": start,
        "endTimestamp": end,
        "count": len(expected),
        "logs": expected,
    }


def no_tracebacks(*nodes: Node) -> None:
    for node in nodes:
        assert "Traceback" not in node.stderr(), node.stderr()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def logs_at(
    http: aiohttp.ClientSession, node: Node, camera_id: str, start: float, end: float
) -> tuple[int, dict[str, str], Any]:
    return await get(
        http, node, "/logs", cameraId=camera_id, startTimestamp=start, endTimestamp=end
    )


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int = 503) -> None:
    assert status == expected, body
    assert headers["Content-Type"] == "application/problem+json"
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == expected
    if expected == 503:
        assert int(headers["Retry-After"]) > 0


async def test_a_killed_node_loses_no_caller_on_the_others(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SIGKILL the node holding both cameras' commands; callers wait on another node.

    "cam" reconnects to a surviving node: its caller gets 200. "gone" never comes
    back: its caller gets 503 within NODE_TIMEOUT + CONNECT_TIMEOUT (+1 s) of the kill.
    """
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b", "c"]) as nodes:
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        back = Camera(http, [a, b], camera_id="cam", hold=True)
        gone = Camera(http, [a], camera_id="gone", hold=True)
        async with camera_running(back), camera_running(gone):
            for camera in (back, gone):
                await wait_for(lambda cid=camera.camera_id: camera_polling_seen_by(http, c, cid))
            served = asyncio.create_task(logs_at(http, c, "cam", 1, 3))
            refused = asyncio.create_task(logs_at(http, c, "gone", 1, 3))
            await asyncio.wait_for(back.got_command.wait(), 3)
            await asyncio.wait_for(gone.got_command.wait(), 3)
            loop = asyncio.get_running_loop()
            a.child.process.kill()
            killed_at = loop.time()
            back.release.set()  # its post to "a" fails: it reconnects to "b"
            status, _, body = await asyncio.wait_for(served, 10)
            assert status == 200, body
            exact_answer(body, 1, 3)
            status, headers, body = await asyncio.wait_for(refused, 10)
            refused_after = loop.time() - killed_at
        assert_problem(status, headers, body)
        assert refused_after <= NODE_TIMEOUT + CONNECT_TIMEOUT + 1.0
        assert [name for name, _ in back.commands] == ["a", "b"]
        assert await back.posted(1) == [("b", 200)]
        assert a.child.process.returncode == -signal.SIGKILL
        no_tracebacks(b, c)
        assert "node a stopped beating" in b.stderr() + c.stderr()


async def test_a_stopped_node_hands_its_work_over_and_exits_0(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SIGTERM (a rolling deploy): held polls answered, the command it gave out redelivered
    on the camera's next node with the same requestId, callers on both nodes served."""
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        idle = Camera(http, [a, b], camera_id="idle")
        busy = Camera(http, [a, b], camera_id="busy", hold=True)
        async with camera_running(idle), camera_running(busy):
            for camera in (idle, busy):
                await wait_for(lambda cid=camera.camera_id: camera_polling_seen_by(http, b, cid))
            on_b = asyncio.create_task(logs_at(http, b, "busy", 2, 4))
            await asyncio.wait_for(busy.got_command.wait(), 3)
            on_a = asyncio.create_task(logs_at(http, a, "busy", 5, 7))

            async def queued_at_a() -> bool:
                _, _, body = await get(http, a, "/cameras", prefix="busy")
                return bool(body["cameras"][0]["waiting"] == 1)

            await wait_for(queued_at_a)
            a.child.process.send_signal(signal.SIGTERM)
            await wait_for(lambda: asyncio.sleep(0, "b" in idle.polled))
            busy.release.set()
            status, _, body = await asyncio.wait_for(on_b, 5)
            assert status == 200, body
            exact_answer(body, 2, 4, "busy")
            status, _, body = await asyncio.wait_for(on_a, 5)
            assert status == 200, body
            exact_answer(body, 5, 7, "busy")
            assert await asyncio.wait_for(a.child.process.wait(), 5) == 0
        first, *later = busy.commands
        assert first[0] == "a"
        assert [name for name, _ in later] == ["b", "b"]
        assert later[0][1]["requestId"] == first[1]["requestId"]  # redelivered, not lost
        await wait_for(lambda: asyncio.sleep(0, [n for n, _, _ in busy.posts].count("b") >= 2))
        assert [(n, code) for n, code, _ in busy.posts if n == "b"] == [("b", 200), ("b", 200)]
        no_tracebacks(a, b)


async def test_redis_restarted_empty_under_running_nodes(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        camera = Camera(http, [a])
        async with camera_running(camera):
            await wait_for(lambda: camera_polling_seen_by(http, b, "cam"))
            await redis_server.stop()
            loop = asyncio.get_running_loop()

            for node in (a, b):

                async def reports_down(node: Node = node) -> bool:
                    status, _, body = await get(http, node, "/healthz")
                    assert status == 200
                    return bool(body["redis"] == "down")

                await wait_for(reports_down)

            status, _, body = await logs_at(http, a, "cam", 3, 5)  # same node: served
            assert status == 200, body
            exact_answer(body, 3, 5)
            asked = loop.time()
            status, headers, body = await logs_at(http, b, "cam", 3, 5)  # must cross: 503
            assert loop.time() - asked < 2.5
            assert_problem(status, headers, body)

            await redis_server.start()  # empty
            back_at = loop.time()

            async def served_from_b() -> bool:
                status, _, _ = await logs_at(http, b, "cam", 0, 1)
                return status == 200

            await wait_for(served_from_b, POLL_HOLD + NODE_TIMEOUT + 3)
            recovered_after = loop.time() - back_at
        assert recovered_after <= POLL_HOLD + NODE_TIMEOUT
        for node in (a, b):
            stderr = node.stderr()
            assert "Traceback" not in stderr, stderr
            warnings = [line for line in node.child.stderr_lines() if "Redis unavailable" in line]
            assert warnings
            assert all(" WARNING " in line for line in warnings)
            assert "Redis is reachable again" in stderr


@contextlib.asynccontextmanager
async def redis_with_password(workdir: Path, password: str) -> AsyncIterator[str]:
    """A redis-server requiring ``password``; yields the URL without it."""
    port = free_port()
    argv = [str(find_redis_server()), *server_args(port, workdir), "--requirepass", password]
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    async def answers() -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        try:
            writer.write(f"AUTH {password}\r\nPING\r\n".encode())
            return await reader.readline() == b"+OK\r\n"
        finally:
            writer.close()

    try:
        await wait_for(answers, 10)
        yield f"127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def test_three_nodes_serve_one_call_and_never_show_the_redis_password(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The camera polls "a", posts its result to "b", the user asks "c": one exact answer.
    The password of REDIS_URL (right, or wrong on node "w") shows nowhere: not in
    logs at DEBUG, error bodies, /metrics or /healthz, Redis up or down."""
    password, wrong = "Pw-" + secrets.token_hex(8), "Wrong-" + secrets.token_hex(8)
    async with redis_with_password(tmp_path, password) as where:
        url = f"redis://:{password}@{where}"
        async with (
            cluster_nodes(tmp_path, url, ["a", "b", "c"], LOG_LEVEL="DEBUG") as nodes,
            cluster_nodes(tmp_path, f"redis://:{wrong}@{where}", ["w"], LOG_LEVEL="DEBUG") as odd,
        ):
            a, b, c, w = nodes["a"], nodes["b"], nodes["c"], odd["w"]
            camera = Camera(http, [a], post_to=b)
            shown: list[str] = []
            async with camera_running(camera):
                await wait_for(lambda: camera_polling_seen_by(http, c, "cam"))
                status, _, body = await logs_at(http, c, "cam", 2.5, 6)
                assert status == 200, body
                exact_answer(body, 2.5, 6)
                assert [name for name, _ in camera.commands] == ["a"]
                assert await camera.posted(1) == [("b", 200)]
                for node in (a, b, c, w):
                    for path in ("/healthz", "/metrics", "/cameras"):
                        shown.append(repr(await get(http, node, path)))
                status, headers, body = await logs_at(http, w, "cam", 0, 1)
                assert_problem(status, headers, body)
                shown.append(repr(body))
        for node in (a, b, c, w):
            shown.append(node.stderr())
    everything = "\n".join(shown)
    assert password not in everything
    assert wrong not in everything
    assert "cluster mode on redis://" in a.stderr()  # the URL is logged, redacted
    assert "Traceback" not in everything
