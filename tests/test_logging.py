"""Log lines: one per relay event, the request id on each, JSON on demand, no payloads."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from server.observe.events import EventLogger
from server.observe.logging_setup import REQUEST_ID, configure_logging
from server.relay import ResultOutcome
from tests.conftest import Client, MakeLiveServer, relay_of
from tests.helpers import camera_polling, wait_until


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Route the root logger through camrelay's JSON configuration into a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging(logging.INFO, "json")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


async def test_relay_events_are_json_lines_with_the_request_id(
    client: Client, json_log: io.StringIO
) -> None:
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command?cameraId=cam-7"))
    await wait_until(camera_polling(relay, "cam-7"))
    caller = asyncio.ensure_future(
        client.get("/logs?cameraId=cam-7", headers={"X-Request-ID": "user-req-1"})
    )
    command = await (await poll).json()
    secret_payload = "motion detected at (13, 37) PAYLOAD"
    result = {"requestId": command["requestId"], "logs": [{"timestamp": 1, "d": secret_payload}]}
    async with client.post("/send_logs?cameraId=cam-7", json=result):
        pass
    assert (await caller).status == 200

    lines = [orjson.loads(line) for line in json_log.getvalue().splitlines()]
    relay_lines = [line for line in lines if line["logger"] == "camrelay.relay"]
    messages = [line["message"] for line in relay_lines]
    assert messages == [
        "camera cam-7 online",
        f"command {command['requestId']} delivered to camera cam-7 for 1 caller(s)",
        "result from camera cam-7: accepted",
    ]
    assert relay_lines[1]["requestId"] == "user-req-1"
    assert {"time", "level", "logger", "message", "requestId", "node"} <= set(relay_lines[0])
    assert secret_payload not in json_log.getvalue()


def test_text_format_carries_the_node_and_the_request_id() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(logging.DEBUG, "text", "api-1")
        buffer = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(buffer)
        logging.getLogger("camrelay.test").info("hello %s", "there")
        assert buffer.getvalue().rstrip().endswith("INFO camrelay.test api-1 [-] hello there")
        assert logging.getLogger("aiohttp.access").level == logging.INFO
        configure_logging(logging.INFO, "text")
        assert logging.getLogger("aiohttp.access").level == logging.WARNING
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


@pytest.mark.parametrize(("log_level", "logged"), [("DEBUG", True), ("INFO", False)])
async def test_access_lines_are_written_at_debug_only(
    make_live_server: MakeLiveServer,
    caplog: pytest.LogCaptureFixture,
    log_level: str,
    logged: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    server = await make_live_server(log_level=log_level)
    async with aiohttp.ClientSession() as http:
        # Two requests on one connection: the first one's line is written before the
        # second is answered, if it is written at all.
        for _ in range(2):
            async with http.get(f"{server.url}/healthz") as response:
                assert response.status == 200
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert bool(access) is logged
    if logged:
        assert '"GET /healthz HTTP/1.1" 200' in access[0].getMessage()


async def test_a_round_trip_line_is_written_after_the_answers_its_step_woke(
    json_log: io.StringIO,
) -> None:
    result = asyncio.get_running_loop().create_future()
    log_when_answered: list[str] = []

    async def caller() -> None:
        await result
        log_when_answered.append(json_log.getvalue())

    waiting = asyncio.create_task(caller())
    await asyncio.sleep(0)
    token = REQUEST_ID.set("req-9")
    try:  # as the session does: the result handed over, then the event reported
        result.set_result(None)
        EventLogger().result_received("cam-1", ResultOutcome.ACCEPTED)
    finally:
        REQUEST_ID.reset(token)
    await waiting
    assert log_when_answered == [""], "the caller woken by the step ran before its line"
    await asyncio.sleep(0)
    [line] = [orjson.loads(text) for text in json_log.getvalue().splitlines()]
    assert (line["message"], line["requestId"]) == ("result from camera cam-1: accepted", "req-9")


def test_without_an_event_loop_a_round_trip_line_is_written_at_once(json_log: io.StringIO) -> None:
    EventLogger().command_delivered("cam-1", "r-1", 2, redelivery=False)
    [line] = [orjson.loads(text) for text in json_log.getvalue().splitlines()]
    assert line["message"] == "command r-1 delivered to camera cam-1 for 2 caller(s)"
