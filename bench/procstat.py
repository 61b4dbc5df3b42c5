"""What ``/proc`` says about a process: memory, CPU time, open files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuSample",
    "Memory",
    "children",
    "cpu_seconds",
    "listening_on",
    "memory",
    "open_fds",
    "reset_peak_rss",
    "socket_inodes",
    "tcp_bytes",
    "tcp_socket_inodes",
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


def children(pid: int) -> set[int]:
    """The pids of ``pid``'s child processes (from every thread's ``children`` list)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


#: /proc/net/tcp's states
TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` has open."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_socket_inodes(state: str, local_port: int, remote_port: int | None = None) -> set[str]:
    """Inodes of the IPv4 TCP sockets in ``state`` on ``local_port`` (and ``remote_port``)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, st, inode = fields[1], fields[2], fields[3], fields[9]
        if st != state or int(local.split(":")[1], 16) != local_port:
            continue
        if remote_port is None or int(remote.split(":")[1], 16) == remote_port:
            inodes.add(inode)
    return inodes


def listening_on(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a socket listening on TCP ``port`` (IPv4)."""
    try:
        return bool(socket_inodes(pid) & tcp_socket_inodes(TCP_LISTEN, port))
    except FileNotFoundError:
        return False  # the process is gone


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset_peak_rss(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


_TCP_BYTES = re.compile(rb"bytes_(sent|received):(\d+)")


async def tcp_bytes(local_port: int) -> tuple[int, int] | None:
    """Bytes sent and received so far over the established TCP connections on
    ``local_port`` (``ss -ti``, the kernel's per-connection counters), or ``None``
    without ``ss``."""
    try:
        process = await asyncio.create_subprocess_exec(
            "ss",
            "-tinH",
            "state",
            "established",
            f"( sport = :{local_port} )",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    output, _ = await process.communicate()
    if process.returncode != 0:
        return None
    totals = {b"sent": 0, b"received": 0}
    for kind, count in _TCP_BYTES.findall(output):
        totals[kind] += int(count)
    return totals[b"sent"], totals[b"received"]
