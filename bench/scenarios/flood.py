"""flood: one short poll from each of many new camera ids, with ``CAMERA_SECRET`` off.

A separate process (``python -m bench.flooder``) polls once from each of
``flood_ids`` ids never seen before, ``flood_rate`` polls a second (a rate the
server sustains on this VM: at full speed it is CPU-bound and ``/healthz``
measures the overload), and hangs up after 0.2 s, against a server whose
``MAX_CAMERAS`` is below that count. The retention of these ids (hold plus
connect timeout) is longer than the time the cap takes to fill, so the
registry fills and stays full. Meanwhile ``/healthz`` is timed every 10 ms and
``camrelay_cameras_known`` sampled. Once full, three more new ids must get 503
with ``Retry-After`` no sooner than the refusal delay (1 s). After the flood
``/cameras`` is timed at its fullest, and the registry must empty by itself
(ids that never answered a command are forgotten once unseen past
``POLL_HOLD_SECONDS + CONNECT_TIMEOUT_SECONDS``), ``/healthz`` still timed
while the sweep forgets them. The server logs at INFO: lines about
cameras coming, going and being refused are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

from bench.fixtures import RelayServer, relay_server
from bench.http import client_session, fetch, gauge, wait_for
from bench.plan import Context, Scenario
from bench.procstat import reset_peak_rss
from bench.result import ScenarioResult
from bench.stats import median, percentile
from tools.procs import child_env, python, running, spawn

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "flood"
KNOWN: Final = "camrelay_cameras_known"
REFUSED: Final = "camrelay_cameras_refused_total"
#: the server's delay before it answers a refused poll (Settings.camera_refusal_delay_seconds)
REFUSAL_DELAY_SECONDS: Final = 1.0
HEALTHZ_INTERVAL: Final = 0.01
#: the only /metrics reads while /healthz is timed: each walks every session (some
#: 20-40 ms at 20,000), so once a second, as an eager Prometheus would
KNOWN_SAMPLE_INTERVAL: Final = 1.0
SAMPLE_REFUSALS: Final = 3
CAMERAS_TIMINGS: Final = 3
#: the sweep runs every min(5 s, CONNECT_TIMEOUT_SECONDS)
SWEEP_INTERVAL_SECONDS: Final = 5.0
#: server lines that are not errors: start-up, stop, and the (rate-limited) camera events
EXPECTED_LINES: Final = ("starting with", "open-file limit", "listening on", "stopped")
CAMERA_LINES: Final = {"online": " online", "offline": " offline", "refused": "refused a poll"}
KB: Final = 1024
MB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Params:
    """The flood scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: new camera ids, one short poll each, against MAX_CAMERAS = max_cameras;
    #: polls in flight at once, polls started a second; the server's hold and connect
    #: timeouts (how soon the ids, which never answer a command, are forgotten: their sum)
    ids: int
    max_cameras: int
    concurrency: int
    rate: float
    poll_hold_seconds: float
    connect_timeout_seconds: float


FULL: Final = Params(
    ids=50_000,
    max_cameras=20_000,
    concurrency=1000,
    rate=500.0,
    poll_hold_seconds=45.0,
    connect_timeout_seconds=10.0,
)
QUICK: Final = Params(
    ids=300,
    max_cameras=200,
    concurrency=100,
    rate=500.0,
    poll_hold_seconds=1.0,
    connect_timeout_seconds=1.0,
)


@dataclass(slots=True)
class Probe:
    """``/healthz`` latencies (when sent, seconds) and the most cameras known at once."""

    healthz: list[tuple[float, float]] = field(default_factory=list)
    known: int = 0
    known_max: int = 0
    #: set once the registry holds MAX_CAMERAS
    full: asyncio.Event = field(default_factory=asyncio.Event)

    def healthz_between(self, start: float, end: float) -> list[float]:
        return [latency for sent, latency in self.healthz if start <= sent < end]


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    cap = params.max_cameras
    hold, connect = params.poll_hold_seconds, params.connect_timeout_seconds
    probe = Probe()
    async with (
        relay_server(
            ctx,
            MAX_CAMERAS=str(cap),
            POLL_HOLD_SECONDS=f"{hold:g}",
            CONNECT_TIMEOUT_SECONDS=f"{connect:g}",
            LOG_LEVEL="INFO",
        ) as server,
        client_session() as http,
    ):
        await asyncio.sleep(0.5)
        before = server.memory().rss
        reset_peak_rss(server.pid)
        async with probing(http, server, probe, cap):
            flood_started = time.perf_counter()
            flooder = asyncio.create_task(run_flooder(ctx, params, server))
            # While the flood goes on, once full (and before any id could be forgotten):
            full_or_done = asyncio.create_task(probe.full.wait())
            await asyncio.wait([flooder, full_or_done], return_when=asyncio.FIRST_COMPLETED)
            full_or_done.cancel()
            is_full = probe.full.is_set() or await gauge(http, server.url, KNOWN) >= cap
            await check_refusals(http, server, result, is_full)
            summary = await flooder
            flood_ended = time.perf_counter()
            full = server.memory()
            known_after_flood = int(await gauge(http, server.url, KNOWN))
            cameras_ms, cameras_bytes, listed = await time_cameras(http, server)
            refused = int(await gauge(http, server.url, REFUSED))
            after_started = time.perf_counter()
            drain_limit = hold + connect + 2 * min(SWEEP_INTERVAL_SECONDS, connect) + 15

            async def drained() -> bool:
                return probe.known == 0

            if not await wait_for(drained, drain_limit, interval=0.1):
                result.error(f"the registry did not empty within {drain_limit:g} s")
            after_ended = time.perf_counter()
            await asyncio.sleep(0.5)
        emptied = server.memory().rss
        lines = server.child.stderr_lines()
        result.errors_from("server", server.problems(*EXPECTED_LINES, *CAMERA_LINES.values()))

    during = probe.healthz_between(flood_started, flood_ended)
    after = probe.healthz_between(after_started, after_ended)
    answers: dict[str, int] = summary["answers"]
    for kind, count in summary["errors"].items():
        result.error(f"flooder: {count} polls failed with {kind}")
    result.figure("new ids polled", params.ids)
    result.figure("MAX_CAMERAS", cap)
    result.figure("flood wall s", summary["seconds"])
    result.figure("polls per s", round(params.ids / summary["seconds"]))
    result.figure(
        "answers 200 / 503 / hung up",
        "/".join(str(answers.get(key, 0)) for key in ("200", "503", "none")),
    )
    result.figure("refused (metric)", refused)
    result.figure("cameras known after the flood", known_after_flood)
    result.figure("server RSS before MB", round(before / MB, 1))
    result.figure("server RSS peak MB", round(full.hwm / MB, 1))
    result.figure("server RSS after the flood MB", round(full.rss / MB, 1))
    if known_after_flood:
        result.figure(
            "server RSS per known id KB", round((full.rss - before) / known_after_flood / KB, 2)
        )
    result.figure("server RSS once the registry emptied MB", round(emptied / MB, 1))
    result.figure("registry emptied after s", round(after_ended - after_started, 1))
    result.figure("/cameras ms (median of 3, registry full)", round(cameras_ms, 1))
    result.figure("/cameras body KB", round(cameras_bytes / KB))
    result.figure("/cameras entries", listed)
    for phase, latencies in (("during the flood", during), ("while the sweep empties", after)):
        result.figure(f"/healthz p50 ms {phase}", round(1000 * median(latencies), 2))
        result.figure(f"/healthz p99 ms {phase}", round(1000 * percentile(latencies, 99), 2))
        result.figure(f"/healthz max ms {phase}", round(1000 * max(latencies, default=0.0), 1))
        result.figure(f"/healthz samples {phase}", len(latencies))
    counts = {
        kind: sum(fragment in line for line in lines) for kind, fragment in CAMERA_LINES.items()
    }
    for kind, count in counts.items():
        result.figure(f"server log lines: {kind}", count)
    result.target("most cameras known at once", probe.known_max, "<=", cap)
    result.target(
        "refusal log lines per flood second",
        round(counts["refused"] / max(summary["seconds"] + REFUSAL_DELAY_SECONDS, 1.0), 2),
        "<=",
        1.0,
    )
    return result


@contextlib.asynccontextmanager
async def probing(
    http: aiohttp.ClientSession, server: RelayServer, probe: Probe, cap: int
) -> AsyncIterator[None]:
    """Time ``/healthz`` and sample the registry's size until the block ends."""

    async def time_healthz() -> None:
        async with client_session(limit=1) as own:
            while True:
                sent = time.perf_counter()
                reply = await fetch(own, f"{server.url}/healthz")
                if reply.status == 200:
                    probe.healthz.append((sent, reply.seconds))
                await asyncio.sleep(HEALTHZ_INTERVAL)

    async def sample_known() -> None:
        while True:
            probe.known = known = int(await gauge(http, server.url, KNOWN))
            probe.known_max = max(probe.known_max, known)
            if known >= cap:
                probe.full.set()
            await asyncio.sleep(KNOWN_SAMPLE_INTERVAL)

    tasks = [asyncio.create_task(time_healthz()), asyncio.create_task(sample_known())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_flooder(ctx: Context, params: Params, server: RelayServer) -> dict[str, Any]:
    argv = python(
        "-m",
        "bench.flooder",
        f"--base-url={server.url}",
        f"--ids={params.ids}",
        f"--concurrency={params.concurrency}",
        f"--rate={params.rate}",
    )
    child = await spawn("flooder", argv, child_env({}), ctx.workdir, capture_stdout=True)
    async with running(child):
        stdout = child.process.stdout
        assert stdout is not None
        line = await stdout.readline()
    if not line:
        raise RuntimeError(f"the flooder printed nothing: {child.stderr_lines()[-3:]}")
    summary: dict[str, Any] = orjson.loads(line)
    return summary


async def time_cameras(http: aiohttp.ClientSession, server: RelayServer) -> tuple[float, int, int]:
    """``GET /cameras``: median wall ms, body bytes, cameras listed."""
    timings: list[float] = []
    body = b""
    for _ in range(CAMERAS_TIMINGS):
        reply = await fetch(http, f"{server.url}/cameras")
        if reply.status != 200:
            raise RuntimeError(f"/cameras answered {reply.status}")
        timings.append(reply.seconds)
        body = reply.body
    return 1000 * median(timings), len(body), len(orjson.loads(body)["cameras"])


async def check_refusals(
    http: aiohttp.ClientSession, server: RelayServer, result: ScenarioResult, full: bool
) -> None:
    """New ids while the registry is full: 503 + Retry-After, no sooner than the delay."""
    if not full:
        result.error("the registry never reached MAX_CAMERAS during the flood")
        return

    async def refused(camera_id: str) -> tuple[int, str | None, float]:
        started = time.perf_counter()
        async with http.get(
            f"{server.url}/poll_for_command", params={"cameraId": camera_id}
        ) as response:
            await response.read()
            return (
                response.status,
                response.headers.get("Retry-After"),
                time.perf_counter() - started,
            )

    answers = await asyncio.gather(*(refused(f"late-{n}") for n in range(SAMPLE_REFUSALS)))
    for status, retry_after, seconds in answers:
        if status != 503 or retry_after is None:
            result.error(f"a new id past MAX_CAMERAS got {status} (Retry-After {retry_after})")
        elif seconds < REFUSAL_DELAY_SECONDS:
            result.error(f"a refusal came after {seconds:.2f} s, before the delay")
    result.figure("refusal answered after s (min)", round(min(s for _, _, s in answers), 2))


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
