"""Abusive HTTP clients: no secret echoed or logged, no connection held past its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from yarl import URL

from server import create_app
from server.http.auth import camera_token
from server.observe.throttledlog import ThrottledLog
from server.serve.httpguard import (
    SUPPORTED_AIOHTTP,
    GuardedRequestHandler,
    GuardedServer,
    UnsupportedAiohttp,
    check_aiohttp_version,
)
from server.serve.runner import make_runner
from server.state import get_metrics
from tests.conftest import LiveServer, MakeLiveServer, settings_for
from tests.helpers import wait_until

API_TOKEN = "api-token-3f9c2a71d8e4b605"
CAMERA_SECRET = "camera-secret-9b1e"
CAMERA_TOKEN = camera_token(CAMERA_SECRET, "cam-1")


async def connect(server: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    target = URL(server.url)
    return await asyncio.open_connection(target.host, target.port)


async def exchange(server: LiveServer, request: bytes) -> bytes:
    reader, writer = await connect(server)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        await hang_up(writer)


async def hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from ``started`` until the server closes the connection (EOF)."""
    assert await asyncio.wait_for(reader.read(), 5) == b""
    return time.monotonic() - started


def sample(server: LiveServer, name: str) -> float | None:
    return get_metrics(server.app).registry.get_sample_value(name)


def rejection_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "HTTP parser rejected" in r.getMessage()]


@pytest.mark.parametrize(
    ("secret", "request_bytes"),
    [
        (API_TOKEN, b"GET /logs HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s\n\r\n"),
        (CAMERA_TOKEN, b"GET /poll_for_command HTTP/1.1\r\nAuthorization: Bearer %s\n\r\n"),
        (
            API_TOKEN,
            b"GET /logs HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer %s"
            + b"x" * 8200
            + b"\r\n\r\n",
        ),
        (API_TOKEN, b"GET /logs?t=%s" + b"y" * 8200 + b" HTTP/1.1\r\nHost: a\r\n\r\n"),
    ],
    ids=["api-token-bare-lf", "camera-token-bare-lf", "header-over-8190", "path-over-8190"],
)
async def test_a_rejected_request_echoes_and_logs_none_of_its_bytes(
    make_live_server: MakeLiveServer,
    caplog: pytest.LogCaptureFixture,
    secret: str,
    request_bytes: bytes,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_live_server(api_token=API_TOKEN, camera_secret=CAMERA_SECRET)
    response = await exchange(server, request_bytes % secret.encode())

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400"
    assert b"content-type: application/problem+json" in head.lower()
    problem = orjson.loads(body)
    assert problem["detail"].startswith("the request could not be parsed as HTTP/1.1: ")
    assert secret.encode() not in response
    assert b"Bearer" not in response
    assert b"/logs" not in response
    assert b"yyyy" not in response
    assert secret not in caplog.text
    assert all(r.exc_info is None for r in caplog.records), "a traceback was logged"
    lines = rejection_lines(caplog)
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert sample(server, "camrelay_http_requests_rejected_total") == 1


async def test_a_burst_of_rejected_requests_writes_few_lines(
    make_live_server: MakeLiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = await make_live_server()
    bad = b"GET / HTTP/1.1\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\n\r\n"
    responses = await asyncio.gather(*(exchange(server, bad) for _ in range(200)))
    assert all(r.split(b" ", 2)[1] == b"400" for r in responses)
    assert sample(server, "camrelay_http_requests_rejected_total") == 200
    assert 1 <= len(rejection_lines(caplog)) <= 3
    assert [r for r in caplog.records if r.name.startswith("aiohttp")] == []


async def test_half_requests_are_closed_at_the_header_deadline_and_healthz_answers_meanwhile(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(header_timeout_seconds=0.3)
    started = time.monotonic()
    stalled = [await connect(server) for _ in range(20)]
    for _, writer in stalled:
        writer.write(b"GET /logs?cameraId=a HTTP/1.1\r\nHost: a\r\n")  # no blank line: never ends
    healthz = await exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert healthz.startswith(b"HTTP/1.1 200 ")
    waits = await asyncio.gather(*(closed_after(reader, started) for reader, _ in stalled))
    assert all(0.3 <= wait < 3 for wait in waits), waits
    assert sample(server, "camrelay_http_header_timeouts_total") == 20
    for _, writer in stalled:
        await hang_up(writer)


async def test_each_connection_gets_its_whole_header_deadline_from_its_own_opening(
    make_live_server: MakeLiveServer,
) -> None:
    # One timer serves every connection's deadline: a connection opened after an earlier
    # one was closed, or while another's deadline runs, still gets its full deadline.
    server = await make_live_server(header_timeout_seconds=0.3)
    first_opened = time.monotonic()
    first_reader, first_writer = await connect(server)
    assert await closed_after(first_reader, first_opened) >= 0.3
    second_opened = time.monotonic()
    second_reader, second_writer = await connect(server)
    answered = await exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert answered.startswith(b"HTTP/1.1 200 ")
    third_opened = time.monotonic()
    third_reader, third_writer = await connect(server)
    assert await closed_after(second_reader, second_opened) >= 0.3
    assert await closed_after(third_reader, third_opened) >= 0.3
    assert sample(server, "camrelay_http_header_timeouts_total") == 3
    for writer in (first_writer, second_writer, third_writer):
        await hang_up(writer)


async def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(keepalive_timeout_seconds=0.3, header_timeout_seconds=0.3)
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    idle_for = await closed_after(reader, time.monotonic())
    assert 0.25 <= idle_for < 3
    assert sample(server, "camrelay_http_header_timeouts_total") == 0
    await hang_up(writer)


async def test_a_held_poll_outlives_the_keepalive_and_header_deadlines(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(
        poll_hold_seconds=1.0, keepalive_timeout_seconds=0.3, header_timeout_seconds=0.3
    )
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.get(f"{server.url}/poll_for_command?cameraId=held") as poll:
            assert poll.status == 200
            assert await poll.json() == {"command": "noop"}
        assert time.monotonic() - started >= 1.0


# What server/serve/httpguard.py relies on in aiohttp: these fail when an upgrade changes it.


def test_aiohttp_in_the_verified_range() -> None:
    check_aiohttp_version()
    low, high = SUPPORTED_AIOHTTP
    with pytest.raises(UnsupportedAiohttp, match="outside the range"):
        check_aiohttp_version(f"{high[0]}.{high[1]}.0")
    with pytest.raises(UnsupportedAiohttp):
        check_aiohttp_version(f"{low[0]}.{low[1] - 1}.9")
    check_aiohttp_version(f"{low[0]}.{low[1]}.0")


def test_aiohttp_handler_internals_are_what_the_guard_overrides() -> None:
    assert "__slots__" in vars(RequestHandler)
    assert vars(GuardedRequestHandler)["__slots__"] == ()
    assert "_request_count" in RequestHandler.__slots__
    assert "_manager" in RequestHandler.__slots__
    assert list(inspect.signature(RequestHandler.handle_error).parameters) == list(
        inspect.signature(GuardedRequestHandler.handle_error).parameters
    )
    for name in ("connection_made", "connection_lost", "__call__"):
        assert list(inspect.signature(getattr(web.Server, name)).parameters) == list(
            inspect.signature(getattr(GuardedServer, name)).parameters
        ), name


async def test_aiohttp_keepalive_timer_bounds_a_new_connections_first_head() -> None:
    # Why Settings refuses HEADER_TIMEOUT_SECONDS above KEEPALIVE_TIMEOUT_SECONDS.
    runner = web.AppRunner(web.Application(), keepalive_timeout=0.3)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            silent_for = await closed_after(reader, started)
        finally:
            await hang_up(writer)
        assert 0.25 <= silent_for < 3
    finally:
        await runner.cleanup()


async def test_a_guarded_server_builds_guarded_handlers() -> None:
    settings = settings_for()
    runner = make_runner(create_app(settings), settings)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = runner.server
        assert isinstance(server, GuardedServer)
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            await wait_until(lambda: bool(server.connections))
            [handler] = server.connections
            assert type(handler) is GuardedRequestHandler
            assert handler._manager is server
            assert handler._request_count == 0
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            assert handler._request_count == 1
        finally:
            await hang_up(writer)
    finally:
        await runner.cleanup()


def test_a_throttled_log_writes_one_line_a_second_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = ThrottledLog(logging.getLogger("camrelay.test"), interval=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="camrelay.test"):
        for _ in range(200):
            log.log("rejected (%s)", "LineTooLong")
            now[0] += 0.001
        now[0] += 1.0
        log.log("rejected (%s)", "BadHttpMessage")
    assert [r.getMessage() for r in caplog.records] == [
        "rejected (LineTooLong)",
        "rejected (BadHttpMessage) (and 199 more like this since the last such line)",
    ]
