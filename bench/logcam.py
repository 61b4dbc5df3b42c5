"""``python -m bench.logcam``: a bench camera that serves a deterministic log.

It speaks the camera side of the protocol (poll, answer ``send_logs`` with the
command's ``requestId``) and prints one JSON line per event on stdout so the
harness can count camera round trips:
``{"event": "command", "requestId": ..., "entries": N, "bytes": B}``, and
``{"event": "late", "requestId": ...}`` when the result was answered 404 (its
callers had all hung up), and ``{"event": "error", "detail": ...}`` for
anything that went wrong.
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

import aiohttp
import orjson
from yarl import URL

from bench.logdata import DESCRIPTION_CHARS, Entry, make_log

__all__ = ["LogCamera", "main"]

POLL_TIMEOUT: Final = aiohttp.ClientTimeout(total=60)
RETRY_SECONDS: Final = 0.2
CONFLICT_PAUSE_SECONDS: Final = 1.0
JSON_HEADERS: Final = {"Content-Type": "application/json"}


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
        # Built once: yarl URLs with the query, so no request re-encodes it.
        self._poll_url = URL(f"{base_url}/poll_for_command").with_query(cameraId=camera_id)
        self._send_url = URL(f"{base_url}/send_logs").with_query(cameraId=camera_id)
        self._entries = entries
        self._timestamps = [float(entry["timestamp"]) for entry in entries]
        #: the body as the standard library writes it by default (``", "`` and ``": "``),
        #: as the exercise's original camera sends it; else compact (orjson)
        self._spaced = spaced

    def select(self, start: float, end: float) -> Sequence[Entry]:
        low = bisect.bisect_left(self._timestamps, start)
        high = bisect.bisect_right(self._timestamps, end)
        return self._entries[low:high]

    async def run(self, session: aiohttp.ClientSession) -> None:
        emit("started", entries=len(self._entries))
        while True:
            try:
                pause = await self._cycle(session)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                emit("error", detail=f"{type(error).__name__}: {error}")
                pause = RETRY_SECONDS
            if pause:
                await asyncio.sleep(pause)

    async def _cycle(self, session: aiohttp.ClientSession) -> float:
        async with session.get(self._poll_url, timeout=POLL_TIMEOUT) as poll:
            status, body = poll.status, await poll.read()
        if status == 409:
            emit("error", detail="poll superseded (409)")
            return CONFLICT_PAUSE_SECONDS
        if status != 200:
            emit("error", detail=f"poll answered {status}: {body[:200]!r}")
            return RETRY_SECONDS
        command = orjson.loads(body)
        if command.get("command") != "send_logs":
            return 0.0
        request_id = command["requestId"]
        logs = self.select(float(command["startTimestamp"]), float(command["endTimestamp"]))
        document = {"requestId": request_id, "logs": list(logs)}
        data = json.dumps(document).encode() if self._spaced else orjson.dumps(document)
        async with session.post(
            self._send_url,
            data=data,
            headers=JSON_HEADERS,
            timeout=POLL_TIMEOUT,
        ) as answer:
            status, body = answer.status, await answer.read()
        if status == 404:
            # Every caller of this command hung up before the result came: the
            # relay forgot it. Expected when callers abandon; the harness decides.
            emit("late", requestId=request_id)
            return 0.0
        if status != 200:
            emit("error", detail=f"send_logs answered {status}: {body[:200]!r}")
            return RETRY_SECONDS
        emit("command", requestId=request_id, entries=len(logs), bytes=len(data))
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
    async with aiohttp.ClientSession() as session:
        with contextlib.suppress(asyncio.CancelledError):
            await camera.run(session)
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
