"""SIGTERM with polls held and callers waiting: everyone answered, exit 0 within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.processes import server_process

pytestmark = pytest.mark.process


async def wait_cameras(
    http: ClientSession, base_url: str, expected: dict[str, dict[str, Any]]
) -> None:
    async with asyncio.timeout(5):
        while True:
            async with http.get(f"{base_url}/cameras") as response:
                cameras = {c["cameraId"]: c for c in (await response.json())["cameras"]}
            if all(
                camera_id in cameras and all(cameras[camera_id][k] == v for k, v in want.items())
                for camera_id, want in expected.items()
            ):
                return
            await asyncio.sleep(0.02)


async def test_sigterm_answers_everyone_and_exits_zero() -> None:
    async with (
        server_process(
            POLL_HOLD_SECONDS="30", CONNECT_TIMEOUT_SECONDS="10", RESPONSE_TIMEOUT_SECONDS="30"
        ) as (base_url, server),
        ClientSession() as http,
    ):
        held_poll = asyncio.ensure_future(http.get(f"{base_url}/poll_for_command?cameraId=idle"))
        busy_poll = asyncio.ensure_future(http.get(f"{base_url}/poll_for_command?cameraId=busy"))
        await wait_cameras(http, base_url, {"idle": {"polling": True}, "busy": {"polling": True}})
        in_flight = asyncio.ensure_future(http.get(f"{base_url}/logs?cameraId=busy"))
        await (await busy_poll).json()  # the busy camera took a command ...
        queued = asyncio.ensure_future(http.get(f"{base_url}/logs?cameraId=busy"))
        await wait_cameras(http, base_url, {"busy": {"waiting": 1, "inFlight": 1}})

        loop = asyncio.get_running_loop()
        started = loop.time()
        server.process.send_signal(signal.SIGTERM)

        poll_response = await held_poll
        assert poll_response.status == 200
        assert await poll_response.json() == {"command": "noop"}
        for caller in (in_flight, queued):
            response = await caller
            assert response.status == 503
            assert response.headers["Retry-After"].isdigit()
            assert response.content_type == "application/problem+json"
            assert "shutting down" in (await response.json(content_type=None))["detail"]
        assert await asyncio.wait_for(server.process.wait(), 10) == 0
        assert loop.time() - started < 5


async def test_a_second_signal_does_not_cut_the_shutdown_short() -> None:
    # Ctrl-C in a terminal reaches run.sh and the server; run.sh then sends SIGTERM too.
    async with server_process() as (base_url, server), ClientSession() as http:
        held_poll = asyncio.ensure_future(http.get(f"{base_url}/poll_for_command"))
        await wait_cameras(http, base_url, {"default": {"polling": True}})
        server.process.send_signal(signal.SIGINT)
        response = await held_poll  # answered while the shutdown is under way ...
        with contextlib.suppress(ProcessLookupError):  # ... when the second signal comes
            server.process.send_signal(signal.SIGTERM)
        assert response.status == 200
        assert await response.json() == {"command": "noop"}
        assert await asyncio.wait_for(server.process.wait(), 10) == 0
