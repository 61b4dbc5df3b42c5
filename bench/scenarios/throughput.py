"""throughput: sustained ``GET /logs`` against ``GET /healthz`` on one server, many connections.

One bench camera answers 100 entries; ``wrk`` (or, without it, ``python -m
bench.loadgen``) keeps ``connections`` keep-alive connections busy for
``seconds``, first on ``/healthz``, then on ``/logs``, alternately ``rounds``
times, so machine noise hits both alike. Callers arriving while a command is
out share the next one (coalescing), so a camera round trip serves many
callers. Run once with the camera's body compact (``orjson``) and once as
Python's ``json.dumps`` writes it by default (``", "`` between entries, as the
exercise's original camera sends it). The figure is ``/logs`` req/s over
``/healthz`` req/s; the server's CPU per request is read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from typing import Final

import orjson
from yarl import URL

from bench.fixtures import RelayServer, log_camera, relay_server
from bench.http import client_session, fetch
from bench.logdata import make_log
from bench.plan import Context, Scenario
from bench.procstat import cpu_seconds
from bench.profiling import profiled
from bench.result import ScenarioResult
from tools.procs import python

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Load", "Params", "measure_load", "run"]

NAME: Final = "throughput"
CAMERA_ID: Final = "tput"
#: the client's own threads (wrk): one, so the server and the camera keep a core between them
WRK_THREADS: Final = 1
_LATENCY_LINE: Final = re.compile(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True, slots=True)
class Params:
    """The throughput scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    connections: int
    #: length of each measured run of one kind
    seconds: float
    #: /healthz then /logs, this many times
    rounds: int
    entries: int


FULL: Final = Params(connections=100, seconds=5.0, rounds=2, entries=100)
QUICK: Final = Params(connections=4, seconds=0.3, rounds=1, entries=100)


@dataclass(slots=True)
class Load:
    requests: int = 0
    seconds: float = 0.0
    failures: int = 0
    server_cpu: float = 0.0
    #: the median of each run's p50 (ms)
    p50s: list[float] | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _wrk(url: str, connections: int, seconds: float) -> tuple[int, float, int, float]:
    """requests, seconds, failed (non-2xx or socket errors but timeouts at the end), p50 ms."""
    duration = max(1, round(seconds))
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    text = out.decode()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {err.decode()[:300]}")
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output: {text[:300]!r}")
    requests = int(found.group(1))
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[found.group(3)]
    elapsed = float(found.group(2)) * scale
    failed = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        failed += int(non_2xx.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", text)
    if sockets:
        failed += sum(int(sockets.group(i)) for i in (1, 2, 3))
    latency = _LATENCY_LINE.search(text)
    p50 = float(latency.group(1)) * _UNITS[latency.group(2)] if latency else 0.0
    return requests, elapsed, failed, p50


async def _loadgen(url: str, connections: int, seconds: float) -> tuple[int, float, int, float]:
    process = await asyncio.create_subprocess_exec(
        *python("-m", "bench.loadgen", url, f"--connections={connections}", f"--seconds={seconds}"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen exited with {process.returncode}: {err.decode()[:300]}")
    figures = orjson.loads(out)
    failed = int(figures["non_2xx"]) + int(figures["errors"])
    return int(figures["requests"]), float(figures["seconds"]), failed, float(figures["p50_ms"])


async def measure_load(server: RelayServer, url: str, params: Params, load: Load) -> None:
    """Keep ``params.connections`` busy on ``url`` for ``params.seconds``; add it to ``load``."""
    drive = _wrk if shutil.which("wrk") else _loadgen
    before = cpu_seconds(server.pid)
    requests, seconds, failed, p50 = await drive(url, params.connections, params.seconds)
    load.server_cpu += cpu_seconds(server.pid) - before
    load.requests += requests
    load.seconds += seconds
    load.failures += failed
    load.p50s = [*(load.p50s or []), p50]


async def _style(ctx: Context, params: Params, result: ScenarioResult, *, spaced: bool) -> None:
    style = "spaced" if spaced else "compact"
    expected = make_log(params.entries)
    healthz, logs = Load(), Load()
    async with (
        relay_server(ctx) as server,
        log_camera(ctx, server, params.entries, CAMERA_ID, spaced=spaced) as camera,
        client_session() as http,
    ):
        health_url = f"{server.url}/healthz"
        logs_url = str(URL(f"{server.url}/logs").with_query(cameraId=CAMERA_ID))
        reply = await fetch(http, logs_url)
        if reply.status != 200:
            result.error(f"{style}: /logs answered {reply.status}: {reply.body[:200]!r}")
            return
        if orjson.loads(reply.body)["logs"] != expected:
            result.error(f"{style}: /logs answered other logs than the camera's")
        if spaced and b", " not in reply.body:
            result.error(f"{style}: the answer lost the camera's own separators")
        if params.seconds >= 1:  # a short warm-up of each kind (not measured)
            warm, once = Load(), Params(params.connections, 1.0, 1, 0)
            await measure_load(server, health_url, once, warm)
            await measure_load(server, logs_url, once, warm)
        async with profiled(ctx, f"{NAME}-{style}", server.pid) as profile:
            for _ in range(params.rounds):
                await asyncio.sleep(0.2)
                await measure_load(server, health_url, params, healthz)
                await asyncio.sleep(0.2)
                await measure_load(server, logs_url, params, logs)
        result.notes.extend(f"profile {style}: {line}" for line in profile.lines)
        # The camera's 404s come from callers wrk cut at the end of each run: expected.
        result.errors_from("camera", camera.errors)
        result.figure(f"{style}: camera round trips", camera.commands)
        # ... and the server's warnings for them.
        result.errors_from("server", server.problems(f"result from camera {CAMERA_ID}: late"))
    for name, load in (("healthz", healthz), ("logs", logs)):
        if load.failures:
            result.error(f"{style}: {load.failures} failed {name} requests")
        result.figure(f"{style}: {name} req/s", round(load.rate))
        p50s = sorted(load.p50s or [0.0])
        result.figure(f"{style}: {name} p50 ms (load)", round(p50s[len(p50s) // 2], 3))
        per = load.server_cpu / load.requests if load.requests else 0.0
        result.figure(f"{style}: {name} server CPU per request us", round(1e6 * per))
    share = logs.rate / healthz.rate if healthz.rate else 0.0
    result.target(f"{style}: /logs req/s / /healthz req/s", round(share, 2), ">=", 0.75, "x")


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    result.figure("load generator", "wrk" if shutil.which("wrk") else "bench.loadgen")
    for spaced in (False, True):
        await _style(ctx, params, result, spaced=spaced)
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
