"""``python -m bench.camerapage [--cameras N]``: what ``/cameras?limit=50`` costs the relay
at a fleet of N held polls (default 100,000), in process.

A ``Relay`` gets N cameras holding a poll; the script times, median of ``--repeat``:
the page (``cameras(limit=51)``, as the view asks one more to know if a page follows),
its totals (``stats()``, kept as sessions change), both together, and for comparison
the totals counted by walking every session (``walked_stats()``, what ``stats()`` did
before). Prints one JSON line (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import orjson

from server.relay import Relay, RelayConfig

__all__ = ["main", "measure"]


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 4)


async def measure(cameras: int, repeat: int) -> dict[str, float | int]:
    config = RelayConfig(poll_hold_seconds=600.0, max_cameras=cameras)
    relay = Relay(config)
    polls = [asyncio.ensure_future(relay.poll(f"cam-{i:06d}")) for i in range(cameras)]
    await asyncio.sleep(0)
    relay.cameras()  # the sorted id list is built once, after the fleet joined
    figures: dict[str, float | int] = {"cameras": cameras, "repeat": repeat}
    figures["page_ms"] = _median_ms(lambda: relay.cameras(limit=51), repeat)
    figures["totals_ms"] = _median_ms(relay.stats, repeat)
    figures["page_and_totals_ms"] = _median_ms(
        lambda: (relay.cameras(limit=51), relay.stats()), repeat
    )
    figures["walked_totals_ms"] = _median_ms(relay.walked_stats, max(3, repeat // 10))
    assert relay.stats() == relay.walked_stats()
    relay.close()
    await asyncio.gather(*polls, return_exceptions=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.camerapage", description=__doc__)
    parser.add_argument("--cameras", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.cameras, args.repeat))
    sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
