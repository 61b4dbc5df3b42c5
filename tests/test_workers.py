"""``python -m server --workers N``: real worker processes on one port under a supervisor."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from bench.procstat import (
    TCP_ESTABLISHED,
    children,
    listening_on,
    socket_inodes,
    tcp_socket_inodes,
)
from server.serve.supervisor import Supervisor
from tests.helpers import wait_until
from tests.processes import child_env, free_port, python, server_process, spawned
from tools.redis_server import RedisServer

pytestmark = pytest.mark.process


def alive(pid: int) -> bool:
    """``pid`` has not exited. A zombie has (it only waits to be reaped, by init for an
    orphan, which may take a second or two)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return not stat.rpartition(") ")[2].startswith("Z")


def listening_workers(supervisor_pid: int, port: int) -> set[int]:
    """The supervisor's children that hold a listening socket on ``port``."""
    return {pid for pid in children(supervisor_pid) if listening_on(pid, port)}


async def healthz_answered_by(port: int, workers: set[int]) -> int:
    """Ask ``/healthz`` on a new connection; the pid of the worker that accepted it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: camrelay\r\n\r\n")
        assert await reader.readline() == b"HTTP/1.1 200 OK\r\n"
        client_port = writer.get_extra_info("sockname")[1]
        connection = tcp_socket_inodes(TCP_ESTABLISHED, port, client_port)
        owners = [pid for pid in workers if socket_inodes(pid) & connection]
        assert len(owners) == 1, (connection, owners)
        return owners[0]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_workers_without_redis_url_exit_2_with_one_line() -> None:
    env = child_env(PORT=str(free_port()))
    env.pop("REDIS_URL", None)
    async with spawned(python("-m", "server", "--workers", "2"), env) as child:
        assert await asyncio.wait_for(child.process.wait(), 30) == 2
        lines = child.stderr_lines()
    assert lines == [
        "camrelay: --workers 2 needs REDIS_URL (workers share the fleet through Redis), "
        "e.g. REDIS_URL=redis://127.0.0.1:6379"
    ]


@pytest.mark.redis
async def test_workers_exit_2_when_the_port_is_taken(redis_server: RedisServer) -> None:
    """A worker that cannot start is not restarted forever: the supervisor gives up."""
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        env = child_env(PORT=str(port), REDIS_URL=redis_server.url, WORKERS="2")
        async with spawned(python("-m", "server"), env) as child:
            assert await asyncio.wait_for(child.process.wait(), 30) == 2
            lines = child.stderr_lines()
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert any(f"cannot listen on 127.0.0.1:{port} (HOST, PORT)" in line for line in lines)
    assert any("cannot start (exit 2): stopping all" in line for line in lines), lines


@pytest.mark.redis
async def test_two_workers_share_a_port_are_restarted_and_stop_on_sigterm(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    env = child_env(PORT=str(port), REDIS_URL=redis_server.url, LOG_LEVEL="INFO")
    async with spawned(python("-m", "server", "--workers", "2"), env) as supervisor:
        await wait_until(lambda: len(listening_workers(supervisor.pid, port)) == 2, timeout=30)
        workers = listening_workers(supervisor.pid, port)

        # The kernel spreads new connections over both workers' sockets.
        answered: set[int] = set()
        for _ in range(100):
            answered.add(await healthz_answered_by(port, workers))
            if answered == workers:
                break
        assert answered == workers

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        await wait_until(
            lambda: len(listening_workers(supervisor.pid, port) - {killed}) == 2, timeout=30
        )
        assert killed not in children(supervisor.pid)
        restarts = [line for line in supervisor.stderr_lines() if "restarting in" in line]
        assert len(restarts) == 1
        assert f"(pid {killed}) exited with status -9" in restarts[0]
        assert "WARNING camrelay.supervisor" in restarts[0]

        survivors = children(supervisor.pid)
        supervisor.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(supervisor.process.wait(), 20) == 0
        lines = supervisor.stderr_lines()
    assert [pid for pid in survivors if alive(pid)] == [], "workers outlived the supervisor"
    # One line for the first starts (each worker's own line is DEBUG), one per restart.
    [first] = [line for line in lines if " workers started: " in line]
    restarted = [line.split(" worker ")[1] for line in lines if "started (pid" in line]
    names = re.findall(r"(\S+) \(pid \d+\)", first.split(" workers started: ")[1])
    names += [entry.split()[0] for entry in restarted]
    base = names[0].rsplit("-w", 1)[0]
    assert set(names) >= {f"{base}-w1", f"{base}-w2"}
    assert len(names) == 3
    assert any(name.endswith(".1") for name in names), names
    assert "all 2 workers stopped" in lines[-1]


@pytest.mark.redis
async def test_workers_stop_when_their_supervisor_is_killed(redis_server: RedisServer) -> None:
    port = free_port()
    env = child_env(PORT=str(port), REDIS_URL=redis_server.url, WORKERS="2")
    async with spawned(python("-m", "server"), env) as supervisor:
        await wait_until(lambda: len(listening_workers(supervisor.pid, port)) == 2, timeout=30)
        workers = listening_workers(supervisor.pid, port)
        supervisor.process.kill()
        await supervisor.process.wait()
        try:
            await wait_until(lambda: not any(alive(pid) for pid in workers), timeout=10)
        finally:
            for pid in filter(alive, workers):  # orphans, when the test fails
                os.kill(pid, signal.SIGKILL)


async def test_a_stopping_server_answers_the_connections_queued_on_its_socket() -> None:
    """Stopped (SIGSTOP), the server's socket queues connections; SIGTERM must not reset them."""
    async with server_process() as (base_url, child):
        port = int(base_url.rsplit(":", 1)[1])
        child.process.send_signal(signal.SIGSTOP)
        try:
            connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
            for _, writer in connections:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: camrelay\r\n\r\n")
                await writer.drain()
            child.process.send_signal(signal.SIGTERM)
        finally:
            child.process.send_signal(signal.SIGCONT)
        status_lines = [await reader.readline() for reader, _ in connections]
        for _, writer in connections:
            writer.close()
        assert await asyncio.wait_for(child.process.wait(), 10) == 0
    assert status_lines == [b"HTTP/1.1 200 OK\r\n"] * 20


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        # Still starting when the stop came (no handler yet): ended by the signal, held nothing.
        ("import time; print('up', flush=True); time.sleep(30)", 0),
        # A worker that fails its own stop.
        (
            "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(3)); "
            "print('up', flush=True); time.sleep(30)",
            1,
        ),
    ],
    ids=["ended-by-the-signal", "exits-3"],
)
async def test_the_supervisor_counts_a_worker_ended_by_its_stop_signal_as_stopped(
    worker: str, expected: int, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    supervisor = Supervisor(
        count=1,
        base_name="w",
        environ=dict(os.environ),
        argv=["sh", "-c", f'exec "$0" -c "$1" > {started}', sys.executable, worker],
        shutdown_timeout_seconds=5.0,
    )
    running = asyncio.ensure_future(supervisor.run())
    await wait_until(lambda: started.exists() and started.read_text() == "up\n", timeout=10.0)
    supervisor.stop(signal.SIGTERM)
    assert await running == expected
