"""floor: the relay beside the least an aiohttp server can do for the same exchanges.

``latency`` and ``throughput`` set ``/logs`` against ``/healthz``. A ``/logs``
costs three HTTP exchanges (the poll's answer, the camera's upload, the
caller's answer) against one, so part of each ratio is aiohttp's and the
protocol's, whatever the handlers do. Here the same client measures both the
relay and ``bench.floorserver`` (the happy path and nothing else) in one run,
each with a bench camera of 100 entries: sequential ``/logs`` and ``/healthz``
(p50 and server CPU per request, as ``latency`` does) and sustained load (as
``throughput`` does, compact bodies). The floor's ratios are what no handler
code can beat; the relay's CPU per ``/logs`` over the floor's is what its own
work (checks, limits, deadlines, ranges, metrics, logs) costs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from yarl import URL

from bench.fixtures import RelayServer, floor_server, log_camera, relay_server
from bench.http import client_session, cpu_per_request
from bench.interleaved import interleave
from bench.logdata import make_log
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.scenarios import throughput
from bench.stats import percentile, ratio

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "floor"
CAMERA_ID: Final = "floor"


@dataclass(frozen=True, slots=True)
class Params:
    """The floor scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: sequential /healthz + /logs pairs measured, and requests of each kind for CPU
    rounds: int
    warmup: int
    entries: int
    #: sustained load: connections, seconds per run, runs of each kind
    connections: int
    seconds: float
    load_rounds: int


FULL: Final = Params(
    rounds=500, warmup=50, entries=100, connections=100, seconds=3.0, load_rounds=2
)
QUICK: Final = Params(rounds=20, warmup=3, entries=100, connections=4, seconds=0.3, load_rounds=1)


@dataclass(slots=True)
class Measured:
    """One server's figures, in seconds and requests per second."""

    healthz_p50: float = 0.0
    logs_p50: float = 0.0
    healthz_cpu: float = 0.0
    logs_cpu: float = 0.0
    healthz_rate: float = 0.0
    logs_rate: float = 0.0


Served = Callable[[Context], contextlib.AbstractAsyncContextManager[RelayServer]]


async def _measure(
    ctx: Context, served: Served, params: Params, kind: str, result: ScenarioResult
) -> Measured:
    measured = Measured()
    expected = make_log(params.entries)
    async with (
        served(ctx) as server,
        log_camera(ctx, server, params.entries, CAMERA_ID) as camera,
        client_session(limit=1) as http,
    ):
        health_url = URL(f"{server.url}/healthz")
        logs_url = URL(f"{server.url}/logs").with_query(cameraId=CAMERA_ID)
        timings = await interleave(
            http,
            health_url,
            logs_url,
            expected,
            warmup=params.warmup,
            rounds=params.rounds,
            result=result,
            label=kind,
        )
        measured.healthz_p50 = percentile(timings.healthz, 50)
        measured.logs_p50 = percentile(timings.logs, 50)
        pids = server.pid, camera.child.pid
        healthz_spent = await cpu_per_request(http, health_url, *pids, params.rounds)
        logs_spent = await cpu_per_request(http, logs_url, *pids, params.rounds)
        measured.healthz_cpu, measured.logs_cpu = healthz_spent["server"], logs_spent["server"]
        load_params = throughput.Params(
            params.connections, params.seconds, params.load_rounds, params.entries
        )
        loads = throughput.Load(), throughput.Load()
        for _ in range(params.load_rounds):
            for url, load in zip((health_url, logs_url), loads, strict=True):
                await asyncio.sleep(0.2)
                await throughput.measure_load(server, str(url), load_params, load)
        measured.healthz_rate, measured.logs_rate = (load.rate for load in loads)
        for url, load in zip((health_url, logs_url), loads, strict=True):
            if load.failures:
                result.error(f"{kind}: {load.failures} failed requests to {url.path}")
        # Callers cut at the end of each load run leave late results: expected.
        result.errors_from(f"{kind} camera", camera.errors)
        result.errors_from(
            f"{kind} server", server.problems(f"result from camera {CAMERA_ID}: late")
        )
    return measured


def _report(result: ScenarioResult, kind: str, measured: Measured) -> None:
    result.figure(f"{kind}: healthz p50 ms", round(1000 * measured.healthz_p50, 3))
    result.figure(f"{kind}: logs p50 ms", round(1000 * measured.logs_p50, 3))
    result.figure(
        f"{kind}: p50 ratio logs/healthz", round(ratio(measured.logs_p50, measured.healthz_p50), 2)
    )
    result.figure(f"{kind}: healthz server CPU per request us", round(1e6 * measured.healthz_cpu))
    result.figure(f"{kind}: logs server CPU per request us", round(1e6 * measured.logs_cpu))
    result.figure(
        f"{kind}: server CPU per request logs/healthz",
        round(ratio(measured.logs_cpu, measured.healthz_cpu), 2),
    )
    result.figure(f"{kind}: healthz req/s (load)", round(measured.healthz_rate))
    result.figure(f"{kind}: logs req/s (load)", round(measured.logs_rate))
    result.figure(
        f"{kind}: /logs req/s / /healthz req/s",
        round(ratio(measured.logs_rate, measured.healthz_rate), 2),
    )


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    relay = await _measure(ctx, relay_server, params, "relay", result)
    floor = await _measure(ctx, floor_server, params, "floor", result)
    _report(result, "relay", relay)
    _report(result, "floor", floor)
    result.figure(
        "relay/floor: server CPU per /healthz",
        round(ratio(relay.healthz_cpu, floor.healthz_cpu), 2),
    )
    result.figure("relay/floor: /logs p50", round(ratio(relay.logs_p50, floor.logs_p50), 2))
    result.figure(
        "relay/floor: /logs req/s (load)", round(ratio(relay.logs_rate, floor.logs_rate), 2)
    )
    result.target(
        "relay/floor: server CPU per /logs",
        round(ratio(relay.logs_cpu, floor.logs_cpu), 2),
        "<=",
        1.5,
        "x",
    )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
