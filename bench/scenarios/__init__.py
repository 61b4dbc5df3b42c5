"""One module per scenario; each exposes ``NAME`` and ``async def run(ctx) -> ScenarioResult``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from bench.plan import Context
from bench.result import ScenarioResult
from bench.scenarios import (
    bigfleet,
    biglog,
    burst,
    cluster_burst,
    cluster_fanout,
    cluster_fleet,
    cluster_kill,
    cluster_latency,
    console,
    fanout,
    fleet,
    flood,
    idle,
    latency,
    soak,
)

__all__ = ["SCENARIOS", "Scenario"]

Scenario = Callable[[Context], Awaitable[ScenarioResult]]

SCENARIOS: Final[dict[str, Scenario]] = {
    latency.NAME: latency.run,
    burst.NAME: burst.run,
    fleet.NAME: fleet.run,
    console.NAME: console.run,
    fanout.NAME: fanout.run,
    biglog.NAME: biglog.run,
    bigfleet.NAME: bigfleet.run,
    soak.NAME: soak.run,
    flood.NAME: flood.run,
    idle.NAME: idle.run,
    cluster_latency.NAME: cluster_latency.run,
    cluster_fanout.NAME: cluster_fanout.run,
    cluster_burst.NAME: cluster_burst.run,
    cluster_fleet.NAME: cluster_fleet.run,
    cluster_kill.NAME: cluster_kill.run,
}
