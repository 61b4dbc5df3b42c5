"""The benchmark harness cannot rot: ``python -m bench --quick`` runs every scenario, cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


def test_quick_bench_reports_every_scenario_without_errors(tmp_path: Path) -> None:
    assert {name for group in GROUPS for name in group} == SCENARIOS
    runs = []
    for index, group in enumerate(GROUPS):
        out = tmp_path / f"quick-{index}.json"
        only = [argument for name in group for argument in ("--only", name)]
        process = subprocess.Popen(
            [sys.executable, "-m", "bench", "--quick", *only, "--out", str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((group, out, process))
    scenarios: dict[str, dict[str, object]] = {}
    try:
        for group, out, process in runs:
            stdout, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)
            output = f"{stdout[-4000:]}\n{stderr[-4000:]}"
            assert process.returncode == 0, output
            document = json.loads(out.read_text())
            assert document["mode"] == "quick"
            assert set(document["scenarios"]) == set(group), output
            assert re.search(r"^scenario +\| figure", stdout, re.MULTILINE), output
            scenarios.update(document["scenarios"])
    finally:
        for _, _, process in runs:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for name, scenario in scenarios.items():
        assert scenario["error_count"] == 0, (name, scenario["errors"])
        assert scenario["targets"], f"{name} reported no target"
        assert scenario["figures"], f"{name} reported no figure"
