"""cluster-latency: ``/logs`` in cluster mode, same-node and cross-node, against one process.

Two nodes share a Redis; a bench camera polls node 1. Beside them runs a
single process (no Redis) with a camera of its own. Each round asks, on one
client, in turn: node 1 (the camera's home: same-node), node 2 (cross-node:
the call goes to the home's inbox and the result comes back through Redis),
and the single process; so machine noise hits the three alike. The figures
are ratios of their medians.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

import orjson
from yarl import URL

from bench.fixtures import (
    as_list,
    enter_together,
    log_camera,
    redis_server,
    relay_nodes,
    relay_server,
)
from bench.http import client_session, fetch
from bench.logdata import make_log
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.stats import percentile, ratio

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "cluster-latency"
CAMERA_ID: Final = "lat"
#: As in ``latency``: the camera's next poll arrives before the next request.
GAP_SECONDS: Final = 0.002
KINDS: Final = ("same-node", "cross-node", "single process")


@dataclass(frozen=True, slots=True)
class Params:
    """The cluster-latency scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: sequential /logs calls measured each way (after the warm-up ones)
    rounds: int
    warmup: int
    #: entries in the camera's log
    entries: int


FULL: Final = Params(rounds=1000, warmup=50, entries=100)
QUICK: Final = Params(rounds=40, warmup=5, entries=100)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    expected = make_log(params.entries)
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        nodes, (single,) = await enter_together(
            stack, relay_nodes(ctx, 2, redis.url), as_list(relay_server(ctx))
        )
        home, other = nodes
        await enter_together(
            stack,
            *(log_camera(ctx, server, params.entries, CAMERA_ID) for server in (home, single)),
        )
        http = await stack.enter_async_context(client_session(limit=3))
        urls = {
            kind: URL(f"{server.url}/logs").with_query(cameraId=CAMERA_ID)
            for kind, server in zip(KINDS, (home, other, single), strict=True)
        }
        for i in range(params.warmup + params.rounds):
            for kind, url in urls.items():
                await asyncio.sleep(GAP_SECONDS)
                reply = await fetch(http, url)
                if reply.status != 200:
                    result.error(f"{kind} /logs answered {reply.status}: {reply.body[:200]!r}")
                elif orjson.loads(reply.body)["logs"] != expected:
                    result.error(f"{kind} /logs answered other logs than the camera's")
                if i >= params.warmup:
                    timings[kind].append(reply.seconds)
        for server in (home, other, single):
            result.errors_from(server.child.name, server.problems())
    for kind, values in timings.items():
        result.figure(f"{kind} p50 ms", round(1000 * percentile(values, 50), 3))
        result.figure(f"{kind} p99 ms", round(1000 * percentile(values, 99), 3))
    p50 = {kind: percentile(values, 50) for kind, values in timings.items()}
    result.figure("requests measured per kind", len(timings["same-node"]))
    result.target(
        "p50 cross-node / same-node",
        round(ratio(p50["cross-node"], p50["same-node"]), 2),
        "<=",
        1.5,
        "x",
    )
    result.target(
        "p50 same-node / single process",
        round(ratio(p50["same-node"], p50["single process"]), 2),
        "<=",
        1.5,
        "x",
    )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
