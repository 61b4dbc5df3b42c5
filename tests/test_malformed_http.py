"""Requests the HTTP parser rejects still get problem+json, and nobody else stalls."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from yarl import URL

from tests.conftest import MakeLiveServer


async def raw_exchange(url: str, request: bytes) -> tuple[bytes, bytes]:
    """Send raw bytes; return the status line and headers block, and the body."""
    target = URL(url)
    assert target.host is not None
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /logs?cameraId=" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /logs HTTP/1.1\r\nHost: a\r\nX-Junk: " + b"y" * 10_000 + b"\r\n\r\n",
        b"GET /logs HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"GET /logs HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
    ],
)
async def test_parser_errors_are_problem_json(
    make_live_server: MakeLiveServer, request_bytes: bytes
) -> None:
    server = await make_live_server()
    head, body = await raw_exchange(server.url, request_bytes)
    assert head.split(b" ", 2)[1] == b"400"
    assert b"content-type: application/problem+json" in head.lower()
    problem = orjson.loads(body)
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert problem["detail"].startswith("the request could not be parsed as HTTP/1.1: ")
    # Nothing the client sent comes back (the parser's own message quotes it).
    for echoed in (b"xxxx", b"yyyy", b"no colon", b"TLS hello", b"-5", b"/logs", b"Host"):
        assert echoed not in body


async def test_a_client_that_never_finishes_its_request_stalls_no_one(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server()
    target = URL(server.url)
    stalled: list[asyncio.StreamWriter] = []
    try:
        for _ in range(20):  # headers never finished, or a body that never comes
            _, writer = await asyncio.open_connection(target.host, target.port)
            writer.write(b"POST /send_logs HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n")
            stalled.append(writer)
        head, body = await raw_exchange(
            server.url, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert head.startswith(b"HTTP/1.1 200 ")
        assert orjson.loads(body)["status"] == "ok"
    finally:
        for writer in stalled:
            writer.close()
            await writer.wait_closed()
