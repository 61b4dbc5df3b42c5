"""burst: N concurrent ``/logs`` (distinct ranges, one camera) against N concurrent ``/healthz``.

Both bursts go out on the same N pre-opened keep-alive connections, every
request written before any answer is read (``bench.rawhttp``), so they measure
the server, not TCP set-up or the client's own per-request cost.
Each answer is checked entry by entry against the camera's known log; the
bench camera reports every command it answers, which counts round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson
from yarl import URL

from bench.fixtures import log_camera, relay_server
from bench.http import Reply
from bench.logdata import BASE, STEP, Entry, expected, make_log
from bench.plan import Context, Scenario
from bench.profiling import profiled
from bench.rawhttp import close_pool, open_pool, send_all
from bench.result import ScenarioResult
from bench.stats import median, ratio
from tools.procs import HOST

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "burst"
CAMERA_ID: Final = "burst"
#: Each caller asks for a window this many entries wide, starting one entry later than the last.
WINDOW_ENTRIES: Final = 20


@dataclass(frozen=True, slots=True)
class Params:
    """The burst scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: concurrent /logs per burst, bursts, entries in the camera's log
    size: int
    rounds: int
    entries: int


FULL: Final = Params(size=1000, rounds=3, entries=2000)
QUICK: Final = Params(size=50, rounds=1, entries=200)


def ranges(count: int) -> list[tuple[float, float]]:
    """``count`` distinct inclusive ranges sliding over the log."""
    return [(BASE + i * STEP, BASE + (i + WINDOW_ENTRIES) * STEP) for i in range(count)]


def burst_requests(
    entries: int, callers: int, camera_id: str = CAMERA_ID
) -> tuple[list[str], list[list[Entry]]]:
    """A burst's ``/logs`` targets (distinct ranges over a log of ``entries``) and the
    exact answer each must get."""
    log = make_log(entries)
    timestamps = [float(e["timestamp"]) for e in log]
    windows = ranges(callers)
    targets = [
        f"/logs?cameraId={camera_id}&startTimestamp={start!r}&endTimestamp={end!r}"
        for start, end in windows
    ]
    return targets, [list(expected(log, timestamps, start, end)) for start, end in windows]


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    logs_targets, answers = burst_requests(params.entries, params.size)
    health_targets = ["/healthz"] * len(logs_targets)
    health_walls: list[float] = []
    logs_walls: list[float] = []
    trips: list[int] = []
    async with (
        relay_server(ctx) as server,
        log_camera(ctx, server, params.entries, CAMERA_ID) as camera,
    ):
        url = URL(server.url)
        host, port = url.host or HOST, url.port or 80
        pool = await open_pool(host, port, params.size)
        try:
            await send_all(pool, host, port, health_targets)  # warm-up
            async with profiled(ctx, NAME, server.pid) as profile:
                for _ in range(params.rounds):
                    wall, replies = await send_all(pool, host, port, health_targets)
                    health_walls.append(wall)
                    for reply in replies:
                        if reply.status != 200:
                            result.error(f"/healthz answered {reply.status}")
                    before = camera.commands
                    wall, replies = await send_all(pool, host, port, logs_targets)
                    logs_walls.append(wall)
                    await camera.wait_commands(before + 1)
                    trips.append(camera.commands - before)
                    check(result, replies, answers)
        finally:
            await close_pool(pool)
        result.notes.extend(f"profile: {line}" for line in profile.lines)
        result.errors_from("camera", camera.problems())
        result.errors_from("server", server.problems())
    result.figure("callers per burst", params.size)
    result.figure("bursts", params.rounds)
    result.figure("healthz burst wall ms (median)", round(1000 * median(health_walls), 1))
    result.figure("logs burst wall ms (median)", round(1000 * median(logs_walls), 1))
    result.figure("round trips per burst", ",".join(map(str, trips)))
    worst = max(ratio(lw, hw) for lw, hw in zip(logs_walls, health_walls, strict=True))
    result.figure("worst burst wall ratio", round(worst, 2))
    result.target("inexact answers", result.errors.get(INEXACT, 0), "<=", 0)
    result.target("round trips (worst burst)", max(trips), "<=", 4)
    result.target(
        "wall ratio logs/healthz (median)",
        round(ratio(median(logs_walls), median(health_walls)), 2),
        "<=",
        3.0,
        "x",
    )
    return result


INEXACT: Final = "/logs answered other entries than the range holds"


def check(
    result: ScenarioResult, replies: Sequence[Reply], answers: Sequence[Sequence[Entry]]
) -> None:
    for reply, answer in zip(replies, answers, strict=True):
        if reply.status != 200:
            result.error(f"/logs answered {reply.status}: {reply.body[:200]!r}")
        elif orjson.loads(reply.body)["logs"] != answer:
            result.error(INEXACT)


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
