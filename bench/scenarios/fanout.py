"""fan-out: one ``/logs`` to each of N online cameras (``python -m camera --fleet N``), all at once.

The requests go out on N pre-opened keep-alive connections, all written
before any answer is read (``bench.rawhttp``); a ``/healthz`` burst on the same
connections is timed for reference. Every answer must be a 200 for the camera
asked, holding the entry the simulated camera recorded at start. The CPU the
server and the fleet process spend on the fan-out shows which one limits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson
from yarl import URL

from bench.fixtures import RelayServer, camera_fleet, cameras_polling, relay_server
from bench.http import Reply, client_session, wait_for
from bench.plan import Context, Scenario
from bench.procstat import cpu_seconds
from bench.rawhttp import close_pool, open_pool, send_all
from bench.result import ScenarioResult
from bench.stats import percentile
from tools.procs import HOST

__all__ = [
    "FULL",
    "NAME",
    "QUICK",
    "SCENARIO",
    "FanOut",
    "Params",
    "check_reply",
    "fan_out",
    "fleet_ids",
    "run",
]

NAME: Final = "fanout"
#: Idle cameras hold their polls through the whole fan-out.
HOLD_SECONDS: Final = "50"


@dataclass(frozen=True, slots=True)
class Params:
    """The fanout scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: online cameras, one /logs each, all at once
    cameras: int


FULL: Final = Params(cameras=1000)
QUICK: Final = Params(cameras=10)


def fleet_ids(count: int) -> list[str]:
    """The ids ``python -m camera --fleet`` gives its cameras."""
    return [f"cam-{i:05d}" for i in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class FanOut:
    """One fan-out: its replies, wall time and the CPU the server and the fleet spent."""

    wall: float
    replies: list[Reply]
    server_cpu: float
    fleet_cpu: float
    healthz_wall: float

    @property
    def latencies(self) -> list[float]:
        return [reply.seconds for reply in self.replies]


async def fan_out(
    ctx: Context, server: RelayServer, count: int, result: ScenarioResult, tag: str = ""
) -> FanOut:
    """A fleet of ``count`` on ``server``, every camera polling, then one ``/logs`` each;
    every answer checked (errors prefixed with ``tag``)."""
    ids = fleet_ids(count)
    async with camera_fleet(ctx, server, count) as fleet:
        async with client_session() as http:

            async def all_polling() -> bool:
                return await cameras_polling(http, server) >= count

            if not await wait_for(all_polling, 60.0 + count / 100, interval=0.25):
                result.error(f"{tag}not every camera was polling before the fan-out")
        url = URL(server.url)
        host, port = url.host or HOST, url.port or 80
        pool = await open_pool(host, port, count)
        try:
            healthz_wall, warm = await send_all(pool, host, port, ["/healthz"] * count)
            result.errors_from(
                f"{tag}/healthz", (f"answered {r.status}" for r in warm if r.status != 200)
            )
            before = (server.cpu_seconds(), cpu_seconds(fleet.pid))
            wall, replies = await send_all(
                pool, host, port, [f"/logs?cameraId={cid}" for cid in ids]
            )
            after = (server.cpu_seconds(), cpu_seconds(fleet.pid))
        finally:
            await close_pool(pool)
        for camera_id, reply in zip(ids, replies, strict=True):
            check_reply(result, camera_id, reply, tag)
    result.errors_from(f"{tag}fleet", fleet.stderr_lines())
    return FanOut(wall, replies, after[0] - before[0], after[1] - before[1], healthz_wall)


def check_reply(result: ScenarioResult, camera_id: str, reply: Reply, tag: str = "") -> None:
    """A 200 for ``camera_id`` holding the entry the simulated camera recorded at start."""
    if reply.status != 200:
        result.error(f"{tag}/logs answered {reply.status}")
        return
    body = orjson.loads(reply.body)
    if body["cameraId"] != camera_id or body["count"] < 1:
        result.error(f"{tag}/logs answered for the wrong camera or with no entries")


async def run(ctx: Context, params: Params) -> ScenarioResult:
    count = params.cameras
    result = ScenarioResult(NAME)
    async with relay_server(ctx, POLL_HOLD_SECONDS=HOLD_SECONDS) as server:
        done = await fan_out(ctx, server, count, result)
        result.errors_from("server", server.problems())
    answered = sum(1 for r in done.replies if r.status == 200)
    result.figure("cameras", count)
    result.figure("healthz burst wall ms (reference)", round(1000 * done.healthz_wall, 1))
    result.figure("per-request p50 ms", round(1000 * percentile(done.latencies, 50), 1))
    result.figure("per-request p99 ms", round(1000 * percentile(done.latencies, 99), 1))
    result.figure("server CPU s during fan-out", round(done.server_cpu, 2))
    result.figure("fleet CPU s during fan-out", round(done.fleet_cpu, 2))
    result.figure("total wall ms", round(1000 * done.wall, 1))
    result.target("answered", answered, ">=", count)
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
