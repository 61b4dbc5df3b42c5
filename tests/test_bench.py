"""The benchmark harness cannot rot: ``python -m bench --quick`` runs every scenario, cleanly.

The quick harness takes longer than any other test, mostly waiting on timers
and child processes, so it starts as soon as collection ends (see
``pytest_collection_finish`` in tests/conftest.py) and runs alongside the rest
of the suite; this test collects what it reported.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {
    "latency",
    "burst",
    "fleet",
    "console",
    "fanout",
    "biglog",
    "soak",
    "flood",
    "idle",
    "bigfleet",
    "cluster-latency",
    "cluster-burst",
    "cluster-fanout",
    "cluster-fleet",
    "cluster-kill",
}
#: a guard against a hang, not a speed check (speed is what the benchmarks measure)
HANG_GUARD_SECONDS = 120.0
#: The quick scenarios run as three harness processes at once (most of their time is
#: spent waiting on timers and child processes): groups of about equal length.
GROUPS = (
    ("flood", "console", "latency", "soak"),
    ("fleet", "cluster-fleet", "bigfleet", "fanout"),
    (
        "cluster-kill",
        "cluster-fanout",
        "idle",
        "cluster-latency",
        "biglog",
        "cluster-burst",
        "burst",
    ),
)


@dataclass(frozen=True)
class QuickRun:
    """One harness process running a group of quick scenarios."""

    group: tuple[str, ...]
    out: Path
    process: subprocess.Popen[str]


_started: list[QuickRun] = []


def start_quick_bench() -> list[QuickRun]:
    """Start the harness processes (once a session); the runs, to collect later."""
    if not _started:
        workdir = Path(tempfile.mkdtemp(prefix="camrelay-quick-bench-"))
        for index, group in enumerate(GROUPS):
            out = workdir / f"quick-{index}.json"
            only = [argument for name in group for argument in ("--only", name)]
            process = subprocess.Popen(
                [sys.executable, "-m", "bench", "--quick", *only, "--out", str(out)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _started.append(QuickRun(group, out, process))
    return _started


def stop_quick_bench() -> None:
    """Kill what is still running (a session cut short)."""
    for run in _started:
        if run.process.poll() is None:
            run.process.kill()
            run.process.communicate()


def test_quick_bench_reports_every_scenario_without_errors() -> None:
    assert {name for group in GROUPS for name in group} == SCENARIOS
    scenarios: dict[str, dict[str, object]] = {}
    try:
        for run in start_quick_bench():
            stdout, stderr = run.process.communicate(timeout=HANG_GUARD_SECONDS)
            output = f"{stdout[-4000:]}\n{stderr[-4000:]}"
            assert run.process.returncode == 0, output
            document = json.loads(run.out.read_text())
            assert document["mode"] == "quick"
            assert set(document["scenarios"]) == set(run.group), output
            assert re.search(r"^scenario +\| figure", stdout, re.MULTILINE), output
            scenarios.update(document["scenarios"])
    finally:
        stop_quick_bench()
    for name, scenario in scenarios.items():
        assert scenario["error_count"] == 0, (name, scenario["errors"])
        assert scenario["targets"], f"{name} reported no target"
        assert scenario["figures"], f"{name} reported no figure"
