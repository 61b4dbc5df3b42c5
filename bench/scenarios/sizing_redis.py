"""sizing-redis: the Redis side of a million cameras, without sockets to cameras or HTTP.

Against one fresh ``redis-server``, then a fresh 3-primary Redis Cluster
(``tools.redis_server``), each populated through the server's own directory code
(``server.cluster.redis``, by ``python -m bench.repolls register`` processes, each
camera claimed and its status written as a node does at a first poll; the claims'
``seq`` kept in files for the refreshes):

- Redis memory per camera: ``used_memory`` growth (summed over the primaries) / cameras;
- ``/cameras?limit=100``: a node built by the app factory (``create_app``, cluster
  mode, in this process) lists a page as the view does (``list_cameras`` with one
  more than the limit) from the start and from the middle of the fleet; p50 of
  ``page_repeats`` each; and once the fleet totals the view adds (``fleet_stats``);
- the refresh rate: ``python -m bench.repolls refresh`` processes, each with many
  concurrent loops, refresh their share of the cameras (each once, in order) with the
  one directory call an idle polling camera's home makes per
  ``STATUS_REFRESH_SECONDS`` (a status write: ``bench.repolls.refresh``) for
  ``refresh_seconds``: refreshes per second, Redis's
  CPU meanwhile (summed over primaries), commands per refresh (sent, and executed
  with those the script runs), and so refreshes per second per Redis core (what one
  busy core would take, when the client processes on this 2-core machine are what
  limits the rate); times ``STATUS_REFRESH_SECONDS``, the idle cameras one busy
  Redis core sustains (a poll at the camera's home costs Redis nothing).

The cameras are registered with a retention of 10 minutes
(``bench.repolls.REGISTER_RETENTION_SECONDS``), so that none expires during the run,
and refreshed with one of 15 (``RETENTION_SECONDS``), so that each refresh renews the
entry's expiry as a real idle camera's refresh does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from bench.plan import Context, Scenario
from bench.redisstats import sample
from bench.repolls import RETENTION_SECONDS, camera_id, limits
from bench.result import ScenarioResult
from bench.stats import median
from server.app import create_app
from server.cluster import ClusterNode
from server.cluster.backend import STATUS_REFRESH_SECONDS, BackendError
from server.cluster.redis import RedisBackend
from server.settings import Settings
from server.state import get_relay
from tools.procs import child_env, python, spawn, stop
from tools.redis_server import RedisServer, redis_cluster, redis_server

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "sizing-redis"
PAGE_LIMIT: Final = 100
PREFIX: Final = "camrelay"
#: the page time the sizing target allows, p50
PAGE_TARGET_MS: Final = 50.0
#: where each figure the sizing model reads is (after ``SINGLE`` or ``CLUSTER`` and ": ")
SINGLE: Final = "single primary"
CLUSTER: Final = "3-primary cluster"
MEMORY: Final = "Redis memory B per camera"
REFRESHES_PER_CORE: Final = "refreshes/s per busy Redis core"
REFRESHES: Final = "refreshes/s (clients on this machine)"
REFRESH_COMMANDS: Final = "Redis commands per refresh (executed)"
REFRESH_SENT: Final = "Redis commands per refresh (sent)"
REFRESH_CPU: Final = "Redis CPU us per refresh"
IDLE_PER_CORE: Final = "idle cameras per busy Redis core"
REFRESH_NET_IN: Final = "client to Redis B per refresh"
REFRESH_NET_OUT: Final = "Redis to client B per refresh"
REDIS_BUSY: Final = "Redis CPU % of a core meanwhile (all primaries)"
PAGE_P50: Final = "page p50 ms"
SWEEP_CPU: Final = "Redis CPU us per entry swept"
TOTALS_MS: Final = "/cameras totals (fleet_stats, whole fleet) ms"


@dataclass(frozen=True, slots=True)
class Params:
    """The sizing-redis scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: cameras registered in the single Redis, and in the Redis Cluster
    cameras: int
    cluster_cameras: int
    page_repeats: int
    refresh_seconds: float
    #: client processes, concurrent loops in each (fewer than a node's pool of
    #: connections: a node gathers a loop turn's calls into one), cameras per call
    processes: int = 2
    tasks: int = 6
    batch: int = 16
    #: time the fleet totals (``fleet_stats``: past 5,000 cameras, the directory's count
    #: and the nodes' heartbeat counts) at most this long
    totals_timeout_seconds: float = 300.0
    register_batch: int = 1000


FULL: Final = Params(
    cameras=1_000_000, cluster_cameras=1_000_000, page_repeats=50, refresh_seconds=20.0
)
QUICK: Final = Params(
    cameras=2_000, cluster_cameras=1_000, page_repeats=5, refresh_seconds=1.0, tasks=4
)


async def _workers(ctx: Context, argvs: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """``python -m bench.repolls`` processes side by side; each one's JSON line."""
    children = [
        await spawn(
            f"repolls-{i}",
            python("-m", "bench.repolls", *argv),
            child_env({}),
            ctx.workdir,
            capture_stdout=True,
        )
        for i, argv in enumerate(argvs)
    ]
    try:
        outputs = await asyncio.gather(*(child.process.communicate() for child in children))
    finally:
        for child in children:
            await stop(child)
    figures = []
    for child, (stdout, _) in zip(children, outputs, strict=True):
        if child.process.returncode != 0:
            tail = " | ".join(child.stderr_lines()[-3:])
            raise RuntimeError(f"{child.name} exited {child.process.returncode}: {tail}")
        figures.append(orjson.loads(stdout))
    return figures


def _shares(count: int, parts: int) -> list[tuple[int, int]]:
    """``(first, count)`` of ``parts`` near-equal ranges of ``1..count``."""
    sizes = [count // parts + (1 if i < count % parts else 0) for i in range(parts)]
    firsts = [1 + sum(sizes[:i]) for i in range(parts)]
    return [(f, n) for f, n in zip(firsts, sizes, strict=True) if n]


@contextlib.asynccontextmanager
async def reading_node(url: str, cluster: bool) -> AsyncIterator[ClusterNode]:
    """A cluster node as ``python -m server`` builds it (no sockets): it lists the fleet."""
    env = {"REDIS_URL": url, "REDIS_CLUSTER": "1" if cluster else "0", "NODE_NAME": "sizing"}
    node = get_relay(create_app(Settings.from_env(env)))
    assert isinstance(node, ClusterNode)
    await node.start()
    try:
        yield node
    finally:
        node.close()
        await node.stop()


async def _timed_ms(call: Awaitable[object]) -> float:
    started = time.perf_counter()
    await call
    return 1000 * (time.perf_counter() - started)


async def measure(
    ctx: Context,
    params: Params,
    result: ScenarioResult,
    servers: list[RedisServer],
    url: str,
    cluster: bool,
    cameras: int,
) -> None:
    tag = CLUSTER if cluster else SINGLE
    common = ["--url", url, *(["--cluster"] if cluster else []), "--prefix", PREFIX]
    async with reading_node(url, cluster) as node:
        home = ["--node", node.incarnation]
        empty = await sample(servers)
        shares = _shares(cameras, params.processes)
        kind = "cluster" if cluster else "single"
        seqs = [ctx.workdir / f"seqs-{kind}-{first}.json" for first, _ in shares]
        started = time.perf_counter()
        await _workers(
            ctx,
            [
                [
                    "register",
                    *common,
                    *home,
                    f"--first={first}",
                    f"--count={count}",
                    f"--batch={params.register_batch}",
                    f"--seqs={path}",
                ]
                for (first, count), path in zip(shares, seqs, strict=True)
            ],
        )
        registered_in = time.perf_counter() - started
        full = await sample(servers)
        result.figure(f"{tag}: cameras registered", cameras)
        result.figure(f"{tag}: registration s", round(registered_in, 1))
        result.figure(f"{tag}: registered per s", round(cameras / registered_in))
        memory = (full.used_memory - empty.used_memory) / cameras
        result.figure(f"{tag}: used_memory MB", round(full.used_memory / 2**20, 1))
        result.figure(f"{tag}: {MEMORY}", round(memory, 1))
        result.target(f"{tag}: Redis memory per camera", round(memory, 1), "<=", 1024, "B")

        for where, after in (("first", None), ("middle", camera_id(cameras // 2))):
            times = []
            for _ in range(params.page_repeats):
                page = node.list_cameras("", None, after, PAGE_LIMIT + 1)
                times.append(await _timed_ms(page))
            found = await node.list_cameras("", None, after, PAGE_LIMIT + 1)
            first = 1 if after is None else cameras // 2 + 1
            expected = [camera_id(first + k) for k in range(PAGE_LIMIT + 1)]
            if [c.camera_id for c in found] != expected:
                result.error(f"{tag}: the {where} page is not cameras {expected[0]}..")
            result.figure(f"{tag}: {where} {PAGE_P50}", round(median(times), 2))
            result.target(
                f"{tag}: /cameras?limit={PAGE_LIMIT} {where} page p50",
                round(median(times), 2),
                "<=",
                PAGE_TARGET_MS,
                "ms",
            )
        try:
            async with asyncio.timeout(params.totals_timeout_seconds):
                totals_ms = await _timed_ms(node.fleet_stats())
        except TimeoutError:
            totals_ms = float("inf")
        result.figure(f"{tag}: {TOTALS_MS}", round(totals_ms))

        before = await sample(servers)
        runs = await _workers(
            ctx,
            [
                [
                    "refresh",
                    *common,
                    *home,
                    f"--first={first}",
                    f"--count={count}",
                    f"--seconds={params.refresh_seconds}",
                    f"--tasks={params.tasks}",
                    f"--batch={params.batch}",
                    *(f"--seqs={path}" for path in seqs),
                ]
                for first, count in shares
            ],
        )
        spent = (await sample(servers)).minus(before)
        # What the sweep for held polls a dead home left costs: every entry scanned once
        # (the nodes scan each once per status refresh interval); none has expired.
        sweeper = RedisBackend.from_url(
            url, PREFIX, limits(cameras, RETENTION_SECONDS), cluster=cluster
        )
        try:
            before_sweep = await sample(servers)
            await sweeper.directory.sweep(1.0)
            swept = (await sample(servers)).minus(before_sweep)
        finally:
            await sweeper.close()
        result.figure(f"{tag}: {SWEEP_CPU}", round(1e6 * swept.cpu_seconds / cameras, 3))
    refreshes = sum(run["cameras"] for run in runs)
    rate = refreshes / max(run["seconds"] for run in runs)
    busy = spent.cpu_seconds / spent.at
    per_core = refreshes / spent.cpu_seconds
    result.figure(f"{tag}: {REFRESHES}", round(rate))
    result.figure(f"{tag}: {REDIS_BUSY}", round(100 * busy, 1))
    result.figure(f"{tag}: {REFRESH_COMMANDS}", round(spent.commands / refreshes, 2))
    result.figure(
        f"{tag}: {REFRESH_SENT}",
        round(sum(run["commands_sent"] for run in runs) / refreshes, 2),
    )
    result.figure(f"{tag}: {REFRESH_CPU}", round(1e6 * spent.cpu_seconds / refreshes, 2))
    result.figure(f"{tag}: {REFRESH_NET_IN}", round(spent.net_input_bytes / refreshes))
    result.figure(f"{tag}: {REFRESH_NET_OUT}", round(spent.net_output_bytes / refreshes))
    result.figure(f"{tag}: {REFRESHES_PER_CORE}", round(per_core))
    result.figure(f"{tag}: {IDLE_PER_CORE}", round(per_core * STATUS_REFRESH_SECONDS))
    result.figure(f"{tag}: Redis commands/s (executed)", round(spent.commands / spent.at))


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    try:
        async with redis_server() as redis:
            await measure(ctx, params, result, [redis], redis.url, False, params.cameras)
    except (RuntimeError, BackendError) as error:  # the cluster's run still tells something
        result.error(f"{SINGLE}: {error}")
    async with redis_cluster(3) as cluster:
        await measure(
            ctx, params, result, cluster.servers, cluster.url, True, params.cluster_cameras
        )
    return result


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK, full_timeout_seconds=1800.0)
