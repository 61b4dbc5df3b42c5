"""fleet: N idle cameras (``python -m camera --fleet N``) each holding a poll.

Per step: the server's RSS before the fleet connects and once every poll is
held, its CPU over an idle window (no poll ends inside it: the hold is
``POLL_HOLD_SECONDS``), errors on both sides, and how long ``GET /cameras``
takes with N cameras. Besides the 10,000 step, the full run adds one with as
many cameras as the fd hard limit lets both processes hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final

import aiohttp

from bench.fixtures import RelayServer, camera_fleet, polls_held, relay_server, wait_all_held
from bench.http import client_session, fetch
from bench.idlefleet import FD_RESERVE, FLEET_CONNECTION_TIMEOUT, FLEET_POLL_TIMEOUT
from bench.plan import Context, Scenario
from bench.procstat import cpu_seconds, memory
from bench.result import ScenarioResult
from bench.stats import median
from common.fdlimit import hard_open_file_limit
from tools.procs import Child

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "fleet"
HOLD_SECONDS: Final = "50"
KB: Final = 1024
MB: Final = 1024 * 1024
#: "idle CPU near zero": at most this share of one core, in percent.
IDLE_CPU_LIMIT_PERCENT: Final = 2.0
CAMERAS_TIMINGS: Final = 10


@dataclass(frozen=True, slots=True)
class Params:
    """The fleet scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: cameras per step; True adds a step with as many as the fd hard limit allows
    sizes: tuple[int, ...]
    fill_fd_limit: bool
    #: the idle window over which CPU is measured
    idle_seconds: float


FULL: Final = Params(sizes=(10_000,), fill_fd_limit=True, idle_seconds=10.0)
QUICK: Final = Params(sizes=(20,), fill_fd_limit=False, idle_seconds=1.0)


def sizes(params: Params) -> list[int]:
    steps = list(params.sizes)
    if params.fill_fd_limit:
        most = hard_open_file_limit() - FD_RESERVE
        if most > max(steps):
            steps.append(most)
    return steps


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    for count in sizes(params):
        await step(ctx, result, count, params.idle_seconds)
    return result


def fleet_server(ctx: Context) -> AbstractAsyncContextManager[RelayServer]:
    """The server a fleet is measured against (here and in the console scenario)."""
    return relay_server(
        ctx,
        POLL_HOLD_SECONDS=HOLD_SECONDS,
        HEADER_TIMEOUT_SECONDS=FLEET_CONNECTION_TIMEOUT,
        KEEPALIVE_TIMEOUT_SECONDS=FLEET_CONNECTION_TIMEOUT,
    )


async def step(ctx: Context, result: ScenarioResult, count: int, idle_seconds: float) -> None:
    tag = f"N={count}"
    async with fleet_server(ctx) as server:
        await asyncio.sleep(0.5)
        before = server.memory().rss
        async with (
            camera_fleet(ctx, server, count, {"POLL_TIMEOUT_SECONDS": FLEET_POLL_TIMEOUT}) as fleet,
            client_session() as http,
        ):
            started = time.perf_counter()
            problem = await wait_all_held(http, server, count)
            if problem is not None:
                result.error(f"{tag}: {problem}")
            ramp = time.perf_counter() - started
            await asyncio.sleep(1.0)
            after = server.memory().rss
            server_cpu, fleet_cpu = await idle_cpu(server, fleet, idle_seconds)
            held_after = await polls_held(http, server)
            if held_after < count:
                result.error(f"{tag}: {count - held_after} polls ended during the idle window")
            cameras_ms, cameras_cpu_ms, cameras_bytes = await time_cameras(http, server)
            result.figure(f"{tag} ramp s", round(ramp, 1))
            result.figure(f"{tag} server RSS before MB", round(before / MB, 1))
            result.figure(f"{tag} server RSS held MB", round(after / MB, 1))
            result.figure(f"{tag} server open fds", server.open_fds())
            result.figure(
                f"{tag} fleet process RSS per camera KB",
                round(memory(fleet.pid).rss / count / KB, 1),
            )
            result.figure(f"{tag} fleet idle CPU %", round(fleet_cpu, 2))
            result.figure(f"{tag} /cameras ms (median of {CAMERAS_TIMINGS})", round(cameras_ms, 1))
            result.figure(f"{tag} /cameras server CPU ms", round(cameras_cpu_ms, 1))
            result.figure(f"{tag} /cameras body KB", round(cameras_bytes / KB))
            result.target(
                f"{tag} server RSS growth per camera",
                round((after - before) / count / KB, 2),
                "<=",
                16.0,
                "KB",
            )
            result.target(
                f"{tag} server idle CPU", round(server_cpu, 2), "<=", IDLE_CPU_LIMIT_PERCENT, "%"
            )
        result.errors_from(f"{tag} fleet", fleet.stderr_lines())
        result.errors_from(f"{tag} server", server.problems())


async def idle_cpu(server: RelayServer, fleet: Child, seconds: float) -> tuple[float, float]:
    """CPU use of the server and of the fleet over ``seconds`` of doing nothing, in %."""
    server_start, fleet_start, t0 = server.cpu_seconds(), cpu_seconds(fleet.pid), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    return (
        100 * (server.cpu_seconds() - server_start) / elapsed,
        100 * (cpu_seconds(fleet.pid) - fleet_start) / elapsed,
    )


async def time_cameras(
    http: aiohttp.ClientSession,
    server: RelayServer,
    params: Mapping[str, str] | None = None,
    calls: int = CAMERAS_TIMINGS,
) -> tuple[float, float, int]:
    """``GET /cameras``: median wall ms, mean server CPU ms per call, body size."""
    timings: list[float] = []
    size = 0
    cpu_before = server.cpu_seconds()
    for _ in range(calls):
        reply = await fetch(http, f"{server.url}/cameras", params)
        if reply.status != 200:
            raise RuntimeError(f"/cameras {dict(params or {})} answered {reply.status}")
        timings.append(reply.seconds)
        size = len(reply.body)
    cpu_ms = 1000 * (server.cpu_seconds() - cpu_before) / calls
    return 1000 * median(timings), cpu_ms, size


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
