"""A lean HTTP/1.1 client for bursts: N keep-alive connections, every request written at once.

aiohttp's client spends a few hundred microseconds of CPU per request, so
1,000 "concurrent" requests leave it over some 400 ms and the server sees a
trickle, not a burst. Here every request is written on its own pre-opened
connection in one tight loop (a few ms for 1,000), then the answers are read.
Only what the relay sends is understood: Content-Length or chunked bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bench.http import Reply

__all__ = ["Connection", "close_pool", "open_pool", "send_all"]

OPEN_AT_ONCE: Final = 200
HEADER_END: Final = b"\r\n\r\n"


@dataclass(slots=True)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


async def open_pool(host: str, port: int, count: int) -> list[Connection]:
    """``count`` connections, opened ``OPEN_AT_ONCE`` at a time so no SYN is dropped."""
    pool: list[Connection] = []
    while len(pool) < count:
        batch = min(OPEN_AT_ONCE, count - len(pool))
        opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(batch)))
        pool.extend(Connection(reader, writer) for reader, writer in opened)
    return pool


async def close_pool(pool: Sequence[Connection]) -> None:
    for connection in pool:
        connection.writer.close()
    await asyncio.gather(*(c.writer.wait_closed() for c in pool), return_exceptions=True)


def request_bytes(host: str, port: int, target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


async def read_reply(connection: Connection, started: float) -> Reply:
    head = await connection.reader.readuntil(HEADER_END)
    status_line, *header_lines = head[: -len(HEADER_END)].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(connection.reader)
    else:
        body = await connection.reader.readexactly(int(headers.get("content-length", "0")))
    return Reply(status, body, time.perf_counter() - started)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def send_all(
    pool: Sequence[Connection], host: str, port: int, targets: Sequence[str]
) -> tuple[float, list[Reply]]:
    """One request per connection (``targets[i]`` on ``pool[i]``), all written before any read.

    Returns the wall time from the first write to the last complete answer.
    """
    started = time.perf_counter()
    for connection, target in zip(pool, targets, strict=True):
        connection.writer.write(request_bytes(host, port, target))
    replies = await asyncio.gather(*(read_reply(c, started) for c in pool))
    return time.perf_counter() - started, list(replies)
