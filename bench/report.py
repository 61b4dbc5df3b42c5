"""The machine's description, the printed table and the JSON file."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import orjson

from bench.result import ScenarioResult
from common.fdlimit import hard_open_file_limit
from tools.procs import REPO

__all__ = ["describe", "machine", "table", "write_json"]

MAX_ERRORS_LISTED = 5


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def revision() -> str:
    """The commit the server and cameras ran from, ``+dirty`` if they differ from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "server", "camera"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if changed else head


def machine() -> dict[str, object]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "orjson": metadata.version("orjson"),
        "fd_soft_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "fd_hard_limit": hard_open_file_limit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "revision": revision(),
    }


def describe(host: dict[str, object]) -> str:
    """One line about the machine and the software, for the top of the table."""
    return (
        f"machine: {host['nproc']} x {host['cpu']}, {host['memory_gib']} GiB, "
        f"Linux {host['kernel']}, Python {host['python']}, aiohttp {host['aiohttp']}, "
        f"orjson {host['orjson']}; fd limits {host['fd_soft_limit']}/{host['fd_hard_limit']}; "
        f"load average before {host['load_average']}, after {host.get('load_average_after')}; "
        f"revision {host['revision']}"
    )


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def table(results: Sequence[ScenarioResult]) -> str:
    """One row per target and per figure; targets first, with their verdict."""
    rows: list[tuple[str, str, str, str, str]] = [("scenario", "figure", "value", "target", "")]
    for result in results:
        for target in result.targets:
            verdict = "met" if target.met else "MISSED"
            rows.append(
                (
                    result.name,
                    target.name,
                    f"{_value(target.value)} {target.unit}".strip(),
                    f"{target.comparison} {_value(target.limit)} {target.unit}".strip(),
                    verdict,
                )
            )
        rows.append(
            (
                result.name,
                "errors",
                str(result.error_count),
                "= 0",
                "met" if result.error_count == 0 else "MISSED",
            )
        )
        for name, value in result.figures.items():
            rows.append((result.name, name, _value(value), "", ""))
        rows.append((result.name, "scenario time s", f"{result.seconds:.1f}", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("-+-".join("-" * width for width in widths))
    for result in results:
        for message, count in list(result.errors.items())[:MAX_ERRORS_LISTED]:
            lines.append(f"  {result.name} error x{count}: {message}")
        if len(result.errors) > MAX_ERRORS_LISTED:
            lines.append(
                f"  {result.name}: {len(result.errors) - MAX_ERRORS_LISTED} more kinds of error"
            )
        lines.extend(f"  {result.name} note: {note}" for note in result.notes)
    return "\n".join(lines)


def write_json(
    path: Path,
    mode: str,
    seconds: float,
    host: dict[str, object],
    results: Sequence[ScenarioResult],
) -> None:
    document = {
        "mode": mode,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": host,
        "error_count": sum(r.error_count for r in results),
        "targets_missed": [f"{r.name}: {t.name}" for r in results for t in r.targets if not t.met],
        "scenarios": {r.name: r.to_json() for r in results},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
