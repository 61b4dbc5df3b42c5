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


def test_quick_bench_reports_every_scenario_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )
    output = f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}"
    assert completed.returncode == 0, output
    document = json.loads(out.read_text())
    assert document["mode"] == "quick"
    assert set(document["scenarios"]) == SCENARIOS, output
    for name, scenario in document["scenarios"].items():
        assert scenario["error_count"] == 0, (name, scenario["errors"])
        assert scenario["targets"], f"{name} reported no target"
        assert scenario["figures"], f"{name} reported no figure"
    assert re.search(r"^scenario +\| figure", completed.stdout, re.MULTILINE), output
