"""How big each scenario runs: the full set, or ``--quick`` for the test suite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FULL", "QUICK", "Context", "Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    #: latency: sequential /healthz + /logs pairs measured (after the warm-up ones)
    latency_rounds: int
    latency_warmup: int
    latency_entries: int
    #: burst: concurrent /logs per burst, bursts, entries in the camera's log
    burst_size: int
    burst_rounds: int
    burst_entries: int
    #: fleet: cameras per step; True adds a step with as many as the fd hard limit allows
    fleet_sizes: tuple[int, ...]
    fleet_fill_fd_limit: bool
    fleet_idle_seconds: float
    #: fan-out: online cameras, one /logs each, all at once
    fanout_cameras: int
    #: big log: entries in the camera's log (about 100 bytes of JSON each); runs
    biglog_entries: int
    biglog_runs: int
    #: big fleet: cameras answering at once, entries each, MAX_RESULT_BYTES_IN_FLIGHT
    bigfleet_cameras: int
    bigfleet_entries: int
    bigfleet_budget_bytes: int
    #: soak: /logs cycles in all, the first ``soak_warmup`` of them warm up
    soak_cycles: int
    soak_warmup: int
    soak_concurrency: int
    soak_abandon_every: int
    #: a scenario that runs longer than this is stopped and reported as an error
    scenario_timeout_seconds: float


FULL = Plan(
    name="full",
    latency_rounds=1000,
    latency_warmup=50,
    latency_entries=100,
    burst_size=1000,
    burst_rounds=3,
    burst_entries=2000,
    fleet_sizes=(10_000,),
    fleet_fill_fd_limit=True,
    fleet_idle_seconds=10.0,
    fanout_cameras=1000,
    biglog_entries=100_000,
    biglog_runs=2,
    bigfleet_cameras=20,
    bigfleet_entries=100_000,
    bigfleet_budget_bytes=64 * 1024 * 1024,
    soak_cycles=20_000,
    soak_warmup=2_000,
    soak_concurrency=4,
    soak_abandon_every=100,
    scenario_timeout_seconds=300.0,
)

QUICK = Plan(
    name="quick",
    latency_rounds=40,
    latency_warmup=5,
    latency_entries=100,
    burst_size=50,
    burst_rounds=1,
    burst_entries=200,
    fleet_sizes=(20,),
    fleet_fill_fd_limit=False,
    fleet_idle_seconds=1.0,
    fanout_cameras=10,
    biglog_entries=2_000,
    biglog_runs=1,
    bigfleet_cameras=4,
    bigfleet_entries=2_000,
    bigfleet_budget_bytes=256 * 1024,
    soak_cycles=300,
    soak_warmup=50,
    soak_concurrency=4,
    soak_abandon_every=25,
    scenario_timeout_seconds=60.0,
)


@dataclass(frozen=True, slots=True)
class Context:
    """What every scenario gets: the plan, a scratch folder, where to put profiles."""

    plan: Plan
    workdir: Path
    profile_dir: Path | None = None
