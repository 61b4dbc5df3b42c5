"""One module per scenario; each owns its size and is registered here.

A scenario module defines ``NAME``, ``async def run(ctx, params) -> ScenarioResult``,
its parameters (a ``Params`` dataclass with a ``FULL`` and a ``QUICK`` instance)
and ``SCENARIO = Scenario(NAME, run, FULL, QUICK)``; adding one to the harness
(``python -m bench``, ``--quick`` and tests/test_bench.py) is adding it to the
list below, in the order ``python -m bench`` runs them.
"""

from __future__ import annotations

from typing import Any, Final

from bench.plan import Scenario
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
    floor,
    idle,
    latency,
    renewal,
    sizing,
    sizing_redis,
    soak,
    throughput,
)

__all__ = ["SCENARIOS"]

SCENARIOS: Final[dict[str, Scenario[Any]]] = {
    scenario.name: scenario
    for scenario in (
        latency.SCENARIO,
        throughput.SCENARIO,
        floor.SCENARIO,
        burst.SCENARIO,
        fleet.SCENARIO,
        renewal.SCENARIO,
        console.SCENARIO,
        fanout.SCENARIO,
        biglog.SCENARIO,
        bigfleet.SCENARIO,
        soak.SCENARIO,
        flood.SCENARIO,
        idle.SCENARIO,
        cluster_latency.SCENARIO,
        cluster_fanout.SCENARIO,
        cluster_burst.SCENARIO,
        cluster_fleet.SCENARIO,
        cluster_kill.SCENARIO,
        sizing.SCENARIO,
        sizing_redis.SCENARIO,
    )
}
