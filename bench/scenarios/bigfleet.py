"""big fleet: many cameras answering with a big log at once, under a result budget.

Every camera (a bench camera process each) holds ``bigfleet_entries`` entries;
one unbounded ``/logs`` per camera is sent at once, so every camera uploads its
whole log at the same moment. ``MAX_RESULT_BYTES_IN_FLIGHT`` bounds what the
server holds: uploads past it wait their turn. Every answer must be exact, and
the server's peak RSS growth (``VmHWM`` reset after a warm-up) stays within
1.5x the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

import orjson

from bench.fixtures import BenchCamera, log_camera, relay_server
from bench.http import client_session, fetch, healthz_watch, read_metrics
from bench.logdata import BASE, make_log
from bench.plan import Context, Scenario
from bench.procstat import reset_peak_rss
from bench.result import ScenarioResult

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "bigfleet"
MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Params:
    """The bigfleet scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: cameras answering at once, entries each, MAX_RESULT_BYTES_IN_FLIGHT
    cameras: int
    entries: int
    budget_bytes: int


FULL: Final = Params(cameras=20, entries=100_000, budget_bytes=64 * 1024 * 1024)
QUICK: Final = Params(cameras=4, entries=2_000, budget_bytes=256 * 1024)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    budget = params.budget_bytes
    entries = make_log(params.entries)
    camera_ids = [f"big-{n:02d}" for n in range(params.cameras)]
    async with (
        relay_server(
            ctx,
            MAX_UPLOAD_BYTES=str(budget),
            MAX_RESULT_BYTES_IN_FLIGHT=str(budget),
            RESPONSE_TIMEOUT_SECONDS="120",
        ) as server,
        contextlib.AsyncExitStack() as stack,
        client_session() as http,
    ):
        cameras: list[BenchCamera] = [
            await stack.enter_async_context(log_camera(ctx, server, params.entries, camera_id))
            for camera_id in camera_ids
        ]
        url = f"{server.url}/logs"
        warm = await asyncio.gather(
            *(fetch(http, url, {"cameraId": c, "endTimestamp": repr(BASE + 5)}) for c in camera_ids)
        )
        if any(reply.status != 200 for reply in warm):
            result.error("a warm-up /logs did not answer 200")
        await asyncio.sleep(0.3)
        if not reset_peak_rss(server.pid):
            result.notes.append("could not reset VmHWM: the peak includes start-up")
        base = server.memory().rss
        async with client_session() as probe, healthz_watch(probe, server.url) as latencies:
            replies = await asyncio.gather(
                *(fetch(http, url, {"cameraId": camera_id}) for camera_id in camera_ids)
            )
        peak = server.memory().hwm
        exact = 0
        for camera_id, reply in zip(camera_ids, replies, strict=True):
            if reply.status != 200:
                result.error(f"/logs for {camera_id} answered {reply.status}: {reply.body[:200]!r}")
            elif orjson.loads(reply.body)["logs"] != entries:
                result.error(f"/logs for {camera_id} answered other entries than its log")
            else:
                exact += 1
        metrics = await read_metrics(http, server.url)
        growth = peak - base
        result.figure("cameras", len(camera_ids))
        result.figure("entries per camera", params.entries)
        result.figure("payload per camera MB", round(len(replies[0].body) / MB, 2))
        result.figure("all payloads MB", round(sum(len(r.body) for r in replies) / MB, 1))
        result.figure("budget MB", round(budget / MB, 2))
        result.figure("wall s", round(max(r.seconds for r in replies), 2))
        result.figure("server RSS before MB", round(base / MB, 1))
        result.figure("server peak growth MB", round(growth / MB, 1))
        result.figure("budget in use after", metrics.get("camrelay_result_bytes_in_flight", -1))
        if latencies:
            result.figure("/healthz max ms", round(max(latencies) * 1000, 1))
        for camera in cameras:
            await camera.wait_commands(2)
            result.errors_from(camera.camera_id, camera.problems())
        result.errors_from("server", server.problems())
    result.target("answers exact", exact, ">=", len(camera_ids))
    result.target("peak RSS growth / budget", round(growth / budget, 2), "<=", 1.5, "x")
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
