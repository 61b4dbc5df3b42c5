"""What a Redis (or each primary of a Redis Cluster) says it did: memory, commands, bytes, CPU.

``sample`` reads ``INFO memory``, ``INFO stats``, ``INFO cpu`` and ``INFO
commandstats`` of each server and adds them up; ``RedisSample.minus`` gives what
happened between two samples. Commands are ``INFO commandstats`` calls, which on
Redis 7 count the commands a Lua script runs as well as the script call itself,
less the harness's own (``INFO``, ``MONITOR``, ``CLUSTER``, ``CONFIG``, ``PING``).

``monitor`` tells the two apart: ``MONITOR`` shows a command run inside a script
from the client ``lua``, every other one from the connection that sent it, so its
counts split what the nodes sent from what their scripts ran. ``MONITOR`` costs
Redis CPU, so it runs in a window of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.procs import HOST
from tools.redis_server import RedisServer

__all__ = ["MonitorCounts", "RedisSample", "monitor", "sample"]

#: commands the harness itself sends to measure (never the nodes')
OWN_COMMANDS = ("info", "monitor", "cluster", "config", "ping")


@dataclass(frozen=True, slots=True)
class RedisSample:
    used_memory: int
    commands: int
    #: ``INFO commandstats`` calls by command name (lower case, ``config|get`` style)
    by_command: dict[str, int]
    net_input_bytes: int
    net_output_bytes: int
    cpu_seconds: float
    at: float

    def minus(self, before: RedisSample) -> RedisSample:
        names = set(self.by_command) | set(before.by_command)
        return RedisSample(
            self.used_memory - before.used_memory,
            self.commands - before.commands,
            {n: self.by_command.get(n, 0) - before.by_command.get(n, 0) for n in names},
            self.net_input_bytes - before.net_input_bytes,
            self.net_output_bytes - before.net_output_bytes,
            self.cpu_seconds - before.cpu_seconds,
            self.at - before.at,
        )


def _own(name: str) -> bool:
    return name.split("|", 1)[0] in OWN_COMMANDS


def command_calls(commandstats: dict[str, str]) -> dict[str, int]:
    """``cmdstat_evalsha: calls=3,usec=...`` as ``{"evalsha": 3}``, the harness's own left out."""
    calls: dict[str, int] = {}
    for key, value in commandstats.items():
        name = key.removeprefix("cmdstat_")
        if not key.startswith("cmdstat_") or _own(name):
            continue
        fields = dict(item.partition("=")[::2] for item in value.split(","))
        calls[name] = int(fields.get("calls", "0"))
    return calls


async def _one(server: RedisServer) -> RedisSample:
    memory, stats, cpu, commandstats = [
        await server.info(section) for section in ("memory", "stats", "cpu", "commandstats")
    ]
    calls = command_calls(commandstats)
    return RedisSample(
        used_memory=int(memory["used_memory"]),
        commands=sum(calls.values()),
        by_command=calls,
        net_input_bytes=int(stats["total_net_input_bytes"]),
        net_output_bytes=int(stats["total_net_output_bytes"]),
        cpu_seconds=float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        at=time.monotonic(),
    )


async def sample(servers: Iterable[RedisServer]) -> RedisSample:
    """The servers' figures added up (the primaries of a Redis Cluster, or one Redis)."""
    parts = [await _one(server) for server in servers]
    by_command: Counter[str] = Counter()
    for part in parts:
        by_command.update(part.by_command)
    return RedisSample(
        sum(p.used_memory for p in parts),
        sum(p.commands for p in parts),
        dict(by_command),
        sum(p.net_input_bytes for p in parts),
        sum(p.net_output_bytes for p in parts),
        sum(p.cpu_seconds for p in parts),
        max(p.at for p in parts),
    )


@dataclass(slots=True)
class MonitorCounts:
    """Commands ``MONITOR`` showed: sent by a client, or run by a script, by name."""

    sent: Counter[str] = field(default_factory=Counter)
    in_scripts: Counter[str] = field(default_factory=Counter)
    #: ``EVALSHA`` calls by the script's SHA1
    scripts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def note(self, line: bytes) -> None:
        # b'+1700000000.123456 [0 127.0.0.1:5678] "evalsha" "..." ...'
        _, _, rest = line.partition(b" [")
        source, _, command = rest.partition(b"] ")
        words = command.split(b" ", 2)
        name = words[0].strip(b'"\r\n').decode(errors="replace").lower()
        if not name or _own(name):
            return
        (self.in_scripts if source.endswith(b" lua") else self.sent)[name] += 1
        if name == "evalsha" and len(words) > 1:
            self.scripts[words[1].strip(b'"\r\n').decode(errors="replace")] += 1


async def monitor(server: RedisServer, seconds: float) -> MonitorCounts:
    """What ``MONITOR`` shows of ``server`` over ``seconds``."""
    counts = MonitorCounts()
    reader, writer = await asyncio.open_connection(HOST, server.port, limit=1 << 20)
    started = time.monotonic()
    try:
        writer.write(b"MONITOR\r\n")
        if (await reader.readline()).strip() != b"+OK":
            raise RuntimeError("MONITOR refused")
        rest = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while chunk := await reader.read(1 << 16):
                    *lines, rest = (rest + chunk).split(b"\n")
                    for line in lines:
                        counts.note(line)
    finally:
        counts.seconds = time.monotonic() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return counts
