"""cluster-kill: SIGKILL a worker during a fan-out to N cameras.

The fleet polls ``--workers 2`` (one port, so a camera whose connection
breaks reconnects to whichever worker the kernel picks: the survivor, or the
one the supervisor restarts). The callers ask a third node (same Redis, its
own port): one ``/logs`` per camera, all at once. Once a twentieth of them are
answered, one worker gets SIGKILL. Every caller must still get its 200 (a 503
would be right only for a camera that never came back, and every camera here
comes back); the figure is the time from the kill to the last answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Final

from yarl import URL

from bench.fixtures import (
    as_list,
    camera_fleet,
    cameras_polling,
    enter_together,
    redis_server,
    relay_nodes,
    relay_workers,
)
from bench.http import Reply, client_session, wait_for
from bench.plan import Context, Scenario
from bench.rawhttp import close_pool, open_pool, read_reply, request_bytes
from bench.result import ScenarioResult
from bench.scenarios.fanout import check_reply, fleet_ids
from bench.stats import percentile
from tools.procs import HOST

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "cluster-kill"
HOLD_SECONDS: Final = "50"
#: the share of answers in before the kill
KILL_AFTER: Final = 0.05
#: what the supervisor and the nodes rightly say about a killed worker
EXPECTED_LINES: Final = (
    "exited with status -9",
    "stopped beating",
    "did not hand camera",
)
#: a fleet camera whose connection to the killed worker broke, trying again
RECONNECT: Final = "retrying in"


@dataclass(frozen=True, slots=True)
class Params:
    """The cluster-kill scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: online cameras in the fan-out during which a worker is killed; NODE_TIMEOUT_SECONDS
    cameras: int
    node_timeout_seconds: float


FULL: Final = Params(cameras=500, node_timeout_seconds=5.0)
QUICK: Final = Params(cameras=20, node_timeout_seconds=1.0)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    count = params.cameras
    result = ScenarioResult(NAME)
    settings = {
        "POLL_HOLD_SECONDS": HOLD_SECONDS,
        "NODE_TIMEOUT_SECONDS": str(params.node_timeout_seconds),
    }
    ids = fleet_ids(count)
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        (workers,), (callers,) = await enter_together(
            stack,
            as_list(relay_workers(ctx, 2, REDIS_URL=redis.url, **settings)),
            relay_nodes(ctx, 1, redis.url, **settings),
        )
        fleet = await stack.enter_async_context(camera_fleet(ctx, workers, count))
        async with client_session() as http:

            async def all_polling() -> bool:
                return await cameras_polling(http, callers) >= count

            if not await wait_for(all_polling, 60.0 + count / 100, interval=0.25):
                result.error("not every camera was polling before the fan-out")
        victim = workers.node_pids()[0]
        url = URL(callers.url)
        host, port = url.host or HOST, url.port or 80
        pool = await open_pool(host, port, count)
        try:
            started = time.perf_counter()
            for connection, camera_id in zip(pool, ids, strict=True):
                connection.writer.write(request_bytes(host, port, f"/logs?cameraId={camera_id}"))
            answers = [asyncio.create_task(read_reply(c, started)) for c in pool]
            pending = set(answers)
            while len(pending) > count * (1 - KILL_AFTER):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            answered_before = count - len(pending)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.perf_counter() - started
            replies: list[Reply] = await asyncio.gather(*answers)
        finally:
            await close_pool(pool)
        for camera_id, reply in zip(ids, replies, strict=True):
            check_reply(result, camera_id, reply)
        fleet_lines = fleet.stderr_lines()
        reconnects = [line for line in fleet_lines if RECONNECT in line]
        result.errors_from("fleet", (line for line in fleet_lines if RECONNECT not in line))
        for server in (workers, callers):
            result.errors_from(server.child.name, server.problems(*EXPECTED_LINES))
    after_kill = [reply.seconds - killed_at for reply in replies if reply.seconds > killed_at]
    result.figure("cameras", count)
    result.figure("answered before the kill", answered_before)
    result.figure("NODE_TIMEOUT_SECONDS", params.node_timeout_seconds)
    result.figure("camera retries logged (connection to the killed worker)", len(reconnects))
    result.figure("answered 503", sum(1 for reply in replies if reply.status == 503))
    result.figure("answered after the kill, p50 s", round(percentile(after_kill, 50), 2))
    result.figure(
        "time to recover s (kill to the last answer)", round(max(after_kill, default=0), 2)
    )
    result.target("answered 200", sum(1 for r in replies if r.status == 200), ">=", count)
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
