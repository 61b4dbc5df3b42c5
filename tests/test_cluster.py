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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from server.cluster import ClusterNode
from server.cluster.redis.transport import INLINE_BODY_BYTES
from tests.conftest import LiveServer, MakeLiveServer
from tests.helpers import LogEntries, wait_until
from tools.redis_server import LocalRedisCluster, RedisServer

#: every test here runs its nodes on a real redis-server
pytestmark = pytest.mark.redis

LOGS: LogEntries = [{"timestamp": float(t), "description": f"event {t}"} for t in range(10)]
MakeNode = Callable[..., Awaitable[LiveServer]]
T = TypeVar("T")
Spawn = Callable[[Awaitable[T]], "asyncio.Future[T]"]


def node_maker(
    make_live_server: MakeLiveServer, redis: RedisServer | LocalRedisCluster
) -> MakeNode:
    prefix = f"test-{secrets.token_hex(4)}"

    async def make(name: str, **overrides: Any) -> LiveServer:
        settings: dict[str, Any] = {
            "redis_url": redis.url,
            "redis_cluster": isinstance(redis, LocalRedisCluster),
            "redis_prefix": prefix,
            "node_name": name,
            "node_timeout_seconds": 1.0,
            "poll_hold_seconds": 1.0,
            "connect_timeout_seconds": 1.0,
            "response_timeout_seconds": 1.5,
            **overrides,
        }
        return await make_live_server(**settings)

    return make


@pytest.fixture(params=["redis"])
def make_node(make_live_server: MakeLiveServer, request: pytest.FixtureRequest) -> MakeNode:
    """Nodes on one Redis; with ``ALSO_ON_A_REDIS_CLUSTER``, the same test also on a Redis
    Cluster of three primaries."""
    if request.param == "redis-cluster":
        return node_maker(make_live_server, request.getfixturevalue("redis_cluster"))
    return node_maker(make_live_server, request.getfixturevalue("redis_server"))


#: Every test here runs its nodes on one Redis. These run on a Redis Cluster of three
#: primaries as well, for what depends there on where keys lie (hash slots) and on the
#: cluster client routing each command to its slot's primary:
#: - a caller's work crossing to the camera's home and its result coming back: each
#:   node's inbox is a slot of its own, read blocking at its primary (one node to
#:   another; and three nodes' inboxes, spread over the primaries, with redelivery);
#: - ``/cameras`` merging the pages and counts of the fleet's 16 shards, on every primary;
#: - heartbeats, nodes alive and the epoch (a script per shard, on every primary);
#: - a killed node's camera claimed by another node (liveness read from the members' slot);
#: - a stopping node parking its work (one script over a camera's hash and its parked
#:   work: they must share a slot);
#: - (cluster only) a primary failing over, then every primary losing its data.
#: The other tests check the nodes' own rules (coalescing, newest poll wins, results
#: without requestId, timeouts, offline, queue limits) over the same backend calls,
#: which tests/test_backend_contract.py checks call by call on the Redis Cluster too.
ALSO_ON_A_REDIS_CLUSTER = pytest.mark.parametrize(
    "make_node", ["redis", "redis-cluster"], indirect=True
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def spawn(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Callable[[Awaitable[T]], asyncio.Future[T]]]:
    """Start a request in the background; whatever is still running is cancelled after."""
    tasks: list[asyncio.Future[Any]] = []

    def start(coro: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(coro)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def redis_client(server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the test's redis-server, to look at what the nodes keep there."""
    client = Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


def cluster(node: LiveServer) -> ClusterNode:
    relay = node.service
    assert isinstance(relay, ClusterNode)
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
        #: polls answered so far
        self.polls = 0

    async def poll(self, node: LiveServer) -> tuple[int, dict[str, Any]]:
        async with self.http.get(
            f"{node.url}/poll_for_command", params={"cameraId": self.camera_id}
        ) as response:
            answer = response.status, await response.json(content_type=None)
            self.polls += 1
            return answer

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


async def held_poll(spawn: Spawn[Any], camera: Camera, node: LiveServer) -> asyncio.Future[Any]:
    """The camera's poll at ``node``, once held there. A poll answered noop before it was
    seen held is made again, as a camera does: the claim before a camera's first poll at
    a node counts against its hold (``POLL_HOLD_SECONDS``, 1 s here), and on a loaded
    machine it has taken all of it."""
    held = polling_at(node, camera.camera_id)
    async with asyncio.timeout(10.0):
        while True:
            poll = spawn(camera.poll(node))
            while not (held() or poll.done()):
                await asyncio.sleep(0.002)
            if held():
                return poll
            assert poll.result() == (200, {"command": "noop"}), poll.result()


def status_is(node: LiveServer, camera_id: str = "cam", **expected: int) -> Callable[[], bool]:
    """The camera's session at ``node`` shows ``expected`` (``waiting=2``, ``in_flight=1``)."""

    def check() -> bool:
        session = node.relay.session(camera_id)
        status = None if session is None else session.status()._asdict()
        return status is not None and all(status[key] == value for key, value in expected.items())

    return check


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


@ALSO_ON_A_REDIS_CLUSTER
async def test_a_poll_on_one_node_serves_a_caller_on_another(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    async with background(camera.run()):
        await wait_until(polling_at(a))
        status, body = await get_logs(http, b, startTimestamp=2, endTimestamp=4)
    assert status == 200
    assert body["logs"] == LOGS[2:5]
    assert body["count"] == 3


async def test_newest_poll_wins_across_nodes(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    older = await held_poll(spawn, camera, a)
    loop = asyncio.get_running_loop()
    newer = spawn(camera.poll(b))
    started = loop.time()
    status, body = await older
    assert loop.time() - started < 1.0
    assert status == 409
    assert body["type"].endswith("poll-superseded")
    await wait_until(polling_at(b))
    # The camera now lives at b: a caller on a is served by the poll held at b.
    caller = spawn(get_logs(http, a, startTimestamp=0, endTimestamp=1))
    status, command = await newer
    assert status == 200
    assert command["command"] == "send_logs"
    assert await camera.post(b, {"requestId": command["requestId"], "logs": LOGS[:2]}) == (
        200,
        {"status": "accepted", "requestId": command["requestId"], "duplicate": False, "count": 2},
    )
    assert await caller == (
        200,
        {"cameraId": "cam", "startTimestamp": 0, "endTimestamp": 1, "count": 2, "logs": LOGS[:2]},
    )


async def test_callers_on_two_nodes_share_one_command(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    busy = spawn(get_logs(http, a, startTimestamp=9, endTimestamp=9))
    _status, command = await first  # the camera is busy with this one meanwhile
    on_a = spawn(get_logs(http, a, startTimestamp=1, endTimestamp=2))
    on_b = spawn(get_logs(http, b, startTimestamp=5, endTimestamp=7))
    await wait_until(status_is(a, waiting=2))
    await camera.post(a, {"requestId": command["requestId"], "logs": LOGS[9:]})
    async with background(camera.run()):
        results = await asyncio.gather(busy, on_a, on_b)
    assert [body["logs"] for _, body in results] == [LOGS[9:], LOGS[1:3], LOGS[5:8]]
    assert len(camera.commands) == 1  # the second command, taken by the run loop
    assert (camera.commands[0]["startTimestamp"], camera.commands[0]["endTimestamp"]) == (1, 7)


@ALSO_ON_A_REDIS_CLUSTER
async def test_poll_result_and_caller_on_three_nodes_with_redelivery(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    # A hold that outlasts a loaded machine's delay in bringing the caller to it.
    a, b, c = [await make_node(name, poll_hold_seconds=5.0) for name in "abc"]
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, a, startTimestamp=3, endTimestamp=4))
    _, command = await first
    # The camera never answers it (its answer was lost) and polls node b next.
    _, again = await camera.poll(b)
    assert again == command
    posted = await camera.post(c, {"requestId": command["requestId"], "logs": LOGS[3:5]})
    assert posted == (
        200,
        {"status": "accepted", "requestId": command["requestId"], "duplicate": False, "count": 2},
    )
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[3:5])
    # A repeat is a duplicate on any node, and nothing else awaits a result.
    status, repeat = await camera.post(a, {"requestId": command["requestId"], "logs": []})
    assert (status, repeat["duplicate"]) == (200, True)
    status, late = await camera.post(c, {"requestId": "f" * 32, "logs": []})
    assert status == 404
    assert late["type"].endswith("unknown-request")


async def test_a_result_without_request_id_answers_the_one_command_from_any_node(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, a))
    _, command = await first
    status, receipt = await camera.post(b, {"logs": LOGS})
    assert (status, receipt["requestId"]) == (200, command["requestId"])
    assert (await caller)[1]["logs"] == LOGS
    status, _ = await camera.post(b, {"logs": LOGS})
    assert status == 404


async def test_offline_and_timeouts_hold_across_nodes(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    status, body = await get_logs(http, b, camera_id="never")
    assert status == 503
    assert "has not connected" in body["detail"]
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    loop = asyncio.get_running_loop()
    started = loop.time()
    caller = spawn(get_logs(http, b))
    await first  # delivered, never answered: 504 after the response timeout
    status, body = await caller
    took = loop.time() - started
    assert status == 504
    assert body["type"].endswith("camera-timeout")
    assert 1.5 <= took <= 1.5 + 1.0
    # Nobody polls any more: once the connect timeout passed, 503 at once.
    await wait_until(lambda: not a.relay.cameras()[0].online, timeout=3)
    started = loop.time()
    status, body = await get_logs(http, b)
    assert status == 503
    assert "offline" in body["detail"]
    assert loop.time() - started < 0.5


@ALSO_ON_A_REDIS_CLUSTER
async def test_cameras_lists_the_whole_fleet_from_any_node(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    # Held for longer than the test takes, even on a busy machine.
    a, b = await make_node("a", poll_hold_seconds=5.0), await make_node("b", poll_hold_seconds=5.0)
    polls = [
        spawn(Camera(http, [node], camera_id=name).poll(node))
        for node, name in ((a, "cam-1"), (b, "cam-2"), (a, "cam-3"), (b, "other"))
    ]
    await wait_until(
        lambda: all(
            polling_at(node, name)()
            for node, name in ((a, "cam-1"), (b, "cam-2"), (a, "cam-3"), (b, "other"))
        )
    )

    async def listed(node: LiveServer, query: str = "") -> dict[str, Any]:
        async with http.get(f"{node.url}/cameras{query}") as response:
            assert response.status == 200
            result: dict[str, Any] = await response.json()
            return result

    # The flush reaches Redis within 0.1 s, and a node counts another alive from its
    # next beat (a quarter of the node timeout): every node then lists all four, each
    # online and polling.
    def everyone_polling(page: dict[str, Any]) -> bool:
        cameras = page["cameras"]
        return len(cameras) == 4 and all(c["online"] and c["polling"] for c in cameras)

    async def fleet_seen() -> None:
        while not all(everyone_polling(page) for page in [await listed(n) for n in (a, b)]):
            await asyncio.sleep(0.02)

    async with asyncio.timeout(2.0):
        await fleet_seen()
    for node in (a, b):
        page = await listed(node)
        assert [c["cameraId"] for c in page["cameras"]] == ["cam-1", "cam-2", "cam-3", "other"]
        assert all(c["online"] and c["polling"] for c in page["cameras"])
        first = await listed(node, "?prefix=cam-&limit=2")
        assert [c["cameraId"] for c in first["cameras"]] == ["cam-1", "cam-2"]
        assert first["next"] == "cam-2"
        assert first["totals"]["known"] == 4
        assert first["totals"]["polling"] == 4
        rest = await listed(node, "?prefix=cam-&limit=2&after=cam-2")
        assert [c["cameraId"] for c in rest["cameras"]] == ["cam-3"]
        assert rest["next"] is None
        offline = await listed(node, "?online=false")
        assert offline["cameras"] == []
    for poll in polls:
        poll.cancel()


async def test_max_waiting_counts_callers_on_all_nodes(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = (
        await make_node("a", max_waiting_per_camera=2),
        await make_node("b", max_waiting_per_camera=2),
    )
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    busy = spawn(get_logs(http, a))
    _, command = await first
    queued = [spawn(get_logs(http, node)) for node in (a, b)]
    await wait_until(status_is(a, waiting=2))
    status, body = await get_logs(http, b)
    assert status == 503
    assert body["type"].endswith("queue-full")
    await camera.post(a, {"requestId": command["requestId"], "logs": LOGS})
    async with background(camera.run()):
        assert [s for s, _ in await asyncio.gather(busy, *queued)] == [200, 200, 200]


@ALSO_ON_A_REDIS_CLUSTER
async def test_healthz_and_metrics_of_a_node(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a"), await make_node("b")
    async with http.get(f"{a.url}/healthz") as response:
        health = await response.json()
    assert response.status == 200
    assert (health["status"], health["node"], health["redis"]) == ("ok", "a", "up")
    camera = Camera(http, [a])
    async with background(camera.run()):
        await wait_until(polling_at(a))
        assert (await get_logs(http, b))[0] == 200
    await wait_until(lambda: cluster(a).nodes_alive() == 2)
    async with http.get(f"{b.url}/metrics") as response:
        text = await response.text()
    assert "camrelay_cluster_nodes_alive 2.0" in text
    assert 'camrelay_cluster_forwarded_total{kind="enqueue"} 1.0' in text
    assert "camrelay_cluster_forward_latency_seconds_count" in text
    assert "camrelay_cluster_redis_errors_total 0.0" in text


def problem_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log lines with a traceback (expected faults must not log any)."""
    return [record.getMessage() for record in caplog.records if record.exc_info]


async def test_redis_down_then_back(
    make_live_server: MakeLiveServer,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_node = node_maker(make_live_server, redis_server)
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    spawn(camera.run())
    await wait_until(polling_at(a))
    mute = Camera(http, [a], camera_id="mute")  # takes a command and never answers
    await held_poll(spawn, mute, a)
    stranded = spawn(get_logs(http, b, camera_id="mute"))
    await wait_until(status_is(a, "mute", in_flight=1))
    await redis_server.stop()
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()
    # Same-node work is still served; work that must cross nodes gets a clean 503.
    status, body = await get_logs(http, a, startTimestamp=1, endTimestamp=1)
    assert (status, body["logs"]) == (200, LOGS[1:2])
    async with http.get(f"{b.url}/logs", params={"cameraId": "cam"}) as response:
        assert response.status == 503
        assert response.content_type == "application/problem+json"
        assert response.headers["Retry-After"] == "2"
        problem = await response.json(content_type=None)
    assert problem["type"].endswith("cluster-unavailable")
    assert "Redis is unreachable" in problem["detail"]
    async with http.get(f"{b.url}/healthz") as response:
        assert response.status == 200
        health = await response.json()
    assert (health["status"], health["redis"]) == ("ok", "down")
    # A caller whose work sat at another node when Redis went: 503 once Redis has been
    # down for a node timeout (no answer could reach it), not a wait for its deadline.
    status, problem = await stranded
    assert (status, problem["type"].rsplit(":", 1)[-1]) == (503, "cluster-unavailable")
    assert loop.time() - stopped_at < 1.0 + 0.5 + 0.5
    # Redis comes back empty: the fleet is reachable again within POLL_HOLD + NODE_TIMEOUT.
    await redis_server.start()
    loop = asyncio.get_running_loop()
    back_at = loop.time()

    async def served_from_b() -> bool:
        status, _ = await get_logs(http, b, startTimestamp=2, endTimestamp=2)
        return status == 200

    async with asyncio.timeout(1.0 + 1.0):  # POLL_HOLD + NODE_TIMEOUT
        while not await served_from_b():
            await asyncio.sleep(0.02)
    assert loop.time() - back_at <= 2.0
    async with http.get(f"{b.url}/healthz") as response:
        assert (await response.json())["redis"] == "up"
    assert problem_lines(caplog) == []
    warnings = [r.getMessage() for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert warnings
    assert all("\n" not in line for line in warnings)


@ALSO_ON_A_REDIS_CLUSTER
async def test_a_killed_node_loses_no_caller_on_a_surviving_node(
    make_node: MakeNode,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A hold that outlasts a loaded machine's delay in bringing the caller to it.
    a, b = await make_node("a", poll_hold_seconds=5.0), await make_node("b")
    camera = Camera(http, [a])
    held = await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, b, startTimestamp=4, endTimestamp=6))
    await wait_until(status_is(a, in_flight=1))  # delivered to the poll at a
    await held
    # Node a dies (no heartbeat, no inbox, no handover); b notices within NODE_TIMEOUT.
    await cluster(a).halt()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    dead = cluster(a).incarnation
    await wait_until(lambda: not cluster(b).is_alive(dead), timeout=1.5)
    assert loop.time() - killed_at <= 1.0  # NODE_TIMEOUT_SECONDS
    # The camera reconnects to b: the caller's work is handed to that poll.
    camera.poll_nodes = itertools.cycle([b])
    spawn(camera.run())
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[4:7])
    assert camera.commands[-1]["startTimestamp"] == 4
    # A caller whose camera does not come back gets 503 within CONNECT_TIMEOUT of detection.
    assert problem_lines(caplog) == []


async def test_a_killed_node_whose_camera_never_returns_means_503(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b = await make_node("a", poll_hold_seconds=5.0), await make_node("b")
    camera = Camera(http, [a])
    await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, b))
    await wait_until(status_is(a, in_flight=1))
    await cluster(a).halt()
    loop = asyncio.get_running_loop()
    dead = cluster(a).incarnation
    await wait_until(lambda: not cluster(b).is_alive(dead), timeout=1.5)
    detected_at = loop.time()
    status, body = await caller
    assert status == 503
    assert body["type"].endswith("camera-offline")
    assert loop.time() - detected_at <= 1.0 + 1.0


@ALSO_ON_A_REDIS_CLUSTER
async def test_a_node_stopping_hands_its_work_over(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    # A hold that outlasts a loaded machine's delay in bringing the caller to it.
    a, b = await make_node("a", poll_hold_seconds=5.0), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    busy = spawn(get_logs(http, a, startTimestamp=0, endTimestamp=0))
    _, command = await first
    on_b = spawn(get_logs(http, b, startTimestamp=5, endTimestamp=6))
    on_a = spawn(get_logs(http, a, startTimestamp=8, endTimestamp=9))
    await wait_until(status_is(a, waiting=2))
    idle = Camera(http, [a], camera_id="idle")
    idle_poll = spawn(idle.poll(a))
    await wait_until(polling_at(a, "idle"))
    # SIGTERM: held polls are answered noop; the work waits for the camera's next home.
    a.service.close()
    assert await idle_poll == (200, {"command": "noop"})
    camera.poll_nodes = itertools.cycle([b])
    spawn(camera.run())
    # The unanswered command is redelivered at b (same id), then the queued callers' one.
    results = await asyncio.gather(busy, on_b, on_a)
    assert [body["logs"] for _, body in results] == [LOGS[0:1], LOGS[5:7], LOGS[8:10]]
    assert camera.commands[0]["requestId"] == command["requestId"]
    assert (camera.commands[1]["startTimestamp"], camera.commands[1]["endTimestamp"]) == (5, 9)


async def test_a_big_result_crosses_as_a_key_and_every_key_has_a_ttl_and_the_prefix(
    make_live_server: MakeLiveServer,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
) -> None:
    make_node = node_maker(make_live_server, redis_server)  # one Redis: its keys scanned
    big = [{"timestamp": float(t), "description": "x" * 1000} for t in range(200)]
    assert len(orjson.dumps(big)) > 3 * INLINE_BODY_BYTES  # too big to travel in the message
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a], logs=big)
    spawn(camera.run())
    await wait_until(polling_at(a))
    status, body = await get_logs(http, b, startTimestamp=10, endTimestamp=189)
    assert (status, body["logs"]) == (200, big[10:190])
    prefix = cluster(a).cluster.prefix
    async with redis_client(redis_server) as redis:
        keys = [key.decode() async for key in redis.scan_iter(count=1000)]
        assert keys
        assert all(key.startswith((f"{prefix}:", f"{{{prefix}:")) for key in keys)
        for key in keys:
            ttl = await redis.pttl(key)
            assert ttl > 0 or ttl == -2, key  # -2: it expired since it was listed
    # the result's key was read and deleted by the node it was for
    assert not [key for key in keys if ":body:" in key]


@pytest.mark.redis
async def test_a_redis_cluster_primary_fails_over_and_then_loses_its_data(
    redis_cluster: LocalRedisCluster,
    make_live_server: MakeLiveServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = redis_cluster  # the session's: each primary has a replica to fail over to
    make_node = node_maker(make_live_server, redis)
    a, b = await make_node("a"), await make_node("b")
    cameras = [Camera(http, [a], camera_id=f"cam-{n}") for n in range(4)]
    for camera in cameras:
        spawn(camera.run())
    for camera in cameras:
        await wait_until(polling_at(a, camera.camera_id))
    loop = asyncio.get_running_loop()

    async def all_served_from_b() -> bool:
        for camera in cameras:
            status, _ = await get_logs(
                http, b, camera_id=camera.camera_id, startTimestamp=2, endTimestamp=2
            )
            if status != 200:
                return False
        return True

    assert await all_served_from_b()
    for event in ("failover", "flush"):
        if event == "failover":
            await redis.failover()
        else:
            await redis.flush()  # every primary restarted empty, as far as the nodes see
        since = loop.time()
        async with asyncio.timeout(1.0 + 1.0 + 1.0):  # POLL_HOLD + NODE_TIMEOUT (+1 s)
            while not await all_served_from_b():
                await asyncio.sleep(0.05)
        assert loop.time() - since <= 3.0, event
        async with http.get(f"{b.url}/cameras") as response:
            listed = [c["cameraId"] for c in (await response.json())["cameras"]]
        assert listed == [camera.camera_id for camera in cameras], event
    assert problem_lines(caplog) == []
