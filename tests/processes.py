"""Start the server (and cameras) as separate processes, the way the README does.

The process plumbing (free ports, spawning, stopping, health waits) is
shared with the benchmark harness (``tools.procs``): one definition for both.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from tools.procs import REPO, Child, free_port, python, running, spawn, wait_healthy
from tools.procs import child_env as _child_env

__all__ = ["REPO", "child_env", "free_port", "server_process", "spawned", "wait_healthy"]


def child_env(**overrides: str) -> dict[str, str]:
    """This environment without secrets, the repo importable, serving on 127.0.0.1."""
    return _child_env({"HOST": "127.0.0.1", **overrides})


@contextlib.asynccontextmanager
async def spawned(argv: list[str], env: Mapping[str, str]) -> AsyncIterator[Child]:
    """A child process, terminated and reaped when the block ends."""
    with tempfile.TemporaryDirectory(prefix="camrelay-test-") as workdir:
        child = await spawn(Path(argv[-1]).name, argv, env, Path(workdir))
        async with running(child):
            yield child


@contextlib.asynccontextmanager
async def server_process(**env: str) -> AsyncIterator[tuple[str, Child]]:
    port = free_port()
    async with spawned(python("-m", "server"), child_env(PORT=str(port), **env)) as child:
        base_url = f"http://127.0.0.1:{port}"
        await wait_healthy(base_url, child)
        yield base_url, child
