"""What ``/proc`` says about a process: memory, CPU time, open files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuSample",
    "Memory",
    "cpu_seconds",
    "memory",
    "open_fds",
    "reset_peak_rss",
]

KIB = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Memory:
    """Resident set size now and its high-water mark, in bytes."""

    rss: int
    hwm: int


@dataclass(frozen=True, slots=True)
class CpuSample:
    """User plus system CPU seconds the process has used, and when that was read."""

    seconds: float
    at: float


def memory(pid: int) -> Memory:
    """``VmRSS`` and ``VmHWM`` from ``/proc/<pid>/status``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * KIB
    return Memory(rss=fields["VmRSS"], hwm=fields["VmHWM"])


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` from ``/proc/<pid>/stat``, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    after_name = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / CLOCK_TICKS


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
