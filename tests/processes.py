"""Start the server (and cameras) as separate processes, the way the README does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import ClientError, ClientSession

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"API_TOKEN", "CAMERA_SECRET"}}
    env.update(PYTHONPATH=str(REPO), HOST="127.0.0.1", **overrides)
    return env


async def wait_healthy(
    base_url: str, process: asyncio.subprocess.Process, timeout: float = 20
) -> None:
    async with ClientSession() as http, asyncio.timeout(timeout):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(ClientError):
                async with http.get(f"{base_url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def spawned(
    argv: list[str], env: Mapping[str, str], *, cwd: Path = REPO
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, terminated and reaped when the block ends."""
    # Its stderr goes to a file, not a pipe: a pipe nobody reads blocks a chatty child.
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


@contextlib.asynccontextmanager
async def server_process(**env: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    async with spawned(
        [sys.executable, "-m", "server"], child_env(PORT=str(port), **env)
    ) as process:
        base_url = f"http://127.0.0.1:{port}"
        await wait_healthy(base_url, process)
        yield base_url, process
