"""Cluster races: messages that arrive late, and nodes that stop while work moves to them.

Nodes from ``create_app`` in one event loop, one real Redis (see ``test_cluster``).
"""

from __future__ import annotations

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
    # d's takeover for its older poll, arriving late at a
    caplog.set_level(logging.INFO, "camrelay.cluster")
    cluster(d).bus.post("a", m.Takeover(camera="cam", to="d", seq=seq_of_d))
    await wait_until(lambda: "ignored a takeover" in caplog.text)
    # The newest poll stays held at a and serves a caller on another node.
    assert not third.done()
    caller = spawn(get_logs(http, b, startTimestamp=1, endTimestamp=2))
    status, command = await third
    assert status == 200
    assert command["command"] == "send_logs"
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
    caplog.set_level(logging.INFO, "camrelay.cluster")
    cluster(d).bus.post("a", m.Takeover(camera="cam", to="d", seq=claim_of_d.seq))
    await wait_until(lambda: "ignored a takeover" in caplog.text)
    assert not third.done()
    caller = spawn(get_logs(http, b, startTimestamp=3, endTimestamp=3))
    status, command = await third
    assert (status, command["command"]) == (200, "send_logs")
    await camera.post(a, {"requestId": command["requestId"], "logs": LOGS[3:4]})
    status, body = await caller
    assert (status, body["logs"]) == (200, LOGS[3:4])


def claim_seq_of(node: LiveServer, camera_id: str = "cam") -> int:
    """The latest claim of the camera that ``node`` knows of."""
    return cluster(node)._claim_seqs.get(camera_id, 0)
