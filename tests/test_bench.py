"""The benchmark harness cannot rot: ``python -m bench --quick`` runs every scenario, cleanly.

The quick run is this test (marked ``bench``; it also starts servers, cameras and
a Redis, so ``process`` and ``redis`` too). Most of a quick scenario's time is spent
waiting on timers and child processes, so the test runs one harness process per
scenario, a few at once, each with ``--only NAME``: about 15-20 s on 2 cores
instead of the 35-45 s of one ``python -m bench --quick``. Which scenarios there are
and how big their quick run is comes from the registry (bench/scenarios/).
"""

from __future__ import annotations

import asyncio
import json
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import bench.scenarios
from bench.plan import QUICK
from bench.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
#: harness processes at once (on 2 cores; the scenarios mostly wait)
CONCURRENT = 3
#: a guard against a hang, not a speed check (speed is what the benchmarks measure)
HANG_GUARD_SECONDS = 100.0


def test_every_scenario_module_is_registered_with_its_own_sizes() -> None:
    modules = {info.name for info in pkgutil.iter_modules(bench.scenarios.__path__)}
    registered = {scenario.run.__module__.rpartition(".")[2] for scenario in SCENARIOS.values()}
    assert registered == modules
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert type(scenario.quick) is type(scenario.full), name
        assert scenario.params(QUICK) is scenario.quick


async def quick_run(name: str, out: Path, slots: asyncio.Semaphore) -> tuple[int, str, str]:
    """``python -m bench --quick --only NAME``: its exit status, stdout and stderr."""
    async with slots:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            name,
            "--out",
            str(out),
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
    slots = asyncio.Semaphore(CONCURRENT)
    outs = {name: tmp_path / f"{name}.json" for name in SCENARIOS}
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        runs = await asyncio.gather(*(quick_run(name, out, slots) for name, out in outs.items()))
    scenarios: dict[str, dict[str, object]] = {}
    for (name, out), (returncode, stdout, stderr) in zip(outs.items(), runs, strict=True):
        output = f"{name}:\n{stdout[-4000:]}\n{stderr[-4000:]}"
        assert returncode == 0, output
        document = json.loads(out.read_text())
        assert document["mode"] == "quick"
        assert set(document["scenarios"]) == {name}, output
        assert re.search(r"^scenario +\| figure", stdout, re.MULTILINE), output
        scenarios.update(document["scenarios"])
    assert set(scenarios) == set(SCENARIOS)
    for name, scenario in scenarios.items():
        assert scenario["error_count"] == 0, (name, scenario["errors"])
        assert scenario["targets"], f"{name} reported no target"
        assert scenario["figures"], f"{name} reported no figure"
