"""``python -m bench.sizing_model``: docs/SIZING.md's tables, from measured per-camera costs.

The ``sizing`` scenario measures what an idle camera costs nodes and Redis (per camera
and per completed poll, at 5k, 10k and 20k cameras) and ``sizing-redis`` what Redis
does with a million, and what one refresh of an idle camera's entry costs it (the
status write its home makes every ``STATUS_REFRESH_SECONDS``); ``Inputs.from_results``
takes those figures out of the bench's JSON, ``render`` turns them into the model's
tables (fleets of 10k to 10M at the default hold and the stated call rate), with the
arithmetic shown.

- ``python -m bench.sizing_model --sizing S.json --redis R.json --write``: takes
  the costs from the two runs' JSON, stores them in ``docs/sizing-inputs.json`` and
  rewrites the generated part of docs/SIZING.md;
- ``python -m bench.sizing_model``: prints the tables from ``docs/sizing-inputs.json``
  (tests/test_sizing.py checks that docs/SIZING.md shows exactly these).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from bench.scenarios import sizing as s
from bench.scenarios import sizing_redis as r
from server.cluster.backend import STATUS_REFRESH_SECONDS
from server.settings import Settings
from tools.procs import REPO

__all__ = ["Inputs", "main", "render", "replace_block"]

DOC: Final = REPO / "docs" / "SIZING.md"
INPUTS: Final = REPO / "docs" / "sizing-inputs.json"
BEGIN: Final = "<!-- sizing-model: begin (python -m bench.sizing_model --write) -->"
END: Final = "<!-- sizing-model: end -->"

FLEETS: Final = (10_000, 100_000, 1_000_000, 10_000_000)
#: the default POLL_HOLD_SECONDS: an idle camera completes one poll per hold
HOLD_SECONDS: Final = Settings.poll_hold_seconds
#: the stated call rate: /logs per camera per hour
CALLS_PER_CAMERA_HOUR: Final = 1.0
#: node CPU per /logs in cluster mode (cluster-fanout, docs/BENCHMARKS.md#cluster)
NODE_CPU_US_PER_CALL: Final = 1245.0
#: a home writes each idle camera's status this often (``Fleet.flush``); nothing else
#: an idle camera does at its home reaches Redis
REFRESH_SECONDS: Final = STATUS_REFRESH_SECONDS
#: status writes per /logs at the camera's home, counted from the code (not measured):
#: a caller waiting, the command in flight, the result taken (flushes 0.1 s apart
#: merge changes that come closer); each costs what a refresh does. Work and results
#: that cross Redis between nodes come on top (not measured).
STATUS_WRITES_PER_CALL: Final = 3
#: cameras a node process holds at most in this plan (one fd each, RSS, one event loop)
CAMERAS_PER_NODE: Final = 20_000
#: the share of a core a node process, and a Redis primary, may be busy in this plan
NODE_CPU_BUDGET: Final = 0.5
REDIS_CPU_BUDGET: Final = 0.5
#: the fleet index's shards: the fleet spreads over at most this many primaries
SHARDS: Final = 16


@dataclass(frozen=True, slots=True)
class Inputs:
    """The measured costs the model uses (docs/sizing-inputs.json)."""

    sizing_revision: str
    redis_revision: str
    measured_hold_seconds: float
    node_rss_per_camera: float
    node_base_rss_mb: float
    node_cpu_us_per_poll: float
    node_idle_cpu_percent: float
    redis_memory_per_camera_fleet: float
    redis_memory_per_camera_1m: float
    redis_commands_per_poll: float
    redis_sent_per_poll: float
    redis_cpu_us_per_poll: float
    redis_idle_commands_per_node: float
    redis_in_per_poll: float
    redis_out_per_poll: float
    camera_in_per_poll: float
    camera_out_per_poll: float
    cameras_1m: int
    page_first_ms: float
    page_middle_ms: float
    totals_ms: float
    refresh_commands: float
    refresh_sent: float
    refresh_cpu_us: float
    refresh_in: float
    refresh_out: float
    refreshes_per_core_single: float
    refreshes_per_core_cluster: float
    #: Redis CPU to scan one entry in the sweep for held polls a dead home left
    sweep_cpu_us_per_entry: float = math.nan

    @classmethod
    def from_results(cls, sizing: dict[str, Any], redis: dict[str, Any]) -> Inputs:
        """From the JSON of a run with ``sizing`` and one with ``sizing-redis``."""
        f = sizing["scenarios"][s.NAME]["figures"]
        g = redis["scenarios"][r.NAME]["figures"]

        def one(what: str) -> float:
            return float(g[f"{r.SINGLE}: {what}"])

        from_sizing = {name: float(f.get(key, math.nan)) for name, key in SIZING_FIGURES.items()}
        return cls(
            sizing_revision=str(sizing["machine"]["revision"]),
            redis_revision=str(redis["machine"]["revision"]),
            **from_sizing,
            redis_memory_per_camera_1m=one(r.MEMORY),
            cameras_1m=int(one("cameras registered")),
            page_first_ms=one(f"first {r.PAGE_P50}"),
            page_middle_ms=one(f"middle {r.PAGE_P50}"),
            totals_ms=one(r.TOTALS_MS),
            refresh_commands=one(r.REFRESH_COMMANDS),
            refresh_sent=one(r.REFRESH_SENT),
            refresh_cpu_us=one(r.REFRESH_CPU),
            refresh_in=one(r.REFRESH_NET_IN),
            refresh_out=one(r.REFRESH_NET_OUT),
            refreshes_per_core_single=one(r.REFRESHES_PER_CORE),
            refreshes_per_core_cluster=float(g[f"{r.CLUSTER}: {r.REFRESHES_PER_CORE}"]),
            sweep_cpu_us_per_entry=float(g.get(f"{r.SINGLE}: {r.SWEEP_CPU}", math.nan)),
        )


#: the ``Inputs`` taken from the sizing scenario's figures
SIZING_FIGURES: Final = {
    "measured_hold_seconds": s.COST_HOLD,
    "node_rss_per_camera": s.COST_NODE_RSS,
    "node_base_rss_mb": s.COST_NODE_BASE_RSS,
    "node_cpu_us_per_poll": s.COST_NODE_CPU,
    "node_idle_cpu_percent": s.COST_NODE_IDLE_CPU,
    "redis_memory_per_camera_fleet": s.COST_REDIS_MEMORY,
    "redis_commands_per_poll": s.COST_REDIS_COMMANDS,
    "redis_sent_per_poll": s.COST_REDIS_SENT,
    "redis_cpu_us_per_poll": s.COST_REDIS_CPU,
    "redis_idle_commands_per_node": s.COST_REDIS_IDLE_COMMANDS,
    "redis_in_per_poll": s.COST_REDIS_NET_IN,
    "redis_out_per_poll": s.COST_REDIS_NET_OUT,
    "camera_in_per_poll": s.COST_CAMERA_NET_IN,
    "camera_out_per_poll": s.COST_CAMERA_NET_OUT,
}


@dataclass(frozen=True, slots=True)
class Plan:
    """One fleet's needs, as the model works them out."""

    cameras: int
    polls_per_s: float
    refreshes_per_s: float
    calls_per_s: float
    node_cpu_cores: float
    nodes: int
    node_ram_gb: float
    redis_commands_per_s: float
    redis_cpu_cores: float
    primaries: int
    redis_memory_gb: float
    redis_mbit_s: float
    camera_mbit_s: float


def primaries(redis_cpu: float) -> int:
    """The fewest primaries whose busiest one (the fleet's shards placed evenly: at most
    ``ceil(SHARDS / P)`` of them on one) stays within the budget; past ``SHARDS``, more
    primaries take no more of the fleet (``SHARDS + 1`` says so)."""
    for count in range(1, SHARDS + 1):
        if redis_cpu * math.ceil(SHARDS / count) / SHARDS <= REDIS_CPU_BUDGET:
            return count
    return SHARDS + 1


def plan(i: Inputs, cameras: int) -> Plan:
    polls = cameras / HOLD_SECONDS
    calls = cameras * CALLS_PER_CAMERA_HOUR / 3600
    busy = (polls * i.node_cpu_us_per_poll + calls * NODE_CPU_US_PER_CALL) / 1e6
    nodes = max(math.ceil(cameras / CAMERAS_PER_NODE), 1)
    nodes = max(nodes, math.ceil(busy / (NODE_CPU_BUDGET - i.node_idle_cpu_percent / 100)))
    node_cpu = busy + nodes * i.node_idle_cpu_percent / 100
    refreshes = cameras / REFRESH_SECONDS
    #: status writes/s: the refreshes, and those the calls cause
    writes = refreshes + calls * STATUS_WRITES_PER_CALL
    redis_cpu = (polls * i.redis_cpu_us_per_poll + writes * i.refresh_cpu_us) / 1e6
    return Plan(
        cameras=cameras,
        polls_per_s=polls,
        refreshes_per_s=refreshes,
        calls_per_s=calls,
        node_cpu_cores=node_cpu,
        nodes=nodes,
        node_ram_gb=(nodes * i.node_base_rss_mb * 2**20 + cameras * i.node_rss_per_camera) / 1e9,
        redis_commands_per_s=polls * i.redis_commands_per_poll
        + writes * i.refresh_commands
        + nodes * i.redis_idle_commands_per_node,
        redis_cpu_cores=redis_cpu,
        primaries=primaries(redis_cpu),
        redis_memory_gb=cameras * i.redis_memory_per_camera_1m / 1e9,
        redis_mbit_s=(
            polls * (i.redis_in_per_poll + i.redis_out_per_poll)
            + writes * (i.refresh_in + i.refresh_out)
        )
        * 8
        / 1e6,
        camera_mbit_s=polls * (i.camera_in_per_poll + i.camera_out_per_poll) * 8 / 1e6,
    )


def _busiest(count: int) -> float:
    """The share of the fleet on the busiest of ``count`` primaries, shards even."""
    return math.ceil(SHARDS / min(count, SHARDS)) / SHARDS


def _n(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    # "z": a value that rounds to zero is shown as 0, not -0 (noise around nothing)
    return f"{value:z,.{digits}f}"


def _primaries(count: int) -> str:
    """Past ``SHARDS`` primaries the fleet's keys cannot spread further."""
    return f"{count:,}" if count <= SHARDS else f"more than {SHARDS}: not true"


def _count(cameras: int) -> str:
    return f"{cameras // 1_000_000}M" if cameras >= 1_000_000 else f"{cameras // 1000}k"


def render(i: Inputs) -> str:
    plans = [plan(i, n) for n in FLEETS]
    head = "| | " + " | ".join(_count(n) for n in FLEETS) + " |"
    rule = "|---|" + "---:|" * len(FLEETS)

    def row(name: str, cells: Sequence[str]) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    costs = [
        "| cost | measured | where |",
        "|---|---:|---|",
        f"| node RSS per idle camera | {_n(i.node_rss_per_camera)} B | sizing, fit over 5k-20k |",
        f"| node RSS with no camera | {_n(i.node_base_rss_mb, 1)} MB | sizing |",
        f"| node CPU per completed poll | {_n(i.node_cpu_us_per_poll, 1)} µs | sizing, fit |",
        f"| node CPU with no camera | {_n(i.node_idle_cpu_percent, 2)} % of a core | sizing |",
        f"| Redis memory per camera (fleet) | {_n(i.redis_memory_per_camera_fleet)} B | sizing |",
        f"| Redis memory per camera ({_count(i.cameras_1m)}) | "
        f"{_n(i.redis_memory_per_camera_1m)} B | sizing-redis |",
        f"| Redis commands per poll, executed | {_n(i.redis_commands_per_poll, 2)} | sizing |",
        f"| Redis commands per poll, sent by nodes | {_n(i.redis_sent_per_poll, 2)} | sizing |",
        f"| Redis CPU per poll | {_n(i.redis_cpu_us_per_poll, 1)} µs | sizing, fit |",
        f"| Redis commands/s per node, no camera | {_n(i.redis_idle_commands_per_node, 1)} "
        "| sizing |",
        f"| node to Redis, Redis to node per poll | {_n(i.redis_in_per_poll)} B, "
        f"{_n(i.redis_out_per_poll)} B | sizing |",
        f"| camera to node, node to camera per poll | {_n(i.camera_in_per_poll)} B, "
        f"{_n(i.camera_out_per_poll)} B | sizing |",
        f"| Redis commands per refresh (a status write), executed, sent | "
        f"{_n(i.refresh_commands, 2)}, {_n(i.refresh_sent, 2)} | sizing-redis |",
        f"| Redis CPU per refresh | {_n(i.refresh_cpu_us, 1)} µs | sizing-redis |",
        f"| client to Redis, Redis to client per refresh | {_n(i.refresh_in)} B, "
        f"{_n(i.refresh_out)} B | sizing-redis |",
        f"| refreshes/s per busy Redis core: one primary, 3-primary cluster | "
        f"{_n(i.refreshes_per_core_single)}, {_n(i.refreshes_per_core_cluster)} | sizing-redis |",
        f"| idle cameras one busy Redis core sustains (x {REFRESH_SECONDS:g} s): one primary, "
        f"3-primary cluster | {_n(i.refreshes_per_core_single * REFRESH_SECONDS)}, "
        f"{_n(i.refreshes_per_core_cluster * REFRESH_SECONDS)} | sizing-redis |",
        f"| Redis CPU per entry swept (each entry once per {REFRESH_SECONDS:g} s; inside "
        f"the CPU per poll above) | {_n(i.sweep_cpu_us_per_entry, 2)} µs | sizing-redis |",
        f"| `/cameras?limit=100` p50, first and middle page ({_count(i.cameras_1m)}) | "
        f"{_n(i.page_first_ms, 1)} ms, {_n(i.page_middle_ms, 1)} ms | sizing-redis |",
        f"| `/cameras` totals, `fleet_stats` ({_count(i.cameras_1m)}) | "
        f"{_n(i.totals_ms)} ms | sizing-redis |",
    ]
    table = [
        head,
        rule,
        row("polls/s", [_n(p.polls_per_s) for p in plans]),
        row("refreshes/s (status writes)", [_n(p.refreshes_per_s, 1) for p in plans]),
        row("`/logs` calls/s", [_n(p.calls_per_s, 1) for p in plans]),
        row("node CPU, busy cores", [_n(p.node_cpu_cores, 2) for p in plans]),
        row("node processes (one core each)", [_n(p.nodes) for p in plans]),
        row("node RAM, GB", [_n(p.node_ram_gb, 2) for p in plans]),
        row("Redis commands/s", [_n(p.redis_commands_per_s) for p in plans]),
        row("Redis CPU, busy cores", [_n(p.redis_cpu_cores, 2) for p in plans]),
        row("Redis primaries", [_primaries(p.primaries) for p in plans]),
        row("Redis memory, GB", [_n(p.redis_memory_gb, 3) for p in plans]),
        row("node↔Redis, Mbit/s", [_n(p.redis_mbit_s, 1) for p in plans]),
        row("camera↔node, Mbit/s", [_n(p.camera_mbit_s, 1) for p in plans]),
        row("open connections (cameras)", [_n(p.cameras) for p in plans]),
    ]
    m = plans[2]
    w = m.refreshes_per_s + m.calls_per_s * STATUS_WRITES_PER_CALL
    arithmetic = [
        f"For {_count(m.cameras)} cameras:",
        "",
        f"- polls/s = {m.cameras:,} / {HOLD_SECONDS:g} s = {_n(m.polls_per_s)}; calls/s = "
        f"{m.cameras:,} x {CALLS_PER_CAMERA_HOUR:g} / 3600 = {_n(m.calls_per_s, 1)}",
        f"- node CPU = {_n(m.polls_per_s)} x {_n(i.node_cpu_us_per_poll, 1)} µs + "
        f"{_n(m.calls_per_s, 1)} x {NODE_CPU_US_PER_CALL:g} µs + {m.nodes} x "
        f"{_n(i.node_idle_cpu_percent, 2)} % = {_n(m.node_cpu_cores, 2)} cores",
        f"- node processes = the larger of {m.cameras:,} / {CAMERAS_PER_NODE:,} and the busy "
        f"cores over {NODE_CPU_BUDGET:g} core each (less what a node costs alone) = {m.nodes}",
        f"- node RAM = {m.nodes} x {_n(i.node_base_rss_mb, 1)} MB + {m.cameras:,} x "
        f"{_n(i.node_rss_per_camera)} B = {_n(m.node_ram_gb, 2)} GB",
        f"- refreshes/s = {m.cameras:,} / {REFRESH_SECONDS:g} s = {_n(m.refreshes_per_s, 1)}; "
        f"status writes/s = {_n(m.refreshes_per_s, 1)} + {_n(m.calls_per_s, 1)} calls/s x "
        f"{STATUS_WRITES_PER_CALL} = {_n(w, 1)}",
        f"- Redis commands/s = {_n(m.polls_per_s)} polls/s x "
        f"{_n(i.redis_commands_per_poll, 2)} + {_n(w, 1)} writes/s x "
        f"{_n(i.refresh_commands, 2)} + {m.nodes} x {_n(i.redis_idle_commands_per_node, 1)} "
        f"= {_n(m.redis_commands_per_s)}",
        f"- Redis CPU = {_n(m.polls_per_s)} x {_n(i.redis_cpu_us_per_poll, 1)} µs + "
        f"{_n(w, 1)} x {_n(i.refresh_cpu_us, 1)} µs = "
        f"{_n(m.redis_cpu_cores, 2)} cores; primaries = the fewest P for which the busiest "
        f"(ceil({SHARDS} / P) of the {SHARDS} shards) is within {REDIS_CPU_BUDGET:g} core: "
        f"{m.primaries}, its share {_n(m.redis_cpu_cores * _busiest(m.primaries), 2)} core",
        f"- Redis memory = {m.cameras:,} x {_n(i.redis_memory_per_camera_1m)} B = "
        f"{_n(m.redis_memory_gb, 3)} GB",
        f"- node↔Redis = ({_n(m.polls_per_s)} x ({_n(i.redis_in_per_poll)} + "
        f"{_n(i.redis_out_per_poll)}) B + {_n(w, 1)} x ({_n(i.refresh_in)} + "
        f"{_n(i.refresh_out)}) B) x 8 = {_n(m.redis_mbit_s, 1)} Mbit/s; camera↔node = "
        f"{_n(m.polls_per_s)} x ({_n(i.camera_in_per_poll)} + {_n(i.camera_out_per_poll)}) "
        f"B x 8 = {_n(m.camera_mbit_s, 1)} Mbit/s",
    ]
    source = (
        f"Costs from `sizing` on `{i.sizing_revision}` (hold {i.measured_hold_seconds:g} s) "
        f"and `sizing-redis` on `{i.redis_revision}`; the model at "
        f"`POLL_HOLD_SECONDS={HOLD_SECONDS:g}`, `STATUS_REFRESH_SECONDS={REFRESH_SECONDS:g}`, "
        f"{CALLS_PER_CAMERA_HOUR:g} `/logs` per camera per hour ({STATUS_WRITES_PER_CALL} "
        "status writes each)."
    )
    return "\n".join([source, "", *costs, "", *table, "", *arithmetic])


def replace_block(document: str, block: str) -> str:
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n" + block + "\n" + document[end:]


def generated_block(document: str) -> str:
    return document[document.index(BEGIN) + len(BEGIN) : document.index(END)].strip("\n")


def load_inputs(path: Path = INPUTS) -> Inputs:
    stored: dict[str, Any] = orjson.loads(path.read_bytes())
    # JSON has no NaN: a figure a run did not measure is stored as null
    figures: dict[str, Any] = {k: math.nan if v is None else v for k, v in stored.items()}
    return Inputs(**figures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sizing_model", description=__doc__)
    parser.add_argument("--sizing", type=Path, help="bench JSON with the sizing scenario")
    parser.add_argument("--redis", type=Path, help="bench JSON with the sizing-redis scenario")
    parser.add_argument("--write", action="store_true", help="update docs/SIZING.md")
    args = parser.parse_args(argv)
    if (args.sizing is None) != (args.redis is None):
        parser.error("--sizing and --redis go together")
    if args.sizing is not None:
        inputs = Inputs.from_results(
            orjson.loads(args.sizing.read_bytes()), orjson.loads(args.redis.read_bytes())
        )
    else:
        inputs = load_inputs()
    block = render(inputs)
    if args.write:
        INPUTS.write_bytes(
            orjson.dumps(dataclasses.asdict(inputs), option=orjson.OPT_INDENT_2) + b"\n"
        )
        DOC.write_text(replace_block(DOC.read_text(encoding="utf-8"), block), encoding="utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
