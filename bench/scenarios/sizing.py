"""sizing: what one idle camera costs a cluster, measured at growing fleets (5k, 10k, 20k).

Two nodes share a fresh Redis. A window with no camera measures what the nodes cost
on their own (heartbeats, inbox reads, timers); then the fleet grows to each size
(``python -m camera --fleet`` processes, half the cameras on each node, spread over
the nodes as ``cluster-fleet`` does) and, once every poll is held, a window of
``window_holds`` holds (every camera re-polls about that many times), one hold after
the fleet reached the size (the fleet grows ``grow_by`` cameras at a time), measures:

- the nodes' RSS growth over their RSS with no camera, per camera;
- the nodes' CPU, less the no-camera window's rate, per completed poll;
- Redis: ``used_memory`` growth from before the first camera, per camera; commands
  (``INFO commandstats``: those run inside scripts count too), CPU and network bytes
  (``total_net_input_bytes``/``total_net_output_bytes``: node to Redis and back), less
  the no-camera window's rates, per completed poll;
- camera to node bytes, both ways, per completed poll (the kernel's counters of the
  nodes' connections, ``ss -ti``);

then a short window under ``MONITOR`` splits the commands into those the nodes
sent and those their scripts ran. A completed poll is one camera's hold ending:
``cameras x window / POLL_HOLD_SECONDS`` per window.

Each cost is fitted to a line over the sizes (``bench.linfit``): the slope is the
per-camera (per-poll) cost that ``python -m bench.sizing_model`` turns into
docs/SIZING.md, and ``r2`` shows how linear it is. The figures named ``COST_*`` are
what the model reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bench.fixtures import RelayServer, redis_server, relay_nodes
from bench.idlefleet import FD_RESERVE, SLOW_FLEET_SETTINGS, fleets_on, split, wait_held
from bench.linfit import Line, fit
from bench.plan import Context, Scenario
from bench.procstat import tcp_bytes
from bench.redisstats import MonitorCounts, RedisSample, monitor, sample
from bench.result import ScenarioResult
from common.fdlimit import hard_open_file_limit
from server.cluster.redis import directory, members
from server.cluster.redis.connection import Script
from server.settings import Settings
from tools.redis_server import RedisServer

__all__ = ["COSTS", "FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "sizing"

#: the figures the sizing model reads: name -> what it is (per camera, or per completed poll)
COST_HOLD: Final = "cost: POLL_HOLD_SECONDS measured at"
COST_NODE_RSS: Final = "cost: node RSS B per camera"
COST_NODE_CPU: Final = "cost: node CPU us per poll"
COST_NODE_IDLE_CPU: Final = "cost: node CPU % of a core with no camera, per node"
COST_NODE_BASE_RSS: Final = "cost: node RSS MB with no camera, per node"
COST_REDIS_MEMORY: Final = "cost: Redis memory B per camera"
COST_REDIS_COMMANDS: Final = "cost: Redis commands per poll (executed, in scripts too)"
COST_REDIS_SENT: Final = "cost: Redis commands per poll (sent by the nodes)"
COST_REDIS_CPU: Final = "cost: Redis CPU us per poll"
COST_REDIS_IDLE_COMMANDS: Final = "cost: Redis commands/s with no camera, per node"
COST_REDIS_NET_IN: Final = "cost: node to Redis B per poll"
COST_REDIS_NET_OUT: Final = "cost: Redis to node B per poll"
COST_CAMERA_NET_IN: Final = "cost: camera to node B per poll"
COST_CAMERA_NET_OUT: Final = "cost: node to camera B per poll"
COSTS: Final = (
    COST_HOLD,
    COST_NODE_RSS,
    COST_NODE_CPU,
    COST_NODE_IDLE_CPU,
    COST_NODE_BASE_RSS,
    COST_REDIS_MEMORY,
    COST_REDIS_COMMANDS,
    COST_REDIS_SENT,
    COST_REDIS_CPU,
    COST_REDIS_IDLE_COMMANDS,
    COST_REDIS_NET_IN,
    COST_REDIS_NET_OUT,
    COST_CAMERA_NET_IN,
    COST_CAMERA_NET_OUT,
)


@dataclass(frozen=True, slots=True)
class Params:
    """The sizing scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: the fleet grows to each of these (cameras over all nodes)
    sizes: tuple[int, ...]
    #: ``POLL_HOLD_SECONDS`` of the run (the model scales to the default hold)
    hold_seconds: float
    #: the measuring window, in holds
    window_holds: float
    #: the fleet grows by this many cameras at a time (a gentler ramp than all at once)
    grow_by: int
    #: how long ``MONITOR`` watches (it costs Redis, and the harness, CPU)
    monitor_seconds: float
    nodes: int = 2


#: At the default hold (shorter holds overload this 2-core machine at 20,000 cameras:
#: nodes miss heartbeats and the costs stop being an idle fleet's); a window of one
#: hold sees every camera re-poll once.
FULL: Final = Params(
    sizes=(5_000, 10_000, 20_000),
    hold_seconds=Settings.poll_hold_seconds,
    window_holds=1.0,
    grow_by=5_000,
    monitor_seconds=2.0,
)
QUICK: Final = Params(
    sizes=(20, 40, 80), hold_seconds=0.5, window_holds=2.0, grow_by=40, monitor_seconds=0.5
)


@dataclass(frozen=True, slots=True)
class Step:
    """What one window measured, with ``cameras`` polling (0: the nodes alone)."""

    cameras: int
    window: float
    node_rss: int
    node_cpu: float
    redis_memory: int
    redis: RedisSample
    #: bytes the nodes sent to / received from cameras (None: no ``ss``)
    camera_bytes: tuple[int, int] | None
    watched: MonitorCounts

    def polls(self, hold: float) -> float:
        return self.cameras * self.window / hold


async def _camera_bytes(nodes: list[RelayServer]) -> tuple[int, int] | None:
    counts = [await tcp_bytes(node.port) for node in nodes]
    if any(count is None for count in counts):
        return None
    return sum(c[0] for c in counts if c), sum(c[1] for c in counts if c)


async def measure(
    nodes: list[RelayServer], redis: RedisServer, cameras: int, window: float, watch: float
) -> Step:
    """One window of ``window`` seconds, then ``watch`` seconds under ``MONITOR``."""
    node_rss = sum(node.memory().rss for node in nodes)
    redis_before = await sample([redis])
    bytes_before = await _camera_bytes(nodes)
    cpu_before = sum(node.cpu_seconds() for node in nodes)
    await asyncio.sleep(window)
    cpu = sum(node.cpu_seconds() for node in nodes) - cpu_before
    bytes_after = await _camera_bytes(nodes)
    redis_delta = (await sample([redis])).minus(redis_before)
    camera_bytes = None
    if bytes_before is not None and bytes_after is not None:
        camera_bytes = (bytes_after[0] - bytes_before[0], bytes_after[1] - bytes_before[1])
    watched = await monitor(redis, watch)
    return Step(
        cameras,
        redis_delta.at,
        node_rss,
        cpu,
        redis_before.used_memory,
        redis_delta,
        camera_bytes,
        watched,
    )


def _per_poll(step: Step, base: Step, value: float, base_value: float, hold: float) -> float:
    """``value`` less what the nodes spend alone in as long, per completed poll."""
    return (value - base_value * step.window / base.window) / step.polls(hold)


def script_names() -> dict[str, str]:
    """The SHA1 of each Lua script the nodes run, to its name in ``server.cluster.redis``."""
    names = {}
    for module in (directory, members):
        for name, value in vars(module).items():
            if isinstance(value, Script):
                names[value.sha] = f"{module.__name__.rpartition('.')[2]}.{name}"
    return names


def _sent(counts: MonitorCounts) -> int:
    return sum(counts.sent.values())


def _executed(counts: MonitorCounts) -> int:
    return sum(counts.sent.values()) + sum(counts.in_scripts.values())


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    hold = params.hold_seconds
    window = hold * params.window_holds
    most = hard_open_file_limit() - FD_RESERVE
    settle = min(1.0, window)
    steps: list[Step] = []
    settings = {"POLL_HOLD_SECONDS": str(hold), **SLOW_FLEET_SETTINGS}
    async with (
        redis_server() as redis,
        relay_nodes(ctx, params.nodes, redis.url, **settings) as nodes,
        contextlib.AsyncExitStack() as fleets,
    ):
        await asyncio.sleep(settle)
        base = await measure(nodes, redis, 0, window, params.monitor_seconds)
        have = 0
        for size in params.sizes:
            while have < size:
                more = min(params.grow_by, size - have)
                shares = split(more, params.nodes, most)
                await fleets.enter_async_context(fleets_on(ctx, nodes, shares, first=have + 1))
                have += more
                if problem := await wait_held(nodes, have):
                    result.error(f"{have} cameras: {problem}")
            # Every camera re-polls once before the window: the new ones' first re-poll
            # (and the ramp's backlog) is not an idle camera's cost.
            await asyncio.sleep(hold + settle)
            steps.append(await measure(nodes, redis, size, window, params.monitor_seconds))
        await fleets.aclose()
        for node in nodes:
            result.errors_from(node.child.name, node.problems())
    report(result, params, base, steps)
    return result


def report(result: ScenarioResult, params: Params, base: Step, steps: list[Step]) -> None:
    hold = params.hold_seconds
    result.figure("nodes", params.nodes)
    result.figure("POLL_HOLD_SECONDS", hold)
    result.figure("window s", round(base.window, 2))
    sizes = [step.cameras for step in steps]
    polls_per_s = [step.cameras / hold for step in steps]

    def rate(step: Step, value: float) -> float:
        return value / step.window

    lines: dict[str, Line] = {}

    def per_size(name: str, unit: str, values: list[float], digits: int = 1) -> None:
        for size, value in zip(sizes, values, strict=True):
            result.figure(f"{name} {unit} @ {size:,}", round(value, digits))

    # Memory: growth against cameras.
    rss = [step.node_rss - base.node_rss for step in steps]
    redis_memory = [step.redis_memory - base.redis_memory for step in steps]
    per_size("node RSS", "B per camera", [m / n for m, n in zip(rss, sizes, strict=True)], 0)
    per_size(
        "Redis memory",
        "B per camera",
        [m / n for m, n in zip(redis_memory, sizes, strict=True)],
        0,
    )
    lines[COST_NODE_RSS] = fit([0, *sizes], [0, *rss])
    lines[COST_REDIS_MEMORY] = fit([0, *sizes], [0, *redis_memory])

    # Rates: per second against polls per second; the no-camera window is the point at 0.
    picks: tuple[tuple[str, str, Callable[[Step], float], float, str], ...] = (
        ("node CPU", "us per poll", lambda s: s.node_cpu, 1e6, COST_NODE_CPU),
        ("Redis CPU", "us per poll", lambda s: s.redis.cpu_seconds, 1e6, COST_REDIS_CPU),
        ("Redis commands", "per poll", lambda s: s.redis.commands, 1.0, COST_REDIS_COMMANDS),
        ("node to Redis", "B per poll", lambda s: s.redis.net_input_bytes, 1.0, COST_REDIS_NET_IN),
        (
            "Redis to node",
            "B per poll",
            lambda s: s.redis.net_output_bytes,
            1.0,
            COST_REDIS_NET_OUT,
        ),
    )
    for name, unit, pick, scale, cost in picks:
        per_size(
            name,
            unit,
            [_per_poll(s, base, pick(s), pick(base), hold) * scale for s in steps],
            2,
        )
        ys = [rate(s, pick(s)) * scale for s in (base, *steps)]
        lines[cost] = fit([0.0, *polls_per_s], ys)
    camera_bytes = [step.camera_bytes for step in steps if step.camera_bytes is not None]
    if len(camera_bytes) == len(steps):
        for index, (name, cost) in enumerate(
            (("node to camera", COST_CAMERA_NET_OUT), ("camera to node", COST_CAMERA_NET_IN))
        ):
            counts = [both[index] for both in camera_bytes]
            values = [n / s.polls(hold) for n, s in zip(counts, steps, strict=True)]
            per_size(name, "B per poll", values, 0)
            lines[cost] = fit(polls_per_s, [rate(s, n) for n, s in zip(counts, steps, strict=True)])
    else:
        result.notes.append("no ss: camera to node bytes not measured")

    # MONITOR: what the nodes sent against what their scripts ran. Under load the harness
    # reads fewer lines than Redis writes, so only the share of each is taken from it,
    # and applied to the commands INFO counted.
    base_sent_rate = _sent(base.watched) / base.watched.seconds

    def sent_rate(step: Step) -> float:
        share = _sent(step.watched) / max(1, _executed(step.watched))
        return rate(step, step.redis.commands) * share

    sent = [(sent_rate(s) - base_sent_rate) * s.window / s.polls(hold) for s in steps]
    per_size("Redis commands sent (MONITOR share)", "per poll", sent, 2)
    lines[COST_REDIS_SENT] = fit(
        [0.0, *polls_per_s], [base_sent_rate] + [sent_rate(s) for s in steps]
    )
    last = steps[-1].watched
    for name, _ in (last.sent + last.in_scripts).most_common(12):
        source = f"{last.sent[name]} sent, {last.in_scripts[name]} in scripts"
        result.figure(f"MONITOR @ {sizes[-1]:,}: {name}", source)
    names = script_names()
    for sha, count in last.scripts.most_common():
        result.figure(f"MONITOR @ {sizes[-1]:,}: EVALSHA {names.get(sha, sha[:12])}", count)

    for cost, line in lines.items():
        result.figure(f"fit r2: {cost.removeprefix('cost: ')}", round(line.r2, 4))
    for cost in COSTS:
        if cost in lines:
            result.figure(cost, round(lines[cost].slope, 3))
    result.figure(COST_HOLD, hold)
    result.figure(COST_NODE_IDLE_CPU, round(100 * base.node_cpu / base.window / params.nodes, 3))
    result.figure(COST_NODE_BASE_RSS, round(base.node_rss / params.nodes / 2**20, 1))
    result.figure(
        COST_REDIS_IDLE_COMMANDS, round(base.redis.commands / base.window / params.nodes, 2)
    )

    # Linear: every per-camera memory cost lies on its line; the targets.
    for cost in (COST_NODE_RSS, COST_REDIS_MEMORY, COST_REDIS_COMMANDS, COST_NODE_CPU):
        result.target(f"linear: r2 of {cost.removeprefix('cost: ')}", lines[cost].r2, ">=", 0.95)
    result.target(
        "Redis commands per completed poll (executed)",
        round(lines[COST_REDIS_COMMANDS].slope, 2),
        "<=",
        1.0,
    )
    result.target("Redis memory per camera", round(lines[COST_REDIS_MEMORY].slope), "<=", 300, "B")
    result.target(
        "node RSS per idle camera", round(lines[COST_NODE_RSS].slope / 1024, 2), "<=", 14.0, "KB"
    )


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK, full_timeout_seconds=600.0)
