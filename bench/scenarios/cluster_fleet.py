"""cluster-fleet: N idle cameras over two nodes sharing a Redis, against one process.

The fleet is split over ``python -m camera --fleet`` processes as the fd limit
requires, each pointed at one node (half the cameras on each). Once every poll
is held: each node's RSS growth per camera, Redis's memory per camera
(``INFO memory`` ``used_memory``, from empty), and over an idle window in which
every camera re-polls (``POLL_HOLD_SECONDS`` shorter than the window) the
nodes' CPU and the Redis commands per camera and minute (``INFO stats``).
Then the same fleet (as much of it as one process's fd limit allows) against
a single process without Redis, for the CPU ratio per camera.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from bench.fixtures import RelayServer, redis_server, relay_nodes, relay_server
from bench.idlefleet import (
    FD_RESERVE,
    SLOW_FLEET_SETTINGS,
    fleets_on,
    split,
    wait_held,
)
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.scenarios.fleet import KB
from common.fdlimit import hard_open_file_limit
from tools.redis_server import RedisServer

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "cluster-fleet"
NODES: Final = 2


@dataclass(frozen=True, slots=True)
class Params:
    """The cluster-fleet scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: idle cameras over 2 nodes, the idle window, the hold during it
    cameras: int
    window_seconds: float
    hold_seconds: float


FULL: Final = Params(cameras=20_000, window_seconds=20.0, hold_seconds=10.0)
QUICK: Final = Params(cameras=100, window_seconds=0.5, hold_seconds=0.5)


async def idle_window(
    servers: list[RelayServer], seconds: float, redis: RedisServer | None
) -> tuple[float, int]:
    """The servers' CPU in % of one core over ``seconds``, and Redis commands processed."""
    commands_before = 0 if redis is None else await commands_processed(redis)
    cpu_before, started = sum(s.cpu_seconds() for s in servers), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = sum(s.cpu_seconds() for s in servers) - cpu_before
    elapsed = time.monotonic() - started
    commands = 0 if redis is None else await commands_processed(redis) - commands_before
    return 100 * cpu / elapsed, commands


async def commands_processed(redis: RedisServer) -> int:
    # INFO itself counts as one command: negligible beside a fleet's.
    return int((await redis.info("stats"))["total_commands_processed"])


async def used_memory(redis: RedisServer) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def run(ctx: Context, params: Params) -> ScenarioResult:
    count = params.cameras
    window = params.window_seconds
    result = ScenarioResult(NAME)
    most = hard_open_file_limit() - FD_RESERVE
    settings = {"POLL_HOLD_SECONDS": str(params.hold_seconds), **SLOW_FLEET_SETTINGS}
    #: let RSS settle after start-up and after the ramp (short in --quick)
    settle = min(1.0, window)

    async with redis_server() as redis, relay_nodes(ctx, NODES, redis.url, **settings) as nodes:
        await asyncio.sleep(settle / 2)
        rss_before = [node.memory().rss for node in nodes]
        redis_before = await used_memory(redis)
        async with fleets_on(ctx, nodes, split(count, NODES, most)):
            if problem := await wait_held(nodes, count):
                result.error(f"cluster: {problem}")
            await asyncio.sleep(settle)
            rss_after = [node.memory().rss for node in nodes]
            redis_after = await used_memory(redis)
            cluster_cpu, commands = await idle_window(nodes, window, redis)
        for node in nodes:
            result.errors_from(node.child.name, node.problems())
    growth = [
        (after - before) / (count / NODES)
        for before, after in zip(rss_before, rss_after, strict=True)
    ]

    single_count = min(count, most)
    async with relay_server(
        ctx,
        POLL_HOLD_SECONDS=settings["POLL_HOLD_SECONDS"],
        HEADER_TIMEOUT_SECONDS=settings["HEADER_TIMEOUT_SECONDS"],
        KEEPALIVE_TIMEOUT_SECONDS=settings["KEEPALIVE_TIMEOUT_SECONDS"],
    ) as single:
        async with fleets_on(ctx, [single], split(single_count, 1, most)):
            if problem := await wait_held([single], single_count):
                result.error(f"single: {problem}")
            await asyncio.sleep(settle)
            single_cpu, _ = await idle_window([single], window, None)
        result.errors_from("single", single.problems())

    per_minute = commands / count / (window / 60)
    result.figure("cameras (cluster)", count)
    result.figure("cameras (single process, fd limit)", single_count)
    result.figure("POLL_HOLD_SECONDS during the window", params.hold_seconds)
    result.figure("idle window s", window)
    result.figure("nodes' CPU % (sum)", round(cluster_cpu, 2))
    result.figure("single process CPU %", round(single_cpu, 2))
    result.figure("Redis commands per camera per minute", round(per_minute, 2))
    result.figure(
        "Redis commands per camera re-poll",
        round(commands / count / (window / params.hold_seconds), 2),
    )
    result.target("node RSS per camera (worst node)", round(max(growth) / KB, 2), "<=", 16.0, "KB")
    result.target(
        "Redis memory per camera", round((redis_after - redis_before) / count), "<=", 1024, "B"
    )
    result.target(
        "node CPU per camera, cluster / single",
        round((cluster_cpu / count) / (single_cpu / single_count), 2)
        if single_cpu
        else float("inf"),
        "<=",
        1.5,
        "x",
    )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
