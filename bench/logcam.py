"""``python -m bench.logcam``: a bench camera that serves a deterministic log.

It speaks the camera side of the protocol (poll, answer ``send_logs`` with the
command's ``requestId``) and prints one JSON line per event on stdout so the
harness can count camera round trips:
``{"event": "command", "requestId": ..., "entries": N, "bytes": B}``, and
``{"event": "late", "requestId": ...}`` when the result was answered 404 (its
callers had all hung up), and ``{"event": "error", "detail": ...}`` for
anything that went wrong.

It is lean on purpose, so that the figures measure the server rather than the
camera: one keep-alive connection written to as raw HTTP/1.1 (request heads
built once, ``bench.rawhttp`` to read the answers) instead of aiohttp's client,
which spends a few hundred microseconds of CPU per request, and the log's
entries encoded once per range asked (the body is the command's ``requestId``
around those cached bytes). A real camera pays its own costs; the relay's
share of a ``/logs`` call is what the benchmarks are after.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import quote, urlsplit

import orjson

from bench.http import Reply
from bench.logdata import DESCRIPTION_CHARS, Entry, make_log
from bench.rawhttp import Connection, read_reply

__all__ = ["LogCamera", "main"]

#: a poll is held up to POLL_HOLD_SECONDS (30 s by default): wait longer than that
POLL_TIMEOUT_SECONDS: Final = 60.0
RETRY_SECONDS: Final = 0.2
CONFLICT_PAUSE_SECONDS: Final = 1.0
#: encoded slices of the log kept (a range is the command's, so few distinct ones recur)
ENCODED_KEPT: Final = 64

#: Event lines are flushed this often, not one write per command: a syscall and
#: a wake-up of the harness per command would sit on the measured path.
FLUSH_SECONDS: Final = 0.02


def emit(event: str, **fields: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"event": event, **fields}) + b"\n")


async def flush_forever() -> None:
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        sys.stdout.buffer.flush()


class LogCamera:
    """One camera id polling ``base_url`` and answering from ``entries`` (timestamp order)."""

    def __init__(
        self, base_url: str, camera_id: str, entries: list[Entry], *, spaced: bool = False
    ) -> None:
        url = urlsplit(base_url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        query = f"cameraId={quote(camera_id, safe='')}"
        host = f"Host: {self._host}:{self._port}\r\n"
        self._poll_head = f"GET /poll_for_command?{query} HTTP/1.1\r\n{host}\r\n".encode()
        self._send_head = (
            f"POST /send_logs?{query} HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
        ).encode()
        self._entries = entries
        self._timestamps = [float(entry["timestamp"]) for entry in entries]
        #: the body as the standard library writes it by default (``", "`` and ``": "``),
        #: as the exercise's original camera sends it; else compact (orjson)
        self._spaced = spaced
        self._encoded: dict[tuple[int, int], bytes] = {}
        self._connection: Connection | None = None

    def select(self, start: float, end: float) -> tuple[int, int]:
        low = bisect.bisect_left(self._timestamps, start)
        high = bisect.bisect_right(self._timestamps, end)
        return low, high

    def body(self, request_id: str, low: int, high: int) -> bytes:
        """``{"requestId": R, "logs": [...]}``, the entries encoded once per range."""
        logs = self._encoded.get((low, high))
        if logs is None:
            chosen = self._entries[low:high]
            logs = json.dumps(chosen).encode() if self._spaced else orjson.dumps(chosen)
            if len(self._encoded) < ENCODED_KEPT:
                self._encoded[(low, high)] = logs
        if self._spaced:
            return b'{"requestId": ' + orjson.dumps(request_id) + b', "logs": ' + logs + b"}"
        return b'{"requestId":' + orjson.dumps(request_id) + b',"logs":' + logs + b"}"

    async def run(self) -> None:
        emit("started", entries=len(self._entries))
        while True:
            try:
                pause = await self._cycle()
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                emit("error", detail=f"{type(error).__name__}: {error}")
                self._hang_up()
                pause = RETRY_SECONDS
            if pause:
                await asyncio.sleep(pause)

    async def _exchange(self, request: bytes) -> Reply:
        """Write ``request`` on the kept-alive connection (opened if need be); its answer."""
        if self._connection is None:
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self._connection = Connection(reader, writer)
        connection = self._connection
        connection.writer.write(request)
        async with asyncio.timeout(POLL_TIMEOUT_SECONDS):
            return await read_reply(connection, 0.0)

    def _hang_up(self) -> None:
        if self._connection is not None:
            self._connection.writer.close()
            self._connection = None

    async def _cycle(self) -> float:
        poll = await self._exchange(self._poll_head)
        if poll.status != 200:
            self._hang_up()  # an error answer may come with Connection: close
            if poll.status == 409:
                emit("error", detail="poll superseded (409)")
                return CONFLICT_PAUSE_SECONDS
            emit("error", detail=f"poll answered {poll.status}: {poll.body[:200]!r}")
            return RETRY_SECONDS
        command = orjson.loads(poll.body)
        if command.get("command") != "send_logs":
            return 0.0
        request_id = command["requestId"]
        low, high = self.select(float(command["startTimestamp"]), float(command["endTimestamp"]))
        data = self.body(request_id, low, high)
        head = self._send_head + b"Content-Length: %d\r\n\r\n" % len(data)
        answer = await self._exchange(head + data)
        if answer.status == 404:
            self._hang_up()  # refused before its body was read: the server closes
            # Every caller of this command hung up before the result came: the
            # relay forgot it. Expected when callers abandon; the harness decides.
            emit("late", requestId=request_id)
            return 0.0
        if answer.status != 200:
            emit("error", detail=f"send_logs answered {answer.status}: {answer.body[:200]!r}")
            self._hang_up()  # a refused upload may leave the connection closing
            return RETRY_SECONDS
        emit("command", requestId=request_id, entries=high - low, bytes=len(data))
        return 0.0


async def serve(
    base_url: str, camera_id: str, entries: list[Entry], *, spaced: bool = False
) -> None:
    camera = LogCamera(base_url, camera_id, entries, spaced=spaced)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    flusher = asyncio.create_task(flush_forever())
    with contextlib.suppress(asyncio.CancelledError):
        await camera.run()
    camera._hang_up()
    flusher.cancel()
    sys.stdout.buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.logcam", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--camera-id", default="bench")
    parser.add_argument("--entries", type=int, default=100, help="log entries to serve")
    parser.add_argument("--description-chars", type=int, default=DESCRIPTION_CHARS)
    parser.add_argument(
        "--spaced",
        action="store_true",
        help="write bodies as json.dumps does by default (', ' and ': '), not compact",
    )
    args = parser.parse_args(argv)
    entries = make_log(args.entries, args.description_chars)
    asyncio.run(serve(args.base_url, args.camera_id, entries, spaced=args.spaced))
    return 0


if __name__ == "__main__":
    sys.exit(main())
