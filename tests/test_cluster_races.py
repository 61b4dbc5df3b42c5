"""Cluster races: messages that arrive late, and nodes that stop while work moves to them.

Nodes from ``create_app`` in one event loop, one real Redis (see ``test_cluster``).
The tests see a node through its public surface (``ClusterNode``: ``incarnation``,
``relay``, ``is_home``, ``debug_sizes``, ``budget``, ``close``); a late or stray
message is injected as the transport sends one (``XADD`` of the encoded header into
the node's inbox stream), and the store is read with a plain Redis client, by the key
layout of ``server.cluster.redis.keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from server.cluster import knownhomes
from server.cluster import messages as m
from server.cluster.backend import StatusWrite, StoreLimits
from server.cluster.identity import name_of
from server.cluster.redis import RedisBackend
from server.cluster.redis.directory import CLAIM, entry_fields
from server.cluster.redis.keys import Keys, shard_of
from server.relay import CameraStatus
from server.state import get_metrics
from tests.conftest import LiveServer, MakeLiveServer
from tests.helpers import wait_until
from tests.test_cluster import (
    LOGS,
    Camera,
    MakeNode,
    Spawn,
    cluster,
    get_logs,
    held_poll,
    http,
    node_maker,
    polling_at,
    redis_client,
    spawn,
)
from tools.redis_server import RedisServer

__all__ = ["http", "spawn"]  # the fixtures of test_cluster

#: every test here runs its nodes on a real redis-server
pytestmark = pytest.mark.redis


@pytest.fixture
def make_node(make_live_server: MakeLiveServer, redis_server: RedisServer) -> MakeNode:
    """One Redis only: these tests read and write its keys directly."""
    return node_maker(make_live_server, redis_server)


def keys_of(node: LiveServer) -> Keys:
    return Keys(cluster(node).cluster.prefix)


@contextlib.asynccontextmanager
async def camera_polling(camera: Camera, node: LiveServer) -> AsyncIterator[None]:
    """The camera keeps polling ``node`` (nothing else to do) meanwhile."""
    task = asyncio.ensure_future(camera.run())
    try:
        await wait_until(polling_at(node, camera.camera_id))
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def stored_entry(redis: Redis, node: LiveServer, camera_id: str = "cam") -> dict[str, str]:
    """The camera's entry as the store has it, field by field ({}: none)."""
    value = await redis.hget(keys_of(node).entries(shard_of(camera_id)), camera_id)
    return {} if value is None else entry_fields(value)


async def stored_home(redis: Redis, node: LiveServer, camera_id: str = "cam") -> tuple[str, int]:
    """The camera's home and latest claim ``seq`` as the store has them."""
    fields = await stored_entry(redis, node, camera_id)
    assert fields, f"no entry for {camera_id!r}"
    return fields["home"], int(fields["seq"])


async def wait_for_store(
    redis: Redis, node: LiveServer, check: Any, camera_id: str = "cam", timeout: float = 3.0
) -> tuple[str, int]:
    """Read the camera's (home, seq) until ``check`` accepts it."""
    fields = await wait_for_entry(
        redis, node, lambda f: bool(f) and check((f["home"], int(f["seq"]))), camera_id, timeout
    )
    return fields["home"], int(fields["seq"])


async def inject(redis: Redis, to: LiveServer, message: m.Message) -> None:
    """Put ``message`` in the inbox of ``to``'s node name, as another node's transport does
    (sender, dest and camera as the message says)."""
    inbox = keys_of(to).inbox(name_of(cluster(to).incarnation))
    await redis.xadd(inbox, {b"m": m.encode(message)})


async def test_a_takeover_older_than_the_newest_poll_is_ignored(
    make_node: MakeNode,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The camera polls a, then d, then a again (two devices sharing an id, or a load
    # balancer bouncing it); d's takeover reaches a only after that newest poll.
    a, d, b = await make_node("a"), await make_node("d"), await make_node("b")
    camera = Camera(http, [a])
    async with redis_client(redis_server) as redis:
        first = await held_poll(spawn, camera, a)
        second = spawn(camera.poll(d))
        assert (await first)[0] == 409
        await wait_until(polling_at(d))
        home, seq_of_d = await stored_home(redis, d)
        assert home == cluster(d).incarnation
        third = spawn(camera.poll(a))
        status, body = await second  # the older poll, at d, loses within a second
        assert (status, body["type"]) == (409, "urn:camrelay:problem:poll-superseded")
        await wait_until(polling_at(a))
        home, seq_of_a = await stored_home(redis, a)
        assert (home, seq_of_a > seq_of_d) == (cluster(a).incarnation, True)
        await late_takeover_is_ignored(
            http, redis, spawn, caplog, camera, third, (a, d, b), seq_of_d
        )


async def late_takeover_is_ignored(
    http: aiohttp.ClientSession,
    redis: Redis,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
    camera: Camera,
    newest: asyncio.Future[tuple[int, dict[str, Any]]],
    nodes: tuple[LiveServer, LiveServer, LiveServer],
    seq_of_d: int,
    *,
    claimed_back: bool = False,
) -> None:
    """d's takeover for its older poll reaches a late: a ignores it, and the newest poll
    stays held at a and serves a caller on b. ``claimed_back``: d's claim is later than
    a's (a's newest poll is at its home, which wrote nothing): a claims the camera back."""
    a, d, b = nodes
    caplog.set_level(logging.INFO, "camrelay.cluster")
    late = m.Takeover(
        sender=cluster(d).incarnation,
        dest=cluster(a).incarnation,
        camera="cam",
        to=cluster(d).incarnation,
        seq=seq_of_d,
    )
    await inject(redis, a, late)
    if claimed_back:
        await wait_until(lambda: "a poll held here is newer" in caplog.text)
        await wait_for_store(
            redis,
            a,
            lambda found: found == (cluster(a).incarnation, found[1]) and found[1] > seq_of_d,
        )
    else:
        await wait_until(lambda: "ignored a takeover" in caplog.text)
    assert not newest.done()
    assert cluster(a).is_home("cam")
    assert not cluster(d).is_home("cam")
    caller = spawn(get_logs(http, b, startTimestamp=1, endTimestamp=2))
    status, command = await newest
    assert (status, command["command"]) == (200, "send_logs")
    await camera.post(a, {"requestId": command["requestId"], "logs": LOGS[1:3]})
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[1:3])


async def test_a_newer_poll_at_the_home_outranks_a_claim_whose_takeover_is_late(
    make_node: MakeNode,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The camera polls a (held), then d, then a again before d's takeover reaches a:
    # d's claim is in Redis (made here with the directory's own claim script, as d made
    # it for that poll), its takeover still on the way. a's newest poll arrived after d's
    # claim: a keeps it and claims the camera back when the takeover comes.
    a, d, b = await make_node("a"), await make_node("d"), await make_node("b")
    camera = Camera(http, [a])
    async with redis_client(redis_server) as redis:
        first = await held_poll(spawn, camera, a)
        await wait_for_store(redis, a, lambda found: found[0] == cluster(a).incarnation)
        keys = keys_of(d)
        shard = shard_of("cam")
        old, _parked, seq_of_d, refused, _live, _scanned = await redis.eval(
            CLAIM.text,
            5,
            keys.entries(shard),
            keys.ids(shard),
            keys.due(shard),
            keys.parked("cam"),
            keys.sweep(shard),
            cluster(d).incarnation,
            int(time.time() * 1000),
            "cam",
            0,
            1000,
            60_000,
            60_000,
            16,
            10,
            300_000,
            256,
            60_000,
        )
        assert (old.decode(), refused) == (cluster(a).incarnation, 0)
        seq_of_d = int(seq_of_d)
        third = spawn(camera.poll(a))
        assert (await first)[0] == 409
        # A poll at its home costs Redis nothing: d is still the home there.
        await wait_until(polling_at(a))
        assert await stored_home(redis, a) == (cluster(d).incarnation, seq_of_d)
        await late_takeover_is_ignored(
            http, redis, spawn, caplog, camera, third, (a, d, b), seq_of_d, claimed_back=True
        )


async def test_a_message_for_an_earlier_run_of_a_node_is_dropped(
    make_node: MakeNode, redis_server: RedisServer, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    # The inbox is named by NODE_NAME: a message sent to an earlier incarnation of "a"
    # lands in the same stream, and the running incarnation drops it.
    a = await make_node("a")
    camera = Camera(http, [a])
    held = await held_poll(spawn, camera, a)
    earlier = "a~" + "0" * 12
    assert earlier != cluster(a).incarnation
    takeover = m.Takeover(sender="x~1", camera="cam", to="x~1", seq=0)  # seq 0: always obeyed
    async with redis_client(redis_server) as redis:
        await inject(redis, a, dataclasses.replace(takeover, dest=earlier))
        # The same takeover for the running incarnation, sent after it: once that one has
        # taken effect, the first was read (one stream, in order) and changed nothing.
        assert not held.done()
        await inject(redis, a, dataclasses.replace(takeover, dest=cluster(a).incarnation))
        status, body = await held
    assert (status, body["type"]) == (409, "urn:camrelay:problem:poll-superseded")
    assert not cluster(a).is_home("cam")


async def test_work_handed_over_to_a_node_that_is_stopping_is_parked_for_the_next_home(
    make_node: MakeNode, redis_server: RedisServer, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    camera = Camera(http, [c])
    first = await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, c, startTimestamp=4, endTimestamp=6))
    status, command = await first  # delivered at a, not answered yet
    assert (status, command["command"]) == (200, "send_logs")
    # The camera polls b, which starts stopping (SIGTERM) as it claims the camera:
    # a's handover reaches b after b stopped.
    polled_b = spawn(camera.poll(b))
    async with asyncio.timeout(3.0):
        while not cluster(b).debug_sizes()["claims"]:
            await asyncio.sleep(0)
    cluster(b).close()
    assert (await polled_b)[0] == 503
    # b parks the work for the camera's next home: the store holds it, nobody is home.
    async with redis_client(redis_server) as redis:
        parked = keys_of(b).parked("cam")
        await wait_until_async(lambda: redis.exists(parked))
        assert (await stored_home(redis, b))[0] == ""
    await wait_until(lambda: cluster(b).debug_sizes()["parking"] == 0)
    assert not cluster(a).is_home("cam")
    assert not cluster(b).is_home("cam")
    # The camera polls c: the unanswered command is redelivered (same id), not lost.
    spawn(camera.run())
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[4:7])
    assert [c["requestId"] for c in camera.commands] == [command["requestId"]]


async def wait_until_async(check: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.005)


FORWARDED = "camrelay_cluster_forwarded_total"


async def test_a_caller_sent_to_a_node_that_is_stopping_waits_for_the_next_home(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    camera = Camera(http, [c])
    first = await held_poll(spawn, camera, a)
    busy = spawn(get_logs(http, a, startTimestamp=8, endTimestamp=9))
    status, command = await first  # delivered at a, not answered yet
    assert (status, command["command"]) == (200, "send_logs")
    # A caller on b is sent to a, which starts stopping (SIGTERM) before it arrives:
    # b counts the enqueue as it hands it to its courier (in this loop turn, with the
    # caller's home set to a), and a starts stopping before it is even written.
    metrics = get_metrics(b.app).registry
    caller = spawn(get_logs(http, b, startTimestamp=4, endTimestamp=6))
    async with asyncio.timeout(3.0):
        while not metrics.get_sample_value(FORWARDED, {"kind": "enqueue"}):
            await asyncio.sleep(0)
    cluster(a).close()
    await wait_until(lambda: cluster(a).debug_sizes()["parking"] == 0)
    # The camera reconnects to c, which adopts the work a parked; b's caller, told by a
    # that its work waits for the camera's next home, is placed there.
    spawn(camera.run())
    results = await asyncio.gather(busy, caller)
    assert [(status, body.get("logs", body)) for status, body in results] == [
        (200, LOGS[8:10]),
        (200, LOGS[4:7]),
    ]
    assert camera.commands[0]["requestId"] == command["requestId"]


BUDGET = 1_000_000


async def test_a_result_reaching_the_callers_node_waits_for_room_in_its_budget(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a = await make_node("a")
    b = await make_node("b", max_result_bytes_in_flight=BUDGET, max_upload_bytes=BUDGET)
    camera = Camera(http, [a])
    spawn(camera.run())
    await wait_until(polling_at(a))
    full = await cluster(b).budget.reserve(BUDGET)  # results held for other callers
    caller = spawn(get_logs(http, b, startTimestamp=2, endTimestamp=3))
    await wait_until(lambda: cluster(b).budget.waiting == 1)
    assert not caller.done()
    full.release()
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[2:4])
    await wait_until(lambda: cluster(b).budget.in_use == 0)


async def test_a_result_forwarded_to_the_home_waits_for_room_in_its_budget(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a = await make_node("a", max_result_bytes_in_flight=BUDGET, max_upload_bytes=BUDGET)
    b = await make_node("b")
    camera = Camera(http, [a], post_at=b)
    spawn(camera.run())
    await wait_until(polling_at(a))
    full = await cluster(a).budget.reserve(BUDGET)
    caller = spawn(get_logs(http, a, startTimestamp=5, endTimestamp=5))
    await wait_until(lambda: cluster(a).budget.waiting == 1)
    assert not caller.done()
    full.release()
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[5:6])
    await wait_until(lambda: bool(camera.post_answers))
    assert camera.post_answers[0][0] == 200
    await wait_until(lambda: cluster(a).budget.in_use == 0)


async def test_a_big_result_stays_in_redis_until_the_callers_node_has_room_for_it(
    make_node: MakeNode, redis_server: RedisServer, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    big = [{"timestamp": float(t), "description": "x" * 1000} for t in range(200)]
    a = await make_node("a")
    b = await make_node("b", max_result_bytes_in_flight=BUDGET, max_upload_bytes=BUDGET)
    camera = Camera(http, [a], logs=big)
    spawn(camera.run())
    await wait_until(polling_at(a))
    full = await cluster(b).budget.reserve(BUDGET)
    caller = spawn(get_logs(http, b, startTimestamp=0, endTimestamp=199))
    await wait_until(lambda: cluster(b).budget.waiting == 1)
    bodies = keys_of(b).body("*")
    async with redis_client(redis_server) as redis:
        assert [key async for key in redis.scan_iter(match=bodies)]
        full.release()
        status, body = await caller
        assert (status, body["logs"]) == (200, big)
        assert not [key async for key in redis.scan_iter(match=bodies)]


async def test_of_two_polls_on_two_nodes_at_once_one_wins_everywhere(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, d, b = await make_node("a"), await make_node("d"), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    loop = asyncio.get_running_loop()
    started = loop.time()
    polls = [spawn(camera.poll(d)), spawn(camera.poll(a))]
    assert (await first)[0] == 409
    done, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
    assert loop.time() - started < 1.0
    (loser,) = done
    assert (await loser)[0] == 409
    (winner,) = [poll for poll in polls if poll is not loser]
    caller = spawn(get_logs(http, b, startTimestamp=0, endTimestamp=0))
    status, command = await winner
    assert (status, command["command"]) == (200, "send_logs")
    home = d if polls[0] is winner else a
    await camera.post(home, {"requestId": command["requestId"], "logs": LOGS[0:1]})
    assert (await caller)[1]["logs"] == LOGS[0:1]


async def test_a_poll_held_at_a_home_that_died_leaves_redis_once_expired(
    make_node: MakeNode, redis_server: RedisServer
) -> None:
    # The entry a dead home left: claimed by its poll, never written again. It is in no
    # expiry index (its poll is held), so only the nodes' sweep of the shards finds it.
    a = await make_node("a", connect_timeout_seconds=0.2)
    short = StoreLimits(
        node_timeout_seconds=1.0,
        max_cameras=10,
        answered_retention_seconds=0.1,
        unanswered_retention_seconds=0.1,
        message_ttl_seconds=1.0,
        status_refresh_seconds=0.1,
    )
    prefix = cluster(a).cluster.prefix
    # A camera of the same shard, kept long: the shard's keys outlive the left entry.
    kept = next(f"kept-{n}" for n in range(1000) if shard_of(f"kept-{n}") == shard_of("left"))
    dead = RedisBackend.from_url(redis_server.url, prefix, short)
    alive = RedisBackend.from_url(
        redis_server.url, prefix, dataclasses.replace(short, answered_retention_seconds=60.0)
    )
    try:
        await dead.directory.claim(["left"], "gone~0000", again=False)
        [claim] = await alive.directory.claim([kept], "here~0000", again=False)
        status = CameraStatus(kept, True, time.time(), True, 0, 0)
        await alive.directory.write_status(
            "here~0000", [StatusWrite(status, expect=True, answered=True, seq=claim.seq)]
        )
    finally:
        await dead.close()
        await alive.close()
    async with redis_client(redis_server) as redis:
        assert (await stored_entry(redis, a, "left"))["polling"] == "1"
        async with asyncio.timeout(3.0):
            while await stored_entry(redis, a, "left"):
                await asyncio.sleep(0.02)
        shard = shard_of("left")
        assert await redis.zscore(keys_of(a).ids(shard), "left") is None
        assert await stored_entry(redis, a, kept)


async def test_an_idle_camera_polling_its_home_writes_nothing_to_redis(
    make_node: MakeNode, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    a = await make_node("a", poll_hold_seconds=0.3)
    b = await make_node("b", poll_hold_seconds=0.3)
    camera = Camera(http, [a])
    async with redis_client(redis_server) as redis, camera_polling(camera, a):
        # The claim, then the first status write (what the home knows) land.
        async with asyncio.timeout(3.0):
            while not (stored := await stored_entry(redis, a)).get("waiting"):
                await asyncio.sleep(0.005)
        assert (stored["home"], stored["polling"]) == (cluster(a).incarnation, "1")
        polls = camera.polls
        await wait_until(lambda: camera.polls >= polls + 4)  # four polls end, four come
        assert await stored_entry(redis, a) == stored, "nothing written for the idle polls"
        async with http.get(f"{b.url}/cameras") as response:
            [listed] = (await response.json())["cameras"]
    # Seen throughout its held poll: no older than a's last heartbeat as b knows it.
    assert (listed["online"], listed["polling"]) == (True, True)
    assert time.time() - listed["lastSeen"] <= 1.0 + 0.5
    assert listed["lastSeen"] > int(stored["seen"]) / 1000


HOME_LOOKUPS = "camrelay_cluster_home_lookups_total"


def home_lookups(node: LiveServer, source: str) -> float:
    """Cross-node calls of ``node`` whose camera's home it found in the store or knew."""
    return get_metrics(node.app).registry.get_sample_value(HOME_LOOKUPS, {"source": source}) or 0.0


def passed_on(node: LiveServer) -> float:
    """Callers' work ``node`` passed on to the camera's current home."""
    value = get_metrics(node.app).registry.get_sample_value(FORWARDED, {"kind": "passed-on"})
    return value or 0.0


async def test_a_second_cross_node_call_soon_after_the_first_reads_no_entry(
    make_node: MakeNode, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knownhomes, "KNOWN_HOME_SECONDS", 30.0)  # however slow the machine
    a, b = await make_node("a"), await make_node("b")
    camera = Camera(http, [a])
    async with camera_polling(camera, a):
        assert await get_logs(http, b, startTimestamp=1, endTimestamp=2) == (
            200,
            {
                "cameraId": "cam",
                "startTimestamp": 1,
                "endTimestamp": 2,
                "count": 2,
                "logs": LOGS[1:3],
            },
        )
        assert (home_lookups(b, "store"), home_lookups(b, "known")) == (1, 0)
        status, body = await get_logs(http, b, startTimestamp=7, endTimestamp=9)
        assert (status, body["logs"]) == (200, LOGS[7:10])
        # The second went to the home b knew, without reading the store.
        assert (home_lookups(b, "store"), home_lookups(b, "known")) == (1, 1)


async def test_a_caller_sent_to_the_home_a_camera_left_is_served_by_its_new_home(
    make_node: MakeNode, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knownhomes, "KNOWN_HOME_SECONDS", 30.0)
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    camera = Camera(http, [a])
    other_logs = [{"timestamp": float(t), "description": f"other {t}"} for t in range(10)]
    other = Camera(http, [a], camera_id="other", logs=other_logs)
    async with camera_polling(other, a):
        async with camera_polling(camera, a):
            status, body = await get_logs(http, b, startTimestamp=0, endTimestamp=1)
            assert (status, body["logs"]) == (200, LOGS[:2])  # b learns that a is its home
        # The camera moves to c: its newest poll wins there.
        moved = Camera(http, [c])
        async with camera_polling(moved, c):
            await wait_until(lambda: not cluster(a).relay.has_session("cam"))
            # b still sends to a, which passes the work on to c and tells b.
            status, body = await get_logs(http, b, startTimestamp=3, endTimestamp=5)
            assert (status, body) == (
                200,
                {
                    "cameraId": "cam",
                    "startTimestamp": 3,
                    "endTimestamp": 5,
                    "count": 3,
                    "logs": LOGS[3:6],
                },
            )
            served = moved.commands[-1]
            assert (served["startTimestamp"], served["endTimestamp"]) == (3, 5)  # at c
            assert (passed_on(a), home_lookups(b, "known")) == (1, 1)
            # b now knows c (or reads the store while c is new to it): not a again.
            status, body = await get_logs(http, b, startTimestamp=8, endTimestamp=9)
            assert (status, body["logs"]) == (200, LOGS[8:10])
            assert passed_on(a) == 1
        status, body = await get_logs(http, b, camera_id="other")
        assert (status, body["logs"]) == (200, other_logs)


async def test_a_camera_gone_offline_at_the_home_a_node_knew_is_503_from_that_home(
    make_node: MakeNode, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(knownhomes, "KNOWN_HOME_SECONDS", 30.0)
    a = await make_node("a", connect_timeout_seconds=0.3)
    b = await make_node("b", connect_timeout_seconds=0.3)
    camera = Camera(http, [a])
    async with camera_polling(camera, a):
        assert (await get_logs(http, b))[0] == 200
    await wait_until(lambda: not a.relay.cameras()[0].online, timeout=3)
    status, body = await get_logs(http, b)
    assert home_lookups(b, "known") == 1  # a, the home b knew, answered
    assert status == 503
    assert body["type"].endswith("camera-offline")
    assert "offline" in body["detail"]


async def cameras_on(http: aiohttp.ClientSession, node: LiveServer) -> dict[str, dict[str, Any]]:
    async with http.get(f"{node.url}/cameras") as response:
        return {c["cameraId"]: c for c in (await response.json())["cameras"]}


async def test_a_home_that_stops_writes_its_polls_ended_so_others_see_the_camera_seen(
    make_node: MakeNode, redis_server: RedisServer, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    """An idle camera's entry is written when it is claimed, then only refreshed. A home
    that stops answers its held polls: it writes their end at once, so that other nodes
    see the camera seen until then (a caller waits for it, as the camera reconnects) and
    forget an id that never answered one short retention later, not once the entry's
    refresh interval has passed."""
    a = await make_node("a", poll_hold_seconds=3.0, connect_timeout_seconds=0.3)
    b = await make_node("b", connect_timeout_seconds=0.3)
    camera = Camera(http, [a])
    poll = await held_poll(spawn, camera, a)
    claimed_at = time.time()
    # idle at a, its poll held, past CONNECT_TIMEOUT (0.3 s): its entry's seen time is
    # that old by then
    await wait_until(lambda: time.time() - claimed_at > 0.4, timeout=2.0)
    stopped_at = time.time()
    cluster(a).close()  # SIGTERM
    assert await poll == (200, {"command": "noop"})
    async with redis_client(redis_server) as redis:
        fields = await wait_for_entry(redis, a, lambda f: f.get("polling") == "0")
    assert int(fields["seen"]) / 1000 >= stopped_at - 0.01
    retention = cluster(a).config.unanswered_retention_seconds  # POLL_HOLD + CONNECT
    assert int(fields["exp"]) / 1000 <= time.time() + retention + 0.1
    listed = (await cameras_on(http, b))["cam"]
    assert (listed["online"], listed["polling"]) == (True, False)
    assert listed["lastSeen"] >= stopped_at - 0.01
    # A caller on b waits for the camera (seen just now), which reconnects to b.
    caller = spawn(get_logs(http, b))
    camera.poll_nodes = itertools.cycle([b])
    spawn(camera.run())
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS)


async def test_a_camera_whose_home_was_killed_counts_as_seen_until_its_last_beat(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    """Its poll was held until the home died: a caller on another node waits for the
    camera to come back (within CONNECT_TIMEOUT of the home's last beat), it is not
    answered 503 at once from the entry's seen time, written when the camera was
    claimed."""
    timings = {"connect_timeout_seconds": 1.5, "node_timeout_seconds": 0.6}
    a, b = await make_node("a", **timings), await make_node("b", **timings)
    camera = Camera(http, [a])
    await held_poll(spawn, camera, a)
    claimed_at = time.time()
    await wait_until(lambda: time.time() - claimed_at > 1.6, timeout=2.5)
    await cluster(a).halt()  # SIGKILL: no handover, no last write
    killed_at = time.time()
    dead = cluster(a).incarnation
    await wait_until(lambda: not cluster(b).is_alive(dead), timeout=1.5)
    listed = (await cameras_on(http, b))["cam"]
    assert listed["polling"] is False
    assert killed_at - 0.6 <= listed["lastSeen"] <= killed_at, (listed, claimed_at, killed_at)
    caller = spawn(get_logs(http, b))
    camera.poll_nodes = itertools.cycle([b])
    spawn(camera.run())
    status, body = await caller
    assert (status, body.get("logs")) == (200, LOGS), body


@pytest.mark.parametrize("with_request_id", [True, False], ids=["with-id", "id-less"])
async def test_a_result_for_work_a_stopped_home_parked_is_taken_by_the_node_it_reaches(
    make_node: MakeNode,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    with_request_id: bool,
) -> None:
    """A result is accepted on any node: one posted after its home stopped, before the
    camera polled again, is taken by the node it reaches, which takes the camera over
    with the work the home parked (as the camera's next poll would)."""
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    camera = Camera(http, [a])
    poll = await held_poll(spawn, camera, a)
    caller = spawn(get_logs(http, c, startTimestamp=2, endTimestamp=4))
    status, command = await poll  # delivered at a; the camera reads its log
    assert (status, command["command"]) == (200, "send_logs")
    cluster(a).close()  # SIGTERM before the camera answers
    async with redis_client(redis_server) as redis:
        await wait_for_store(redis, a, lambda found: found[0] == "")
    body: dict[str, Any] = {"logs": LOGS}
    if with_request_id:
        body["requestId"] = command["requestId"]
    status, receipt = await camera.post(b, body)
    assert (status, receipt["status"], receipt["requestId"]) == (
        200,
        "accepted",
        command["requestId"],
    )
    assert cluster(b).is_home("cam")
    status, answer = await caller
    assert (status, answer["logs"]) == (200, LOGS[2:5])


async def wait_for_entry(
    redis: Redis, node: LiveServer, check: Any, camera_id: str = "cam", timeout: float = 3.0
) -> dict[str, str]:
    """Read the camera's entry until ``check`` accepts its fields."""
    async with asyncio.timeout(timeout):
        while not check(fields := await stored_entry(redis, node, camera_id)):
            await asyncio.sleep(0.005)
    return fields


async def test_a_killed_homes_camera_that_never_answered_frees_its_place_within_a_retention(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    """MAX_CAMERAS holds for what Redis keeps: the entry a killed home left polling is
    ended at that home's last beat by a node that saw it die, so an id that never
    answered is forgotten one short retention later (not after the entry's 5-minute
    refresh interval), and a new id takes its place."""
    limits = {"max_cameras": 1, "camera_refusal_delay_seconds": 0.05}
    a, b = await make_node("a", **limits), await make_node("b", **limits)
    old = Camera(http, [a], camera_id="old")
    await held_poll(spawn, old, a)
    await cluster(a).halt()  # SIGKILL: no handover, no last write
    killed_at = time.time()
    dead = cluster(a).incarnation
    await wait_until(lambda: not cluster(b).is_alive(dead), timeout=1.5)
    new = Camera(http, [b], camera_id="new")
    admitted = polling_at(b, "new")
    async with asyncio.timeout(5.0):
        while not admitted():
            poll = spawn(new.poll(b))
            while not (admitted() or poll.done()):
                await asyncio.sleep(0.005)
            if poll.done():
                status, problem = poll.result()
                assert (status, problem["type"]) == (503, "urn:camrelay:problem:registry-full")
    retention = cluster(b).config.unanswered_retention_seconds  # POLL_HOLD + CONNECT
    assert time.time() - killed_at <= retention + 1.0
