"""Sequential ``/healthz`` and ``/logs``, interleaved on one keep-alive connection.

Machine noise hits both kinds alike. Each request comes after a short pause in
which the camera's next poll arrives: a ``/healthz`` sent while the camera
re-polls after a ``/logs`` would pay for that poll, and a ``/logs`` sent before
it arrives would wait for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from bench.http import fetch
from bench.result import ScenarioResult

__all__ = ["GAP_SECONDS", "Timings", "interleave"]

#: Before each request the system is let settle (the camera polls again after
#: each result), so neither kind of request pays for the other's aftermath.
GAP_SECONDS: Final = 0.002


@dataclass(slots=True)
class Timings:
    """Seconds each measured request took, by kind."""

    healthz: list[float] = field(default_factory=list)
    logs: list[float] = field(default_factory=list)


async def interleave(
    http: aiohttp.ClientSession,
    health_url: URL,
    logs_url: URL,
    expected: list[Any],
    *,
    warmup: int,
    rounds: int,
    result: ScenarioResult,
    label: str = "",
) -> Timings:
    """``warmup + rounds`` pairs; an error in ``result`` for any answer but 200 with
    ``expected`` as its logs (``label`` prefixes the error)."""
    timings = Timings()
    prefix = f"{label}: " if label else ""
    for i in range(warmup + rounds):
        await asyncio.sleep(GAP_SECONDS)
        health = await fetch(http, health_url)
        await asyncio.sleep(GAP_SECONDS)
        reply = await fetch(http, logs_url)
        if health.status != 200:
            result.error(f"{prefix}/healthz answered {health.status}")
        if reply.status != 200:
            result.error(f"{prefix}/logs answered {reply.status}: {reply.body[:200]!r}")
        elif orjson.loads(reply.body)["logs"] != expected:
            result.error(f"{prefix}/logs answered other logs than the camera's")
        if i >= warmup:
            timings.healthz.append(health.seconds)
            timings.logs.append(reply.seconds)
    return timings
