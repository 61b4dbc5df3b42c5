"""The benchmark harness cannot rot: ``python -m bench --quick`` runs every scenario, cleanly.

The quick run is this test (marked ``bench``; it also starts servers, cameras and
a Redis, so ``process`` and ``redis`` too). Much of a quick scenario's time is spent
waiting on timers and child processes, so the test runs a few harness processes at
once, each with its share of the scenarios (``--only A --only B ...``), shares of
about equal length: about 20 s on 2 cores instead of the 45-60 s of one ``python -m
bench --quick``. A harness process per scenario would start Python and the harness 16
times over (half a second of CPU each). Which scenarios there are and how big their
quick run is comes from the registry (bench/scenarios/).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import bench.scenarios
from bench import camerapage
from bench.plan import QUICK
from bench.scenarios import SCENARIOS
from server.http.camera_list import SLICE

REPO = Path(__file__).resolve().parent.parent
#: harness processes at once (on 2 cores; the scenarios mostly wait)
CONCURRENT = 3
#: about how long each quick scenario runs alone on 2 cores (s), to share them out evenly;
#: a scenario not listed counts as ``UNLISTED_SECONDS``
QUICK_SECONDS = {
    "throughput": 8.0,
    "floor": 6.0,
    "flood": 6.6,
    "cluster-fleet": 5.9,
    "console": 5.3,
    "fleet": 4.4,
    "cluster-fanout": 4.3,
    "cluster-kill": 3.9,
    "cluster-latency": 3.3,
    "bigfleet": 3.2,
    "idle": 2.9,
    "soak": 2.4,
    "biglog": 2.3,
    "fanout": 2.1,
    "cluster-burst": 2.1,
    "latency": 2.0,
    "burst": 1.6,
}
UNLISTED_SECONDS = 3.0
#: a guard against a hang, not a speed check (speed is what the benchmarks measure)
HANG_GUARD_SECONDS = 100.0


def shares(names: list[str], count: int) -> list[list[str]]:
    """``names`` in ``count`` lists of about equal quick seconds (longest first, each to the
    shortest list so far); each list in the registry's order."""
    loads: list[tuple[float, int]] = [(0.0, index) for index in range(count)]
    chosen: list[set[str]] = [set() for _ in range(count)]
    for name in sorted(names, key=lambda n: -QUICK_SECONDS.get(n, UNLISTED_SECONDS)):
        seconds, index = heapq.heappop(loads)
        chosen[index].add(name)
        heapq.heappush(loads, (seconds + QUICK_SECONDS.get(name, UNLISTED_SECONDS), index))
    return [[name for name in names if name in share] for share in chosen if share]


def test_quick_runs_are_shared_out_evenly() -> None:
    names = list(SCENARIOS)
    runs = shares(names, CONCURRENT)
    assert sorted(name for run in runs for name in run) == sorted(names)
    seconds = [sum(QUICK_SECONDS.get(name, UNLISTED_SECONDS) for name in run) for run in runs]
    assert max(seconds) - min(seconds) <= max(QUICK_SECONDS.values())
    assert shares(["a", "b"], 3) == [["a"], ["b"]]


def test_every_scenario_module_is_registered_with_its_own_sizes() -> None:
    modules = {info.name for info in pkgutil.iter_modules(bench.scenarios.__path__)}
    registered = {scenario.run.__module__.rpartition(".")[2] for scenario in SCENARIOS.values()}
    assert registered == modules
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert type(scenario.quick) is type(scenario.full), name
        assert scenario.params(QUICK) is scenario.quick


async def quick_run(names: list[str], out: Path) -> tuple[int, str, str]:
    """``python -m bench --quick --only A --only B ...``: its exit status, stdout and stderr."""
    only = [word for name in names for word in ("--only", name)]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bench", "--quick", *only, "--out", str(out)),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled: the hang guard, or the session
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.bench
@pytest.mark.process
@pytest.mark.redis
async def test_quick_bench_reports_every_scenario_without_errors(tmp_path: Path) -> None:
    runs = shares(list(SCENARIOS), CONCURRENT)
    outs = [tmp_path / f"quick-{index}.json" for index in range(len(runs))]
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        ran = await asyncio.gather(
            *(quick_run(names, out) for names, out in zip(runs, outs, strict=True))
        )
    scenarios: dict[str, dict[str, object]] = {}
    for names, out, (returncode, stdout, stderr) in zip(runs, outs, ran, strict=True):
        output = f"{', '.join(names)}:\n{stdout[-6000:]}\n{stderr[-4000:]}"
        assert returncode == 0, output
        document = json.loads(out.read_text())
        assert document["mode"] == "quick"
        assert list(document["scenarios"]) == names, output
        assert re.search(r"^scenario +\| figure", stdout, re.MULTILINE), output
        scenarios.update(document["scenarios"])
    assert set(scenarios) == set(SCENARIOS)
    for name, scenario in scenarios.items():
        assert scenario["error_count"] == 0, (name, scenario["errors"])
        assert scenario["targets"], f"{name} reported no target"
        assert scenario["figures"], f"{name} reported no figure"


@pytest.mark.bench
async def test_the_camera_page_script_measures_a_page_and_the_whole_list() -> None:
    cameras = 2 * SLICE + 1
    figures = await camerapage.measure(cameras, repeat=3)
    figures.update(await camerapage.measure_whole_list(cameras, lists=2))
    assert set(figures) == {
        "cameras",
        "repeat",
        "page_ms",
        "totals_ms",
        "page_and_totals_ms",
        "walked_totals_ms",
        "page_after_join_ms",
        "whole_list_ms",
        "whole_list_bytes",
        "longest_loop_stall_ms",
        "slowest_healthz_ms",
        "healthz_calls",
    }
    assert figures["cameras"] == cameras
    assert figures["whole_list_bytes"] > cameras * len('{"cameraId":"cam-000000"}')
    assert figures["healthz_calls"] >= 1
