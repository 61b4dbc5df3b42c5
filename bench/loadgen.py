"""``python -m bench.loadgen URL``: sustained GETs over N keep-alive connections.

The harness's load generator when ``wrk`` is not installed (``wrk`` is preferred:
it costs the shared CPU less per request). Prints one JSON line:
``{"requests": N, "non_2xx": N, "errors": N, "seconds": S, "p50_ms": X, "p99_ms": X}``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import aiohttp
import orjson
from yarl import URL

__all__ = ["load", "main"]


async def load(url: URL, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                begun = time.perf_counter()
                try:
                    async with http.get(url) as response:
                        await response.read()
                        if not 200 <= response.status < 400:
                            counts["non_2xx"] += 1
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1
                    continue
                latencies.append(time.perf_counter() - begun)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def at(share: float) -> float:
        return 1000 * latencies[min(int(share * len(latencies)), len(latencies) - 1)]

    return {
        "requests": len(latencies),
        **counts,
        "seconds": elapsed,
        "p50_ms": at(0.5) if latencies else 0.0,
        "p99_ms": at(0.99) if latencies else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    figures = asyncio.run(load(URL(args.url), args.connections, args.seconds))
    sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
