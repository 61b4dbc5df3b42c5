"""Out of file descriptors: accepting pauses and resumes, and the log stays short."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import tempfile

import pytest
from aiohttp import ClientSession

from tests.helpers import wait_until
from tests.processes import child_env, free_port, wait_healthy

#: the server's whole fd budget (soft and hard: server/limits.py lifts soft to hard)
FD_LIMIT = 64
FLOOD = 2 * FD_LIMIT


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.mark.slow
async def test_a_flood_past_the_fd_limit_pauses_accepting_then_the_server_recovers() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = child_env(PORT=str(port), HEADER_TIMEOUT_SECONDS="30", KEEPALIVE_TIMEOUT_SECONDS="30")
    with tempfile.TemporaryFile() as log:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", env=env, stderr=log, preexec_fn=_low_fd_limit
        )
        flood: list[asyncio.StreamWriter] = []
        try:
            await wait_healthy(base_url, server)
            for _ in range(FLOOD):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")  # never finished
                flood.append(writer)

            def log_text() -> str:
                log.seek(0)
                return log.read().decode()

            await wait_until(lambda: "accepting paused" in log_text(), timeout=5)
            for writer in flood:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await wait_healthy(base_url, server, timeout=5)
            async with ClientSession() as http, http.get(f"{base_url}/metrics") as response:
                metrics = await response.text()
        finally:
            server.terminate()
            await server.wait()
        text = log_text()
    pauses = [line for line in text.splitlines() if "accepting paused" in line]
    assert 1 <= len(pauses) <= 5, text[-3000:]
    assert "Traceback" not in text
    assert len(text.splitlines()) < 30, text[-3000:]
    assert "camrelay_accept_pauses_total 0.0" not in metrics
    assert "camrelay_accept_pauses_total" in metrics
