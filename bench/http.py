"""The harness's HTTP client side: sessions, timed requests, reading ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from bench.procstat import cpu_seconds

__all__ = [
    "Reply",
    "client_session",
    "cpu_per_request",
    "fetch",
    "gauge",
    "read_metrics",
    "wait_for",
]

#: Generous: a /logs call ends within connect + response timeouts (40 s) plus a second.
REQUEST_TIMEOUT: Final = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    seconds: float


def client_session(limit: int = 0) -> aiohttp.ClientSession:
    """A session whose pool keeps up to ``limit`` connections (0: no limit)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit)
    return aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)


async def fetch(
    http: aiohttp.ClientSession, url: str | URL, params: Mapping[str, str] | None = None
) -> Reply:
    """GET ``url``; the time covers sending the request and reading the whole body."""
    started = time.perf_counter()
    async with http.get(url, params=params) as response:
        body = await response.read()
        status = response.status
    return Reply(status, body, time.perf_counter() - started)


async def read_metrics(http: aiohttp.ClientSession, base_url: str) -> dict[str, float]:
    """The server's ``/metrics`` samples, keyed by name with labels (``a{b="c"}``)."""
    reply = await fetch(http, f"{base_url}/metrics")
    if reply.status != 200:
        raise RuntimeError(f"/metrics answered {reply.status}")
    samples: dict[str, float] = {}
    for line in reply.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        samples[name] = float(value)
    return samples


async def gauge(http: aiohttp.ClientSession, base_url: str, name: str) -> float:
    return (await read_metrics(http, base_url)).get(name, 0.0)


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.1
) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` passes (False)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(interval)
    except TimeoutError:
        return False
    return True


@contextlib.asynccontextmanager
async def healthz_watch(
    http: aiohttp.ClientSession, base_url: str, pause: float = 0.0
) -> AsyncIterator[list[float]]:
    """``/healthz`` asked while the block runs, ``pause`` seconds after each answer (back
    to back by default); its latencies (seconds)."""
    latencies: list[float] = []

    async def ask_forever() -> None:
        while True:
            reply = await fetch(http, f"{base_url}/healthz")
            latencies.append(reply.seconds)
            if pause:
                await asyncio.sleep(pause)

    task = asyncio.create_task(ask_forever(), name="healthz-watch")
    try:
        yield latencies
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cpu_per_request(
    http: aiohttp.ClientSession,
    url: URL,
    server_pid: int,
    camera_pid: int,
    count: int,
) -> dict[str, float]:
    """CPU seconds each process spends per request, over a run of one kind of request."""
    before = (cpu_seconds(server_pid), cpu_seconds(camera_pid), time.process_time())
    for _ in range(count):
        await fetch(http, url)
    after = (cpu_seconds(server_pid), cpu_seconds(camera_pid), time.process_time())
    server, camera, client = ((a - b) / count for a, b in zip(after, before, strict=True))
    return {"server": server, "camera": camera, "client": client}
