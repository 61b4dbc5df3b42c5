"""Server and camera processes: started on 127.0.0.1, watched, stopped and reaped."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

__all__ = [
    "REPO",
    "Child",
    "child_env",
    "free_port",
    "python",
    "running",
    "spawn",
    "stop",
    "wait_healthy",
]

REPO: Final = Path(__file__).resolve().parent.parent
HOST: Final = "127.0.0.1"
STOP_TIMEOUT_SECONDS: Final = 15.0
#: ``free_port`` picks from here up to the ephemeral range
LOWEST_PICKED_PORT: Final = 10_000
#: Secrets in the caller's environment must not switch auth on in a benchmark.
DROPPED_VARIABLES: Final = frozenset({"API_TOKEN", "CAMERA_SECRET", "CAMERA_TOKEN"})


def free_port() -> int:
    """A loopback port free now, for a child to bind. Picked below the kernel's ephemeral
    range when there is room (ports from 10,000): a port the kernel picks is one it may
    give the next outgoing connection before the child binds it."""
    low = _ephemeral_low()
    if low - LOWEST_PICKED_PORT >= 1000:
        for _ in range(100):
            port = random.randrange(LOWEST_PICKED_PORT, low)
            with socket.socket() as probe:
                try:
                    probe.bind((HOST, port))
                except OSError:
                    continue
                return port
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (0 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    env["PYTHONPATH"] = str(REPO)
    env.update(overrides)
    return env


@dataclass(slots=True)
class Child:
    """A process we started; its stderr goes to a file read after the fact."""

    name: str
    process: asyncio.subprocess.Process
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def stderr_lines(self) -> list[str]:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]


def python(*args: str) -> list[str]:
    """The command line that runs this Python with ``args`` (``python("-m", "server")``)."""
    return [sys.executable, *args]


async def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    workdir: Path,
    *,
    capture_stdout: bool = False,
    fd_limit: int | None = None,
) -> Child:
    """Start ``argv`` with ``env``; stderr to ``workdir/<name>.stderr`` (a file: a pipe
    nobody reads would block a chatty child).

    ``fd_limit`` sets the child's open-file limit, soft and hard (the server lifts
    its soft limit to the hard one at start-up).
    """
    stderr_path = workdir / f"{name}.stderr"
    limit_fds = (
        None
        if fd_limit is None
        else functools.partial(resource.setrlimit, resource.RLIMIT_NOFILE, (fd_limit, fd_limit))
    )

    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=limit_fds,
        )
    return Child(name, process, stderr_path)


async def stop(child: Child, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, wait, SIGKILL if it hangs; returns the exit status."""
    if child.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await child.process.wait()
    code = child.process.returncode
    assert code is not None
    return code


@contextlib.asynccontextmanager
async def running(child: Child) -> AsyncIterator[Child]:
    """Stop ``child`` when the block ends, however it ends."""
    try:
        yield child
    finally:
        await stop(child)


async def wait_healthy(base_url: str, child: Child, timeout: float = 30.0) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            if not child.running:
                tail = "; ".join(child.stderr_lines()[-3:])
                raise RuntimeError(f"{child.name} exited with {child.process.returncode}: {tail}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
