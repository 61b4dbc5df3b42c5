"""Cluster races: messages that arrive late, and nodes that stop while work moves to them.

Nodes from ``create_app`` in one event loop, one real Redis (see ``test_cluster``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from server.cluster import messages as m
from tests.conftest import LiveServer
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
    make_node,
    polling_at,
    spawn,
)

__all__ = ["http", "make_node", "spawn"]  # the fixtures of test_cluster


async def claim_seq(node: LiveServer, camera_id: str = "cam") -> int:
    redis = cluster(node).registry
    seq = await cluster(node).bus.redis.hget(redis.camera_key(camera_id), "seq")
    assert seq is not None
    return int(seq)


async def test_a_takeover_older_than_the_newest_poll_is_ignored(
    make_node: MakeNode,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The camera polls a, then d, then a again (two devices sharing an id, or a load
    # balancer bouncing it); d's takeover reaches a only after that newest poll.
    a, d, b = await make_node("a"), await make_node("d"), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    second = spawn(camera.poll(d))
    assert (await first)[0] == 409
    await wait_until(polling_at(d))
    seq_of_d = await claim_seq(d)
    third = spawn(camera.poll(a))
    status, body = await second  # the older poll, at d, loses within a second
    assert (status, body["type"]) == (409, "urn:camrelay:problem:poll-superseded")
    await wait_until(polling_at(a))
    assert await claim_seq(a) > seq_of_d
    await late_takeover_is_ignored(http, spawn, caplog, camera, third, (a, d, b), seq_of_d)


async def late_takeover_is_ignored(
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
    camera: Camera,
    newest: asyncio.Future[tuple[int, dict[str, Any]]],
    nodes: tuple[LiveServer, LiveServer, LiveServer],
    seq_of_d: int,
) -> None:
    """d's takeover for its older poll reaches a late: a ignores it, and the newest poll
    stays held at a and serves a caller on b."""
    a, d, b = nodes
    caplog.set_level(logging.INFO, "camrelay.cluster")
    cluster(d).bus.post("a", m.Takeover(camera="cam", to="d", seq=seq_of_d))
    await wait_until(lambda: "ignored a takeover" in caplog.text)
    assert not newest.done()
    caller = spawn(get_logs(http, b, startTimestamp=1, endTimestamp=2))
    status, command = await newest
    assert (status, command["command"]) == (200, "send_logs")
    await camera.post(a, {"requestId": command["requestId"], "logs": LOGS[1:3]})
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[1:3])


async def test_a_newer_poll_at_the_home_outranks_a_claim_whose_takeover_is_late(
    make_node: MakeNode,
    http: aiohttp.ClientSession,
    spawn: Spawn[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The camera polls a (held), then d, then a again before d's takeover reaches a:
    # d's claim is in Redis (made here directly, as d made it for that poll), its
    # takeover still on the way.
    a, d, b = await make_node("a"), await make_node("d"), await make_node("b")
    camera = Camera(http, [a])
    first = await held_poll(spawn, camera, a)
    (claim_of_d,) = await cluster(d).registry.claim_each(["cam"])
    third = spawn(camera.poll(a))
    assert (await first)[0] == 409
    await wait_until(lambda: claim_seq_of(a) > claim_of_d.seq)
    await late_takeover_is_ignored(http, spawn, caplog, camera, third, (a, d, b), claim_of_d.seq)


def claim_seq_of(node: LiveServer, camera_id: str = "cam") -> int:
    """The latest claim of the camera that ``node`` knows of."""
    return cluster(node)._claim_seqs.get(camera_id, 0)


async def test_work_handed_over_to_a_node_that_is_stopping_is_parked_for_the_next_home(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
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
        while "cam" not in cluster(b)._claims:
            await asyncio.sleep(0)
    b.relay.close()
    assert (await polled_b)[0] == 503
    await wait_until(lambda: "cam" not in cluster(b)._parking)
    # The camera polls c: the unanswered command is redelivered (same id), not lost.
    spawn(camera.run())
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[4:7])
    assert [c["requestId"] for c in camera.commands] == [command["requestId"]]


async def test_a_caller_sent_to_a_node_that_is_stopping_waits_for_the_next_home(
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    camera = Camera(http, [c])
    first = await held_poll(spawn, camera, a)
    busy = spawn(get_logs(http, a, startTimestamp=8, endTimestamp=9))
    status, command = await first  # delivered at a, not answered yet
    assert (status, command["command"]) == (200, "send_logs")
    # A caller on b is sent to a, which starts stopping (SIGTERM) before it arrives.
    caller = spawn(get_logs(http, b, startTimestamp=4, endTimestamp=6))
    async with asyncio.timeout(3.0):
        while not any(w.home == "a" for w in cluster(b)._waiters.values()):
            await asyncio.sleep(0)
    a.relay.close()
    await wait_until(lambda: not cluster(a)._parking)
    spawn(camera.run())
    results = await asyncio.gather(busy, caller)
    assert [(status, body["logs"]) for status, body in results] == [
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
    make_node: MakeNode, http: aiohttp.ClientSession, spawn: Spawn[Any]
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
    redis = cluster(b).bus.redis
    assert [key async for key in redis.scan_iter(match=f"{cluster(b).bus.prefix}:blob:*")]
    full.release()
    status, body = await caller
    assert (status, body["logs"]) == (200, big)
    assert not [key async for key in redis.scan_iter(match=f"{cluster(b).bus.prefix}:blob:*")]


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
