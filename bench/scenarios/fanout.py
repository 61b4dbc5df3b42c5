"""fan-out: one ``/logs`` to each of N online cameras (``python -m camera --fleet N``), all at once.

The requests go out on N pre-opened keep-alive connections, all written
before any answer is read (``bench.rawhttp``); a ``/healthz`` burst on the same
connections is timed for reference. Every answer must be a 200 for the camera
asked, holding the entry the simulated camera recorded at start. The CPU the
server and the fleet process spend on the fan-out shows which one limits it.
"""

from __future__ import annotations

from typing import Final

import orjson
from yarl import URL

from bench.fixtures import camera_fleet, polls_held, relay_server
from bench.http import client_session, wait_for
from bench.plan import Context
from bench.procs import HOST
from bench.procstat import cpu_seconds
from bench.rawhttp import close_pool, open_pool, send_all
from bench.result import ScenarioResult
from bench.stats import percentile

__all__ = ["NAME", "run"]

NAME: Final = "fanout"


def fleet_ids(count: int) -> list[str]:
    """The ids ``python -m camera --fleet`` gives its cameras."""
    return [f"cam-{i:05d}" for i in range(1, count + 1)]


async def run(ctx: Context) -> ScenarioResult:
    count = ctx.plan.fanout_cameras
    result = ScenarioResult(NAME)
    ids = fleet_ids(count)
    async with relay_server(ctx, POLL_HOLD_SECONDS="50") as server:
        async with camera_fleet(ctx, server, count) as fleet:
            async with client_session() as http:

                async def all_held() -> bool:
                    return await polls_held(http, server) >= count

                if not await wait_for(all_held, 60.0, interval=0.1):
                    result.error("not every camera was polling before the fan-out")
            url = URL(server.url)
            host, port = url.host or HOST, url.port or 80
            pool = await open_pool(host, port, count)
            try:
                healthz_wall, warm = await send_all(pool, host, port, ["/healthz"] * count)
                result.errors_from(
                    "/healthz", (f"answered {r.status}" for r in warm if r.status != 200)
                )
                before = (server.cpu_seconds(), cpu_seconds(fleet.pid))
                wall, replies = await send_all(
                    pool, host, port, [f"/logs?cameraId={cid}" for cid in ids]
                )
                after = (server.cpu_seconds(), cpu_seconds(fleet.pid))
            finally:
                await close_pool(pool)
            for camera_id, reply in zip(ids, replies, strict=True):
                if reply.status != 200:
                    result.error(f"/logs answered {reply.status}")
                    continue
                body = orjson.loads(reply.body)
                if body["cameraId"] != camera_id or body["count"] < 1:
                    result.error("/logs answered for the wrong camera or with no entries")
            answered = sum(1 for r in replies if r.status == 200)
        result.errors_from("fleet", fleet.stderr_lines())
        result.errors_from("server", server.problems())
    latencies = [r.seconds for r in replies]
    result.figure("cameras", count)
    result.figure("healthz burst wall ms (reference)", round(1000 * healthz_wall, 1))
    result.figure("per-request p50 ms", round(1000 * percentile(latencies, 50), 1))
    result.figure("per-request p99 ms", round(1000 * percentile(latencies, 99), 1))
    result.figure("server CPU s during fan-out", round(after[0] - before[0], 2))
    result.figure("fleet CPU s during fan-out", round(after[1] - before[1], 2))
    result.figure("total wall ms", round(1000 * wall, 1))
    result.target("answered", answered, ">=", count)
    return result
