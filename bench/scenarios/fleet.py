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
from typing import Final

import aiohttp

from bench.fixtures import RelayServer, camera_fleet, polls_held, relay_server, wait_all_held
from bench.http import client_session, fetch
from bench.plan import Context
from bench.procs import Child
from bench.procstat import cpu_seconds, memory
from bench.result import ScenarioResult
from bench.stats import median
from common.fdlimit import hard_open_file_limit

__all__ = ["NAME", "run"]

NAME: Final = "fleet"
HOLD_SECONDS: Final = "50"
#: fds kept free in each process beyond one socket per camera: stdio, epoll, the
#: listener, and sockets a moment away from closing.
FD_RESERVE: Final = 500
#: The fleet's client timeout. Its own start-up is CPU-bound (all cameras start
#: at once in one loop): ~20,000 take over a minute to send their first polls,
#: and at the default 60 s the first ones would time out and reconnect while the
#: server still holds the old sockets, running both processes out of fds.
FLEET_POLL_TIMEOUT: Final = "120"
#: For the same reason, a fleet camera may connect well over 10 s (the default
#: HEADER_TIMEOUT_SECONDS) before its first poll's headers go out: at the default,
#: the server cut some 13,000 of 19,500 such connections, and they reconnected.
FLEET_HEADER_TIMEOUT: Final = FLEET_POLL_TIMEOUT
KB: Final = 1024
MB: Final = 1024 * 1024
#: "idle CPU near zero": at most this share of one core, in percent.
IDLE_CPU_LIMIT_PERCENT: Final = 2.0
CAMERAS_TIMINGS: Final = 10


def sizes(ctx: Context) -> list[int]:
    steps = list(ctx.plan.fleet_sizes)
    if ctx.plan.fleet_fill_fd_limit:
        most = hard_open_file_limit() - FD_RESERVE
        if most > max(steps):
            steps.append(most)
    return steps


async def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME)
    for count in sizes(ctx):
        await step(ctx, result, count)
    return result


async def step(ctx: Context, result: ScenarioResult, count: int) -> None:
    tag = f"N={count}"
    async with relay_server(
        ctx, POLL_HOLD_SECONDS=HOLD_SECONDS, HEADER_TIMEOUT_SECONDS=FLEET_HEADER_TIMEOUT
    ) as server:
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
            server_cpu, fleet_cpu = await idle_cpu(server, fleet, ctx.plan.fleet_idle_seconds)
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
