"""cluster-fanout: the ``fanout`` scenario against ``--workers 2`` (one Redis) and against
the single process (no Redis), in one run.

One ``/logs`` to each of N online cameras, all at once, as ``fanout`` does it;
with workers both the fleet's polls and the callers' connections are spread over
the two workers by the kernel (``SO_REUSEPORT``), so about half of the calls cross
nodes. The figures: server CPU per ``/logs`` (the supervisor and its workers
together) and throughput, for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.fixtures import redis_server, relay_server, relay_workers
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.scenarios.fanout import HOLD_SECONDS, FanOut, fan_out
from bench.stats import percentile, ratio

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "cluster-fanout"
WORKERS: Final = 2


@dataclass(frozen=True, slots=True)
class Params:
    """The cluster-fanout scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: online cameras, one /logs each, against --workers 2 and one process
    cameras: int


FULL: Final = Params(cameras=2000)
QUICK: Final = Params(cameras=20)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    count = params.cameras
    result = ScenarioResult(NAME)
    runs: dict[str, FanOut] = {}
    async with relay_server(ctx, POLL_HOLD_SECONDS=HOLD_SECONDS) as server:
        runs["single"] = await fan_out(ctx, server, count, result, "single: ")
        result.errors_from("single: server", server.problems())
    async with (
        redis_server() as redis,
        relay_workers(ctx, WORKERS, REDIS_URL=redis.url, POLL_HOLD_SECONDS=HOLD_SECONDS) as server,
    ):
        runs["workers"] = await fan_out(ctx, server, count, result, "workers: ")
        result.errors_from("workers: server", server.problems())
    result.figure("cameras", count)
    for name, done in runs.items():
        answered = sum(1 for reply in done.replies if reply.status == 200)
        result.figure(f"{name}: answered", answered)
        result.figure(f"{name}: wall ms", round(1000 * done.wall, 1))
        result.figure(f"{name}: throughput /logs per s", round(count / done.wall))
        result.figure(f"{name}: p50 ms", round(1000 * percentile(done.latencies, 50), 1))
        result.figure(f"{name}: server CPU per /logs us", round(1e6 * done.server_cpu / count))
        result.figure(f"{name}: fleet CPU per /logs us", round(1e6 * done.fleet_cpu / count))
    result.target(
        "server CPU per /logs, workers / single",
        round(ratio(runs["workers"].server_cpu, runs["single"].server_cpu), 2),
        "<=",
        2.0,
        "x",
    )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
