"""Cluster mode with real node processes (``python -m server``) sharing one real Redis.

What only processes can show: a node killed with SIGKILL (its sockets and its
heartbeat simply stop), a node stopped with SIGTERM (a rolling deploy), a node
restarted under the same NODE_NAME, a node paused with SIGSTOP, Redis restarted
empty, flushed or refusing writes under running nodes, and what the nodes write
to their logs. Every node runs with timeouts of about a second, so each test
waits on conditions for a few seconds at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.helpers import LogEntries
from tests.helpers import running as running_task
from tests.processes import child_env, free_port, wait_healthy
from tools.procs import Child, python, running, spawn
from tools.redis_server import RedisServer, find_redis_server, server_args

POLL_HOLD = 1.0
CONNECT_TIMEOUT = 1.0
RESPONSE_TIMEOUT = 1.5
NODE_TIMEOUT = 1.0
pytestmark = [pytest.mark.redis, pytest.mark.process]


def logs_of(camera_id: str) -> LogEntries:
    """A camera's log: its own entries, so that one crossing to another camera shows."""
    return [
        {"timestamp": float(t), "description": f"{camera_id} event {t}", "n": t} for t in range(10)
    ]


@dataclass(slots=True)
class Node:
    name: str
    url: str
    child: Child

    def stderr(self) -> str:
        return "\n".join(self.child.stderr_lines())


class Nodes(dict[str, Node]):
    """The running nodes by name, sharing one Redis and prefix; ``start`` runs one more,
    or a node again under its ``NODE_NAME`` (a new incarnation)."""

    def __init__(
        self, stack: contextlib.AsyncExitStack, workdir: Path, redis_url: str, env: dict[str, str]
    ) -> None:
        super().__init__()
        self._stack, self._workdir, self._redis_url, self._env = stack, workdir, redis_url, env
        self._prefix = f"proc-{secrets.token_hex(4)}"
        self._runs = 0

    async def start(self, name: str, port: int | None = None) -> Node:
        """Spawn a node (not waiting for it to be healthy)."""
        port = port or free_port()
        settings = child_env(
            **{
                "LOG_LEVEL": "INFO",
                "SHUTDOWN_TIMEOUT_SECONDS": "3",
                "RESPONSE_TIMEOUT_SECONDS": str(RESPONSE_TIMEOUT),
                **self._env,
            },
            PORT=str(port),
            REDIS_URL=self._redis_url,
            REDIS_PREFIX=self._prefix,
            NODE_NAME=name,
            POLL_HOLD_SECONDS=str(POLL_HOLD),
            CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT),
            NODE_TIMEOUT_SECONDS=str(NODE_TIMEOUT),
        )
        self._runs += 1
        run = name if name not in self else f"{name}.{self._runs}"  # its own stderr file
        child = await spawn(run, python("-m", "server"), settings, self._workdir)
        await self._stack.enter_async_context(running(child))
        self[name] = Node(name, f"http://127.0.0.1:{port}", child)
        return self[name]

    async def restart(self, name: str) -> Node:
        """The node again under the same NODE_NAME and port, once the old process ended."""
        old = self[name]
        await old.child.process.wait()
        node = await self.start(name, int(old.url.rsplit(":", 1)[1]))
        await wait_healthy(node.url, node.child)
        return node


@contextlib.asynccontextmanager
async def cluster_nodes(
    workdir: Path, redis_url: str, names: list[str], **env: str
) -> AsyncIterator[Nodes]:
    """``python -m server`` nodes on their own ports, one Redis; stopped when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = Nodes(stack, workdir, redis_url, env)
        for name in names:
            await nodes.start(name)
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
            "logs": [e for e in logs_of(self.camera_id) if start <= e["timestamp"] <= end],
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


async def wait_seen(http: aiohttp.ClientSession, *held: tuple[Node, str]) -> None:
    """Wait until each node lists its camera as polling (held there or elsewhere)."""
    for node, camera_id in held:
        await wait_for(functools.partial(camera_polling_seen_by, http, node, camera_id))


def exact_answer(body: dict[str, Any], start: float, end: float, camera_id: str = "cam") -> None:
    expected = [e for e in logs_of(camera_id) if start <= e["timestamp"] <= end]
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
            await wait_seen(http, (c, "cam"), (c, "gone"))
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
        assert re.search(r"node a~\w+ stopped beating", b.stderr() + c.stderr())


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
            await wait_seen(http, (b, "idle"), (b, "busy"))
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


# ---------------------------------------------------------------- faults: restarts, pauses, Redis


async def alone(http: aiohttp.ClientSession, node: Node) -> bool:
    """``node`` counts no other node alive (``camrelay_cluster_nodes_alive`` is 1)."""
    _, _, text = await get(http, node, "/metrics")
    return re.search(r"^camrelay_cluster_nodes_alive 1\.0$", text, re.MULTILINE) is not None


async def poll_status(http: aiohttp.ClientSession, node: Node, camera_id: str) -> int:
    async with http.get(f"{node.url}/poll_for_command", params={"cameraId": camera_id}) as poll:
        await poll.read()
        return poll.status


async def older_poll_loses(
    http: aiohttp.ClientSession, older_at: Node, newer_at: Node, camera_id: str
) -> float:
    """Seconds from a second poll at ``newer_at`` to the 409 of the one held at ``older_at``
    (tried again if the held poll's hold ran out first, as on a busy machine)."""
    loop = asyncio.get_running_loop()
    for _ in range(3):
        started = loop.time()
        older = asyncio.create_task(poll_status(http, older_at, camera_id))
        await wait_seen(http, (older_at, camera_id))  # held there
        asked = loop.time()
        async with running_task(asyncio.create_task(poll_status(http, newer_at, camera_id))):
            status = await asyncio.wait_for(older, POLL_HOLD + 1)
        if status == 409:
            return loop.time() - asked
        assert status == 200
        assert loop.time() - started >= POLL_HOLD  # a noop: its hold ran out first
    raise AssertionError("the older poll was never superseded")


async def waiting_at(http: aiohttp.ClientSession, node: Node, camera_id: str) -> int:
    _, _, body = await get(http, node, "/cameras", prefix=camera_id)
    return sum(c["waiting"] for c in body["cameras"] if c["cameraId"] == camera_id)


async def own_answer(
    http: aiohttp.ClientSession, node: Node, camera_id: str, start: float, end: float
) -> int:
    """A caller's status (0: the node's connection broke); a 200 holds exactly its own
    camera's entries in its range."""
    try:
        status, _, body = await logs_at(http, node, camera_id, start, end)
    except aiohttp.ClientError:
        return 0
    if status == 200:
        exact_answer(body, start, end, camera_id)
    return status


RANGES = [(float(i % 10), float(min(9, i % 10 + i % 4))) for i in range(30)]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_a_node_restarted_under_the_same_name_takes_nothing_of_its_earlier_run(
    sig: signal.Signals, redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Camera Y's command is in flight at node b for callers on node a. Node a ends and
    runs again at once under the same NODE_NAME and port (one inbox for both runs); then
    Y answers, and its result for the earlier run's callers reaches that inbox while 30
    callers of camera X wait on the new run: each gets exactly X's entries in its range.
    (Y holds its command while a restarts: a response timeout that outlasts a restart.)"""
    env = {"SHUTDOWN_TIMEOUT_SECONDS": "0.5", "RESPONSE_TIMEOUT_SECONDS": "5"}
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"], **env) as nodes:
        a, b = nodes["a"], nodes["b"]
        y = Camera(http, [b], camera_id="cam-y", hold=True)
        x = Camera(http, [b], camera_id="cam-x")
        async with camera_running(y), camera_running(x):
            await wait_seen(http, (a, "cam-y"), (a, "cam-x"))
            on_old_a = [asyncio.create_task(own_answer(http, a, "cam-y", *r)) for r in RANGES[:5]]
            await asyncio.wait_for(y.got_command.wait(), 3)
            await wait_for(lambda: waiting_at(http, b, "cam-y"))  # the rest queued at b
            a.child.process.send_signal(sig)
            a = await nodes.restart("a")
            on_new_a = [asyncio.create_task(own_answer(http, a, "cam-x", *r)) for r in RANGES]
            y.release.set()  # its result is for callers of a's earlier run
            new = await asyncio.wait_for(asyncio.gather(*on_new_a), 10)
            old = await asyncio.wait_for(asyncio.gather(*on_old_a), 10)
            await wait_for(lambda: asyncio.sleep(0, len(y.posts) >= 1))
        assert new == [200] * 30
        if sig == signal.SIGKILL:
            assert set(old) == {0}  # their connection broke with the process
            assert y.posts[0][1] == 200  # accepted: its outcome went to a's earlier run
        else:  # answered as a stops
            assert set(old) <= {200, 503}, old
        no_tracebacks(a, b)


@pytest.mark.parametrize("fault", ["restart", "flushall"])
async def test_every_node_serves_every_camera_again_after_redis_lost_its_data(
    fault: str, redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Within POLL_HOLD + NODE_TIMEOUT of Redis losing its data (restarted empty, or
    FLUSHALL), callers at each node get every camera's exact entries, and a duplicated
    camera's older poll gets 409 within a second, whichever node has it."""
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        homes = {"cam-a": a, "cam-b": b}
        cameras = [Camera(http, [node], camera_id=cid) for cid, node in homes.items()]
        loop = asyncio.get_running_loop()
        async with camera_running(cameras[0]), camera_running(cameras[1]):
            await wait_seen(http, (b, "cam-a"), (a, "cam-b"))
            if fault == "restart":
                await redis_server.restart()
            else:
                async with contextlib.aclosing(Redis.from_url(redis_server.url)) as redis:
                    await redis.flushall()
            lost_at = loop.time()

            async def served(node: Node, camera_id: str) -> float:
                while True:
                    status, _, body = await logs_at(http, node, camera_id, 2, 6)
                    if status == 200:
                        exact_answer(body, 2, 6, camera_id)
                        return loop.time() - lost_at
                    await asyncio.sleep(0.02)

            pairs = [(node, cid) for node in (a, b) for cid in homes]
            took = await asyncio.wait_for(
                asyncio.gather(*(served(n, c) for n, c in pairs)), POLL_HOLD + NODE_TIMEOUT + 3
            )
        assert max(took) <= POLL_HOLD + NODE_TIMEOUT, took
        for camera_id, older_at in homes.items():
            newer_at = b if older_at is a else a
            assert await older_poll_loses(http, older_at, newer_at, camera_id) <= 1.0
        no_tracebacks(a, b)


async def test_a_paused_node_finds_out_it_lost_its_camera_before_serving_it(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """SIGSTOP the camera's node for longer than NODE_TIMEOUT while the camera moves to
    another node; after SIGCONT a caller at the resumed node gets the exact answer within
    POLL_HOLD + NODE_TIMEOUT."""
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        camera = Camera(http, [a, b])
        loop = asyncio.get_running_loop()
        try:
            async with camera_running(camera):
                await wait_seen(http, (b, "cam"))
                a.child.process.send_signal(signal.SIGSTOP)
                paused_at = loop.time()
            camera.move_on()  # its poll at a hangs: it reconnects to b
            async with camera_running(camera):
                # The pause, as b sees it: a no longer alive, the camera polling at b.
                await wait_for(functools.partial(alone, http, b), 3)
                await wait_seen(http, (b, "cam"))
                await asyncio.sleep(max(0.0, paused_at + NODE_TIMEOUT + 0.25 - loop.time()))
                a.child.process.send_signal(signal.SIGCONT)
                resumed_at = loop.time()
                status, _, body = await asyncio.wait_for(
                    logs_at(http, a, "cam", 2, 5), POLL_HOLD + NODE_TIMEOUT + 3
                )
                took = loop.time() - resumed_at
        finally:
            a.child.process.send_signal(signal.SIGCONT)
        assert status == 200, body
        exact_answer(body, 2, 5)
        assert took <= POLL_HOLD + NODE_TIMEOUT
        assert [name for name, _ in camera.commands] == ["b"]
        no_tracebacks(a, b)


async def test_redis_refusing_writes_means_503_never_504(
    redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Redis at maxmemory (noeviction) once the fleet registered: callers whose work must
    cross nodes get 503 with Retry-After (problem+json) within C + R + N + 2 s, never a
    504, also those whose camera answered but whose result could not cross."""
    async with cluster_nodes(tmp_path, redis_server.url, ["a", "b"]) as nodes:
        a, b = nodes["a"], nodes["b"]
        held = Camera(http, [a], camera_id="cam-a", hold=True)
        other = Camera(http, [b], camera_id="cam-b")
        loop = asyncio.get_running_loop()

        async def timed(
            node: Node, camera_id: str
        ) -> tuple[float, tuple[int, dict[str, str], Any]]:
            started = loop.time()
            outcome = await logs_at(http, node, camera_id, 1, 4)
            return loop.time() - started, outcome

        async with (
            camera_running(held),
            camera_running(other),
            contextlib.aclosing(Redis.from_url(redis_server.url)) as redis,
        ):
            await wait_seen(http, (b, "cam-a"), (a, "cam-b"))
            crossed = [asyncio.create_task(timed(b, "cam-a")) for _ in range(3)]
            await asyncio.wait_for(held.got_command.wait(), 3)
            await wait_for(lambda: waiting_at(http, a, "cam-a"))  # the others queued at a
            try:
                await redis.config_set("maxmemory-policy", "noeviction")
                await redis.config_set("maxmemory", 1)
                held.release.set()  # it answers at a; the result cannot cross to b
                crossed += [
                    asyncio.create_task(timed(node, cid))
                    for node, cid in ((b, "cam-a"), (a, "cam-b"))
                ]
                answers = await asyncio.wait_for(asyncio.gather(*crossed), 10)
            finally:
                await redis.config_set("maxmemory", 0)
        for took, (status, headers, body) in answers:
            assert_problem(status, headers, body)
            assert body["type"].endswith("cluster-unavailable"), body
            assert took <= CONNECT_TIMEOUT + RESPONSE_TIMEOUT + NODE_TIMEOUT + 2
        assert await held.posted(1) == [("a", 200)]  # the camera did answer
        assert "> 'maxmemory'" in a.stderr() + b.stderr()  # Redis did refuse the writes
        no_tracebacks(a, b)
