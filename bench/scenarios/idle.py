"""idle: 20,000 idle half-requests from two client processes, against a server at its fd limit.

The server runs with ``HEADER_TIMEOUT_SECONDS=2`` and an open-file limit (soft
and hard) of 8,000: the server accepts a connection in some 100-200 us of CPU,
so on a loaded machine only about that many are open at once before the first
ones reach their deadline, and a higher limit may never be reached. Two
``python -m bench.idleflood`` processes open 10,000 connections each, as fast as
they can, and send half a request on each. What the listen queue (4,096) cannot
hold is dropped and retried by the clients' kernels (1, 3, 7 s later), as it
would be for any flood. Meanwhile ``/healthz`` is probed, one probe after
another, each on a new connection with a 10 s timeout.

The target is on the slowest probe: a ``/healthz`` sent at any time during the
flood is answered within the header deadline plus 2 s. Also reported: the
outage (from the start of the first probe over 0.5 s, or failed, to the end of
the last one) and the recovery (from the server's first accept pause, the time
on its log line, to the end of that last slow probe), the lines the server
logged, the accept pauses and header-deadline closes it counted, and what the
clients saw.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiohttp
import orjson

from bench.fixtures import RelayServer, relay_server
from bench.http import client_session, read_metrics
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from tools.procs import HOST, child_env, python, spawn, stop

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "idle"
CLIENT_PROCESSES: Final = 2
PROBE_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
#: a probe slower than this counts as /healthz not answering
PROMPT_SECONDS: Final = 0.5
PROBE_INTERVAL_SECONDS: Final = 0.02
#: "recovers within the deadline plus this"
RECOVERY_MARGIN_SECONDS: Final = 2.0
LOG_LINES_LIMIT: Final = 100


Probe = tuple[float, float, bool]


@dataclass(frozen=True, slots=True)
class Params:
    """The idle scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: half-requests in the flood, the server's fd limit (below the flood), header deadline
    connections: int
    server_fd_limit: int
    header_timeout_seconds: float


FULL: Final = Params(connections=20_000, server_fd_limit=8_000, header_timeout_seconds=2.0)
QUICK: Final = Params(connections=600, server_fd_limit=480, header_timeout_seconds=0.5)


async def probe_healthz(url: str, outcomes: list[Probe], stop: asyncio.Event) -> None:
    """Probe until ``stop``; each outcome is (wall-clock start, end, answered 200)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=PROBE_TIMEOUT) as http:
        while not stop.is_set():
            started = time.time()
            try:
                async with http.get(f"{url}/healthz") as response:
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            outcomes.append((started, time.time(), ok))
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)


def slow_span(outcomes: list[Probe]) -> tuple[float, float] | None:
    """(start of the first slow or failed probe, end of the last one), or None."""
    slow = [(start, end) for start, end, ok in outcomes if not ok or end - start > PROMPT_SECONDS]
    return (slow[0][0], slow[-1][1]) if slow else None


def first_pause_time(lines: list[str]) -> float | None:
    """The wall-clock time of the server's first "accepting paused" line."""
    for line in lines:
        if "accepting paused" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    deadline = params.header_timeout_seconds
    hold = deadline * 4 + 10
    async with relay_server(
        ctx, fd_limit=params.server_fd_limit, HEADER_TIMEOUT_SECONDS=f"{deadline:g}"
    ) as server:
        port = server.url.rsplit(":", 1)[1]
        outcomes: list[Probe] = []
        stop_probing = asyncio.Event()
        prober = asyncio.create_task(probe_healthz(server.url, outcomes, stop_probing))
        started = time.perf_counter()
        per_client = params.connections // CLIENT_PROCESSES
        clients = [
            await spawn(
                f"idleflood-{n}",
                python("-m", "bench.idleflood", HOST, port, str(per_client), f"{hold:g}"),
                child_env({}),
                ctx.workdir,
                capture_stdout=True,
            )
            for n in range(CLIENT_PROCESSES)
        ]
        reports = []
        for client in clients:
            stdout, _ = await client.process.communicate()
            await stop(client)
            if client.process.returncode != 0 or not stdout.strip():
                result.error(f"{client.name} failed: {'; '.join(client.stderr_lines()[-3:])}")
                continue
            reports.append(orjson.loads(stdout))
        flood_seconds = time.perf_counter() - started
        stop_probing.set()
        await prober
        await report(result, server, reports, outcomes, deadline, flood_seconds)
    return result


async def report(
    result: ScenarioResult,
    server: RelayServer,
    reports: list[dict[str, object]],
    outcomes: list[Probe],
    deadline: float,
    flood_seconds: float,
) -> None:
    async with client_session() as http:
        metrics = await read_metrics(http, server.url)
    lines = server.child.stderr_lines()
    span = slow_span(outcomes)
    outage = span[1] - span[0] if span else 0.0
    paused_at = first_pause_time(lines)
    recovery = span[1] - paused_at if span and paused_at else float("nan")
    pauses = metrics.get("camrelay_accept_pauses_total", 0.0)
    for key in ("connected", "closed_by_server", "still_open", "unconnected"):
        result.figure(f"flood {key}", sum(int(str(r[key])) for r in reports))
    medians = [
        float(str(r["median_open_to_close_s"])) for r in reports if r["median_open_to_close_s"]
    ]
    if medians:
        result.figure("median open-to-close s", round(max(medians), 2))
    result.figure("flood wall s", round(flood_seconds, 2))
    result.figure("healthz probes", len(outcomes))
    result.figure("healthz probes failed", sum(1 for _, _, ok in outcomes if not ok))
    slowest = max((end - start for start, end, _ in outcomes), default=float("nan"))
    result.figure("healthz slowest probe s", round(slowest, 2))
    result.figure("healthz outage s", round(outage, 2))
    result.figure("healthz recovery after the first accept pause s", round(recovery, 2))
    result.figure("accept pauses", int(pauses))
    result.figure(
        "header-deadline closes", int(metrics.get("camrelay_http_header_timeouts_total", 0))
    )
    result.figure("server log lines", len(lines))
    result.target("flood reached the fd limit (accept pauses)", pauses, ">=", 1)
    result.target("slowest healthz probe", slowest, "<=", deadline + RECOVERY_MARGIN_SECONDS, "s")
    result.target("server log lines", len(lines), "<", LOG_LINES_LIMIT)
    if any("Traceback" in line for line in lines):
        result.error("the server logged a traceback")


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
