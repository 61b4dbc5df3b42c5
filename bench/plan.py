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
    #: console: cameras (at least; True: as many as the fd hard limit allows), and the
    #: window over which the open page's live updates are measured
    console_cameras: int
    console_fill_fd_limit: bool
    console_window_seconds: float
    #: console: entries in the log the log view shows
    console_log_entries: int
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
    #: flood: new camera ids, one short poll each, against MAX_CAMERAS = flood_max_cameras;
    #: polls in flight at once, polls started a second; the server's hold and connect
    #: timeouts (how soon the ids, which never answer a command, are forgotten: their sum)
    flood_ids: int
    flood_max_cameras: int
    flood_concurrency: int
    flood_rate: float
    flood_poll_hold_seconds: float
    flood_connect_timeout_seconds: float
    #: idle: half-requests in the flood, the server's fd limit (below the flood), header deadline
    idle_connections: int
    idle_server_fd_limit: int
    idle_header_timeout_seconds: float
    #: cluster-fanout: online cameras, one /logs each, against --workers 2 and one process
    cluster_fanout_cameras: int
    #: cluster-fleet: idle cameras over 2 nodes, the idle window, the hold during it
    cluster_fleet_cameras: int
    cluster_fleet_window_seconds: float
    cluster_fleet_hold_seconds: float
    #: cluster-kill: online cameras in the fan-out during which a worker is killed
    cluster_kill_cameras: int
    cluster_kill_node_timeout_seconds: float
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
    console_cameras=10_000,
    console_fill_fd_limit=True,
    console_window_seconds=10.0,
    console_log_entries=100_000,
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
    flood_ids=50_000,
    flood_max_cameras=20_000,
    flood_concurrency=1000,
    flood_rate=500.0,
    flood_poll_hold_seconds=45.0,
    flood_connect_timeout_seconds=10.0,
    idle_connections=20_000,
    idle_server_fd_limit=8_000,
    idle_header_timeout_seconds=2.0,
    cluster_fanout_cameras=2000,
    cluster_fleet_cameras=20_000,
    cluster_fleet_window_seconds=20.0,
    cluster_fleet_hold_seconds=10.0,
    cluster_kill_cameras=500,
    cluster_kill_node_timeout_seconds=5.0,
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
    console_cameras=60,
    console_fill_fd_limit=False,
    console_window_seconds=0.5,
    console_log_entries=1_000,
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
    flood_ids=300,
    flood_max_cameras=200,
    flood_concurrency=100,
    flood_rate=500.0,
    flood_poll_hold_seconds=1.0,
    flood_connect_timeout_seconds=1.0,
    idle_connections=600,
    idle_server_fd_limit=480,
    idle_header_timeout_seconds=0.5,
    cluster_fanout_cameras=20,
    cluster_fleet_cameras=100,
    cluster_fleet_window_seconds=0.5,
    cluster_fleet_hold_seconds=0.5,
    cluster_kill_cameras=20,
    cluster_kill_node_timeout_seconds=1.0,
    scenario_timeout_seconds=60.0,
)


@dataclass(frozen=True, slots=True)
class Context:
    """What every scenario gets: the plan, a scratch folder, where to put profiles."""

    plan: Plan
    workdir: Path
    profile_dir: Path | None = None
