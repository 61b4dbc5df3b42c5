"""renewal: a fleet renewing its held polls, and how long ``/healthz`` waits meanwhile.

``python -m camera --fleet N`` (as many cameras as the fd hard limit lets both
processes hold, as the fleet scenario's last step) against a server with the
default ``POLL_HOLD_SECONDS`` (30): every poll ends with a noop and is renewed,
N/30 a second. Once every poll is held, ``/healthz`` is asked every 20 ms for
``window_seconds``: its slowest answers show the event loop's longest stops, a
full garbage collection among them (it walks every object the held polls keep).
The target: 99 % of them within 100 ms. Also reported: the server's CPU over the
window and its RSS. The window spans several renewals of each camera's poll.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from bench.fixtures import relay_server
from bench.http import healthz_watch
from bench.idlefleet import FD_RESERVE, FLEET_CONNECTION_TIMEOUT, held_fleet
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.stats import percentile
from common.fdlimit import hard_open_file_limit

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "renewal"
#: between two /healthz probes: asked back to back, the probe's client took a core's
#: worth of CPU from the server and the fleet on a 2-core machine
PROBE_PAUSE_SECONDS: Final = 0.02
#: the target: renewals and the collector keep 99 % of /healthz answers this fast
P99_LIMIT_MS: Final = 100.0
MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Params:
    """The renewal scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: cameras; None: as many as the fd hard limit allows
    cameras: int | None
    poll_hold_seconds: float
    window_seconds: float


FULL: Final = Params(cameras=None, poll_hold_seconds=30.0, window_seconds=90.0)
QUICK: Final = Params(cameras=20, poll_hold_seconds=0.5, window_seconds=1.5)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    count = params.cameras or hard_open_file_limit() - FD_RESERVE
    tag = f"N={count}"
    async with relay_server(
        ctx,
        POLL_HOLD_SECONDS=str(params.poll_hold_seconds),
        HEADER_TIMEOUT_SECONDS=FLEET_CONNECTION_TIMEOUT,
        KEEPALIVE_TIMEOUT_SECONDS=FLEET_CONNECTION_TIMEOUT,
    ) as server:
        async with held_fleet(ctx, server, count, result, tag) as (fleet, http):
            cpu_before, started = server.cpu_seconds(), time.monotonic()
            async with healthz_watch(http, server.url, PROBE_PAUSE_SECONDS) as latencies:
                await asyncio.sleep(params.window_seconds)
            elapsed = time.monotonic() - started
            cpu = 100 * (server.cpu_seconds() - cpu_before) / elapsed
            result.figure(f"{tag} poll renewals per s", round(count / params.poll_hold_seconds))
            result.figure(f"{tag} /healthz answers", len(latencies))
            p50, p99 = (percentile(latencies, q) if latencies else 0.0 for q in (50, 99))
            result.figure(f"{tag} /healthz p50 ms", round(1000 * p50, 1))
            result.target(f"{tag} /healthz p99", round(1000 * p99, 1), "<=", P99_LIMIT_MS, "ms")
            slowest = sorted(latencies, reverse=True)[:3]
            for rank, seconds in enumerate(slowest, 1):
                result.figure(f"{tag} /healthz slowest #{rank} ms", round(1000 * seconds))
            result.figure(
                f"{tag} /healthz answers over 100 ms", sum(1 for s in latencies if s > 0.1)
            )
            result.figure(f"{tag} server CPU %", round(cpu, 1))
            result.figure(f"{tag} server RSS MB", round(server.memory().rss / MB, 1))
        result.errors_from(f"{tag} fleet", fleet.stderr_lines())
        result.errors_from(f"{tag} server", server.problems())
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
