"""latency: ``GET /logs`` (one camera, 100 logs) against ``GET /healthz``, same client, same run.

The two are interleaved on one keep-alive connection (``bench.interleaved``),
so machine noise hits both alike. The figure is the ratio of their percentiles.
Afterwards a run of each kind alone measures the CPU every process spends per
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from yarl import URL

from bench.fixtures import log_camera, relay_server
from bench.http import client_session, cpu_per_request
from bench.interleaved import interleave
from bench.logdata import make_log
from bench.plan import Context, Scenario
from bench.profiling import profiled
from bench.result import ScenarioResult
from bench.stats import percentile, ratio

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "latency"
CAMERA_ID: Final = "lat"


@dataclass(frozen=True, slots=True)
class Params:
    """The latency scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: sequential /healthz + /logs pairs measured (after the warm-up ones)
    rounds: int
    warmup: int
    #: entries in the camera's log
    entries: int


FULL: Final = Params(rounds=1000, warmup=50, entries=100)
QUICK: Final = Params(rounds=40, warmup=5, entries=100)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    expected = make_log(params.entries)
    async with (
        relay_server(ctx) as server,
        log_camera(ctx, server, params.entries, CAMERA_ID) as camera,
        client_session(limit=1) as http,
    ):
        # Both URLs are built once, so neither request pays for building its URL.
        health_url = URL(f"{server.url}/healthz")
        logs_url = URL(f"{server.url}/logs").with_query(cameraId=CAMERA_ID)
        async with profiled(ctx, NAME, server.pid) as profile:
            timings = await interleave(
                http,
                health_url,
                logs_url,
                expected,
                warmup=params.warmup,
                rounds=params.rounds,
                result=result,
            )
        result.notes.extend(f"profile: {line}" for line in profile.lines)
        server_cpu: dict[str, float] = {}
        for name, url in (("healthz", health_url), ("logs", logs_url)):
            spent = await cpu_per_request(http, url, server.pid, camera.child.pid, params.rounds)
            server_cpu[name] = spent["server"]
            for process, seconds in spent.items():
                result.figure(f"{name}: {process} CPU per request us", round(1e6 * seconds))
        result.errors_from("camera", camera.problems())
        result.figure("camera round trips (every /logs of the scenario)", camera.commands)
        result.errors_from("server", server.problems())
    healthz, logs = timings.healthz, timings.logs
    for name, values in (("healthz", healthz), ("logs", logs)):
        result.figure(f"{name} p50 ms", round(1000 * percentile(values, 50), 3))
        result.figure(f"{name} p99 ms", round(1000 * percentile(values, 99), 3))
    p50 = ratio(percentile(logs, 50), percentile(healthz, 50))
    p99 = ratio(percentile(logs, 99), percentile(healthz, 99))
    result.figure("requests measured", len(logs))
    result.figure("p99 ratio logs/healthz", round(p99, 2))
    result.target("p50 ratio logs/healthz", round(p50, 2), "<=", 2.5, "x")
    cpu = ratio(server_cpu["logs"], server_cpu["healthz"])
    result.target("server CPU per request logs/healthz", round(cpu, 2), "<=", 3.0, "x")
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
