"""Out of file descriptors: accepting pauses and resumes, and the log stays short."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.helpers import wait_until
from tests.processes import child_env, free_port, wait_healthy
from tools.procs import python, spawn, stop

pytestmark = pytest.mark.process

#: the server's whole fd budget (soft and hard: common/fdlimit.py lifts soft to hard)
FD_LIMIT = 64
FLOOD = 2 * FD_LIMIT


async def test_a_flood_past_the_fd_limit_pauses_accepting_then_the_server_recovers() -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = child_env(PORT=str(port), HEADER_TIMEOUT_SECONDS="30", KEEPALIVE_TIMEOUT_SECONDS="30")
    with tempfile.TemporaryDirectory(prefix="camrelay-test-") as workdir:
        server = await spawn(
            "server", python("-m", "server"), env, Path(workdir), fd_limit=FD_LIMIT
        )
        flood: list[asyncio.StreamWriter] = []
        try:
            await wait_healthy(base_url, server)
            for _ in range(FLOOD):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")  # never finished
                flood.append(writer)

            def log_text() -> str:
                return server.stderr_path.read_text(errors="replace")

            await wait_until(lambda: "accepting paused" in log_text(), timeout=5)
            for writer in flood:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await wait_healthy(base_url, server, timeout=5)
            async with ClientSession() as http, http.get(f"{base_url}/metrics") as response:
                metrics = await response.text()
        finally:
            await stop(server)
        text = log_text()
    pauses = [line for line in text.splitlines() if "accepting paused" in line]
    assert 1 <= len(pauses) <= 5, text[-3000:]
    assert "Traceback" not in text
    assert len(text.splitlines()) < 30, text[-3000:]
    assert "camrelay_accept_pauses_total 0.0" not in metrics
    assert "camrelay_accept_pauses_total" in metrics
