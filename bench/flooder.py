"""``python -m bench.flooder``: one short poll from each of N new camera ids.

What a client with no credentials can do when ``CAMERA_SECRET`` is off: every
poll names a camera id never seen before (``<prefix>-00000``...), on its own
connection, and hangs up after ``--wait`` seconds unless answered sooner.
Polls start at ``--rate`` a second, at most ``--concurrency`` in flight. Prints one JSON line at the
end: ``{"sent": N, "seconds": S, "answers": {"200": n, "503": n, "none": n},
"errors": {...}}`` ("none": hung up unanswered).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Final

import orjson
from yarl import URL

__all__ = ["flood", "main", "short_poll"]

HEADER_END: Final = b"\r\n\r\n"
UNANSWERED: Final = "none"


async def short_poll(host: str, port: int, camera_id: str, wait: float) -> str:
    """The status of a poll for ``camera_id``, or ``"none"`` if not answered within ``wait``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET /poll_for_command?cameraId={camera_id} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(HEADER_END), wait)
        except TimeoutError:
            return UNANSWERED
        return head.split(b" ", 2)[1].decode()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def flood(
    base_url: str, ids: int, concurrency: int, rate: float, wait: float, prefix: str
) -> dict[str, object]:
    url = URL(base_url)
    host, port = url.host, url.port
    if host is None or port is None:
        raise ValueError(f"--base-url needs a host and a port, got {base_url!r}")
    answers: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    numbers: Iterator[int] = iter(range(ids))
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def worker() -> None:
        for number in numbers:
            await asyncio.sleep(max(0.0, start + number / rate - loop.time()))
            camera_id = f"{prefix}-{number:05d}"
            try:
                answers[await short_poll(host, port, camera_id, wait)] += 1
            except OSError as error:
                errors[type(error).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "sent": ids,
        "seconds": round(time.perf_counter() - started, 3),
        "answers": dict(answers),
        "errors": dict(errors),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flooder", description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--ids", type=int, required=True, help="new camera ids, one poll each")
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="polls started a second")
    parser.add_argument("--wait", type=float, default=0.2, help="seconds before hanging up")
    parser.add_argument("--prefix", default="flood")
    args = parser.parse_args(argv)
    summary = asyncio.run(
        flood(args.base_url, args.ids, args.concurrency, args.rate, args.wait, args.prefix)
    )
    sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
