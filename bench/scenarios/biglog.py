"""big log: one camera with a large log (100,000 entries, ~10 MB of JSON), ``/logs`` unbounded.

After a warm-up call the server's ``VmHWM`` is reset to its current RSS
(``/proc/<pid>/clear_refs``), so the peak read afterwards is the call's own.
Payload = the ``/logs`` body the user receives. ``/healthz`` is asked back to
back during each call: its worst latency shows whether reading the upload
stalls the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import orjson

from bench.fixtures import log_camera, relay_server
from bench.http import client_session, fetch, healthz_watch
from bench.logdata import BASE, make_log
from bench.plan import Context, Scenario
from bench.procstat import reset_peak_rss
from bench.result import ScenarioResult

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "biglog"
CAMERA_ID: Final = "big"
MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Params:
    """The biglog scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: entries in the camera's log (about 100 bytes of JSON each); runs
    entries: int
    runs: int


FULL: Final = Params(entries=100_000, runs=2)
QUICK: Final = Params(entries=2_000, runs=1)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    entries = make_log(params.entries)
    ratios: list[float] = []
    healthz_worst: list[float] = []
    async with (
        relay_server(ctx) as server,
        log_camera(ctx, server, params.entries, CAMERA_ID) as camera,
        client_session() as http,
    ):
        url = f"{server.url}/logs"
        warm = await fetch(http, url, {"cameraId": CAMERA_ID, "endTimestamp": repr(BASE + 5)})
        if warm.status != 200:
            result.error(f"warm-up /logs answered {warm.status}")
        for run_number in range(1, params.runs + 1):
            await asyncio.sleep(0.3)
            if not reset_peak_rss(server.pid):
                result.notes.append("could not reset VmHWM: the peak includes start-up")
            base = server.memory().rss
            async with client_session() as probe, healthz_watch(probe, server.url) as latencies:
                reply = await fetch(http, url, {"cameraId": CAMERA_ID})
            peak = server.memory().hwm
            if latencies:
                healthz_worst.append(max(latencies))
            if reply.status != 200:
                result.error(f"/logs answered {reply.status}: {reply.body[:200]!r}")
                continue
            if orjson.loads(reply.body)["logs"] != entries:
                result.error("/logs answered other entries than the camera's log")
            growth = peak - base
            ratios.append(growth / len(reply.body))
            tag = f"run {run_number}"
            result.figure(f"{tag} wall s", round(reply.seconds, 2))
            result.figure(f"{tag} server RSS before MB", round(base / MB, 1))
            result.figure(f"{tag} server peak growth MB", round(growth / MB, 1))
            result.figure(f"{tag} server RSS after MB", round(server.memory().rss / MB, 1))
            if latencies:
                result.figure(f"{tag} /healthz max ms", round(max(latencies) * 1000, 1))
            result.figure("payload MB", round(len(reply.body) / MB, 2))
        await camera.wait_commands(1 + params.runs)
        if camera.bytes_sent:
            result.figure("camera upload MB", round(max(camera.bytes_sent) / MB, 2))
        result.figure("entries", params.entries)
        result.errors_from("camera", camera.problems())
        result.errors_from("server", server.problems())
    result.target("answered", len(ratios), ">=", params.runs)
    if ratios:
        result.target(
            "peak RSS growth / payload (worst run)", round(max(ratios), 2), "<=", 1.5, "x"
        )
    if healthz_worst:
        result.target(
            "/healthz max latency during the call",
            round(max(healthz_worst) * 1000, 1),
            "<=",
            100,
            "ms",
        )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
