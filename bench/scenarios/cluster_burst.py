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
from typing import Final

from yarl import URL

from bench.fixtures import RelayServer, log_camera, redis_server, relay_nodes
from bench.http import Reply
from bench.plan import Context
from bench.procs import HOST
from bench.rawhttp import Connection, close_pool, open_pool, send_all
from bench.result import ScenarioResult
from bench.scenarios.burst import INEXACT, burst_requests, check
from bench.stats import median

__all__ = ["NAME", "run"]

NAME: Final = "cluster-burst"
CAMERA_ID: Final = "burst"


async def run(ctx: Context) -> ScenarioResult:
    plan = ctx.plan
    result = ScenarioResult(NAME)
    targets, answers = burst_requests(plan.burst_entries, plan.burst_size, CAMERA_ID)
    half = len(targets) // 2
    walls: list[float] = []
    trips: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        nodes = await stack.enter_async_context(relay_nodes(ctx, 2, redis.url))
        camera = await stack.enter_async_context(
            log_camera(ctx, nodes[0], plan.burst_entries, CAMERA_ID)
        )
        shares = (targets[:half], targets[half:])
        pools = [
            await open_pool(*address(node), len(share))
            for node, share in zip(nodes, shares, strict=True)
        ]
        try:
            for _ in range(plan.burst_rounds):
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
    result.figure("callers per burst (half on each node)", plan.burst_size)
    result.figure("bursts", plan.burst_rounds)
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
