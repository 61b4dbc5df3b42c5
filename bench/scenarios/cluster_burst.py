"""cluster-burst: the ``burst`` scenario with its callers spread over two nodes.

Two nodes share a Redis; the bench camera polls node 1. Every burst sends half
of its N ``/logs`` (distinct ranges) to node 1 and half to node 2, all written
before any answer is read. Callers queued on either node when a poll takes
work share one command, so the burst costs the round trips it costs on one
node; each answer is checked entry by entry.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from yarl import URL

from bench.fixtures import RelayServer, log_camera, redis_server, relay_nodes
from bench.http import Reply
from bench.plan import Context, Scenario
from bench.rawhttp import Connection, close_pool, open_pool, send_all
from bench.result import ScenarioResult
from bench.scenarios.burst import INEXACT, burst_requests, check
from bench.stats import median
from tools.procs import HOST

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "cluster-burst"
CAMERA_ID: Final = "burst"


@dataclass(frozen=True, slots=True)
class Params:
    """The cluster-burst scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: concurrent /logs per burst (half on each node), bursts, entries in the camera's log
    size: int
    rounds: int
    entries: int


FULL: Final = Params(size=1000, rounds=3, entries=2000)
QUICK: Final = Params(size=50, rounds=1, entries=200)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    targets, answers = burst_requests(params.entries, params.size, CAMERA_ID)
    half = len(targets) // 2
    walls: list[float] = []
    trips: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        nodes = await stack.enter_async_context(relay_nodes(ctx, 2, redis.url))
        camera = await stack.enter_async_context(
            log_camera(ctx, nodes[0], params.entries, CAMERA_ID)
        )
        shares = (targets[:half], targets[half:])
        pools = [
            await open_pool(*address(node), len(share))
            for node, share in zip(nodes, shares, strict=True)
        ]
        try:
            for _ in range(params.rounds):
                before = camera.commands
                started = asyncio.get_running_loop().time()
                done = await asyncio.gather(
                    *(
                        burst(pool, node, share)
                        for pool, node, share in zip(pools, nodes, shares, strict=True)
                    )
                )
                walls.append(asyncio.get_running_loop().time() - started)
                await camera.wait_commands(before + 1)
                trips.append(camera.commands - before)
                check(result, [reply for replies in done for reply in replies], answers)
        finally:
            for pool in pools:
                await close_pool(pool)
        result.errors_from("camera", camera.problems())
        for node in nodes:
            result.errors_from(node.child.name, node.problems())
    result.figure("callers per burst (half on each node)", params.size)
    result.figure("bursts", params.rounds)
    result.figure("burst wall ms (median)", round(1000 * median(walls), 1))
    result.figure("round trips per burst", ",".join(map(str, trips)))
    result.target("inexact answers", result.errors.get(INEXACT, 0), "<=", 0)
    result.target("round trips (worst burst)", max(trips), "<=", 4)
    return result


def address(server: RelayServer) -> tuple[str, int]:
    url = URL(server.url)
    return url.host or HOST, url.port or 80


async def burst(pool: list[Connection], server: RelayServer, targets: list[str]) -> list[Reply]:
    _, replies = await send_all(pool, *address(server), targets)
    return replies


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
