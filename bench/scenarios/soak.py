"""soak: many ``/logs`` cycles against one camera; afterwards nothing may be left behind.

A few workers issue ``/logs`` one after another with varied ranges (every
answer checked against the known log); every ``soak_abandon_every``-th cycle
instead sends a request and hangs up, which the relay must forget. RSS is read
after the warm-up cycles and at the end; the relay's per-camera maps (callers
waiting, commands in flight) must be empty once the traffic stops.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson
from yarl import URL

from bench.fixtures import RelayServer, log_camera, relay_server
from bench.http import client_session, fetch, read_metrics, wait_for
from bench.logdata import BASE, STEP, expected, make_log
from bench.plan import Context, Scenario
from bench.result import ScenarioResult

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "soak"
CAMERA_ID: Final = "soak"
ENTRIES: Final = 100
MB: Final = 1024 * 1024
RSS_SAMPLE_EVERY: Final = 500
LATE_RESULT: Final = f"result from camera {CAMERA_ID}: late"


@dataclass(frozen=True, slots=True)
class Params:
    """The soak scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: /logs cycles in all, the first ``warmup`` of them warm up; callers at once;
    #: every how many cycles one caller hangs up early
    cycles: int
    warmup: int
    concurrency: int
    abandon_every: int


FULL: Final = Params(cycles=20_000, warmup=2_000, concurrency=4, abandon_every=100)
QUICK: Final = Params(cycles=300, warmup=50, concurrency=4, abandon_every=25)


def window(i: int) -> tuple[float | None, float | None]:
    """Cycle ``i``'s range: mostly bounded windows, every tenth unbounded on one side."""
    start = BASE + ((i * 7) % ENTRIES) * STEP
    end = start + ((i * 13) % 30) * STEP
    if i % 10 == 3:
        return None, end
    if i % 10 == 7:
        return start, None
    return start, end


def query(start: float | None, end: float | None) -> dict[str, str]:
    params = {"cameraId": CAMERA_ID}
    if start is not None:
        params["startTimestamp"] = repr(start)
    if end is not None:
        params["endTimestamp"] = repr(end)
    return params


async def abandon(base_url: str) -> None:
    """Send a ``/logs`` request and hang up before the answer."""
    url = URL(base_url)
    host, port = url.host or "127.0.0.1", url.port or 80
    _, writer = await asyncio.open_connection(host, port)
    request = f"GET /logs?cameraId={CAMERA_ID} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    await asyncio.sleep(0.001)
    writer.close()
    await writer.wait_closed()


async def leftovers(http: aiohttp.ClientSession, server: RelayServer) -> int:
    """Callers waiting plus commands in flight, per ``/cameras`` and ``/metrics``."""
    async with http.get(f"{server.url}/cameras") as response:
        cameras = orjson.loads(await response.read())["cameras"]
    listed = sum(int(c["waiting"]) + int(c["inFlight"]) for c in cameras)
    metrics = await read_metrics(http, server.url)
    gauges = metrics["camrelay_callers_waiting"] + metrics["camrelay_commands_in_flight"]
    return listed + int(gauges)


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    entries = make_log(ENTRIES)
    timestamps = [float(e["timestamp"]) for e in entries]
    issued = completed = abandoned = 0
    warm_rss = 0
    samples: list[int] = []
    async with (
        relay_server(ctx) as server,
        log_camera(ctx, server, ENTRIES, CAMERA_ID) as camera,
        client_session() as http,
    ):
        logs_url = f"{server.url}/logs"

        async def worker() -> None:
            nonlocal issued, completed, abandoned, warm_rss
            while issued < params.cycles:
                i = issued
                issued += 1
                if params.abandon_every and i % params.abandon_every == 1:
                    await abandon(server.url)
                    abandoned += 1
                else:
                    start, end = window(i)
                    reply = await fetch(http, logs_url, query(start, end))
                    if reply.status != 200:
                        result.error(f"/logs answered {reply.status}: {reply.body[:200]!r}")
                    elif orjson.loads(reply.body)["logs"] != expected(
                        entries, timestamps, start, end
                    ):
                        result.error("/logs answered other entries than the range holds")
                completed += 1
                if completed == params.warmup:
                    warm_rss = server.memory().rss
                if completed % RSS_SAMPLE_EVERY == 0:
                    samples.append(server.memory().rss)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(params.concurrency)))
        elapsed = time.perf_counter() - started

        async def drained() -> bool:
            return await leftovers(http, server) == 0

        await wait_for(drained, 5.0)
        left = await leftovers(http, server)
        end_rss = server.memory().rss
        result.errors_from("camera", camera.errors)
        # A command whose callers all hung up is forgotten: its result is late (404).
        if camera.late > abandoned:
            result.error(f"{camera.late} late results but only {abandoned} callers hung up")
        result.errors_from("server", server.problems(LATE_RESULT))
        result.figure("cycles", completed)
        result.figure("abandoned by the client (part of the cycles)", abandoned)
        result.figure("cycles per s", round(completed / elapsed))
        result.figure("camera round trips", camera.commands)
        result.figure("late results (all callers had hung up)", camera.late)
        result.figure("server RSS after warm-up MB", round(warm_rss / MB, 2))
        result.figure("server RSS at end MB", round(end_rss / MB, 2))
        if samples:
            result.figure("server RSS max sampled MB", round(max(samples) / MB, 2))
    result.target("entries left in the session maps", left, "<=", 0)
    result.target(
        "RSS growth after warm-up", round(100 * (end_rss - warm_rss) / warm_rss, 2), "<", 10.0, "%"
    )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
