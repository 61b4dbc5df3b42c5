"""``python -m bench.camerapage [--cameras N]``: what ``/cameras?limit=50`` costs the relay
at a fleet of N held polls (default 100,000), in process, and what the whole list costs.

A ``Relay`` gets N cameras holding a poll, joining in random order as a real fleet's
do; the script times, median of ``--repeat``: the page (``cameras(limit=51)``, as the
view asks one more to know if a page follows), its totals (``stats()``, kept as
sessions change), both together, the totals counted by walking every session
(``walked_stats()``, what ``stats()`` did before), and the page right after a camera
joined and another left (a fleet that churns). Then the app serves a fleet of N on
loopback and a client reads ``GET /cameras`` (no parameters: every camera) ``--lists``
times while, in the same process, a probe notes the event loop's longest stall and
another calls ``/healthz`` in turn: the list's wall time, its body size, the longest
stall and the slowest ``/healthz``. Prints one JSON line (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import aiohttp
import orjson
from aiohttp import web

from server import Settings, create_app
from server.relay import Command, Relay, RelayConfig
from server.state import get_relay

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
    ids = [f"cam-{i:06d}" for i in range(cameras)]
    random.Random(cameras).shuffle(ids)
    polls = [asyncio.ensure_future(relay.poll(camera_id)) for camera_id in ids]
    await asyncio.sleep(0)
    figures: dict[str, float | int] = {"cameras": cameras, "repeat": repeat}
    figures["page_ms"] = _median_ms(lambda: relay.cameras(limit=51), repeat)
    figures["totals_ms"] = _median_ms(relay.stats, repeat)
    figures["page_and_totals_ms"] = _median_ms(
        lambda: (relay.cameras(limit=51), relay.stats()), repeat
    )
    figures["walked_totals_ms"] = _median_ms(relay.walked_stats, max(3, repeat // 10))
    assert relay.stats() == relay.walked_stats()
    figures["page_after_join_ms"] = await _page_after_churn(relay, polls, ids, repeat)
    relay.close()
    await asyncio.gather(*polls, return_exceptions=True)
    return figures


async def _page_after_churn(
    relay: Relay, polls: list[asyncio.Task[Command | None]], ids: list[str], repeat: int
) -> float:
    """The page right after a camera joined the fleet and another left it (median ms):
    a fleet that churns must not make each page cost O(fleet)."""
    times = []
    for index in range(repeat):
        polls.append(asyncio.ensure_future(relay.poll(f"new-{index:06d}")))
        await asyncio.sleep(0)  # its session exists once the poll is held
        relay.hand_over(ids[index], superseded=False)
        await asyncio.sleep(0)
        started = time.perf_counter()
        relay.cameras(limit=51)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 4)


async def measure_whole_list(cameras: int, lists: int) -> dict[str, float | int]:
    settings = Settings(host="127.0.0.1", port=0, poll_hold_seconds=50.0, max_cameras=cameras)
    runner = web.AppRunner(create_app(settings), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    relay = get_relay(runner.app)
    polls = [asyncio.ensure_future(relay.poll(f"cam-{i:06d}")) for i in range(cameras)]
    loop = asyncio.get_running_loop()
    stalls: list[float] = []
    healthz: list[float] = []
    listing = True

    async def probe_loop() -> None:
        while listing:
            started = loop.time()
            await asyncio.sleep(0.001)
            stalls.append(loop.time() - started - 0.001)

    async def probe_healthz(http: aiohttp.ClientSession) -> None:
        while listing:
            started = loop.time()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as reply:
                await reply.read()
            healthz.append(loop.time() - started)

    figures: dict[str, float | int] = {}
    try:
        await asyncio.sleep(0.5)  # every poll held
        gc.collect()  # what the fleet's arrival left to collect is not the list's cost
        async with aiohttp.ClientSession() as http, aiohttp.ClientSession() as other:
            times, size = [], 0
            probes = [
                asyncio.ensure_future(probe_loop()),
                asyncio.ensure_future(probe_healthz(other)),
            ]
            for _ in range(lists):
                started = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{port}/cameras") as reply:
                    size = len(await reply.read())
                times.append(time.perf_counter() - started)
            listing = False
            await asyncio.gather(*probes)
        figures["whole_list_ms"] = round(1000 * statistics.median(times), 1)
        figures["whole_list_bytes"] = size
        figures["longest_loop_stall_ms"] = round(1000 * max(stalls), 1)
        figures["slowest_healthz_ms"] = round(1000 * max(healthz), 1)
        figures["healthz_calls"] = len(healthz)
    finally:
        relay.close()
        await asyncio.gather(*polls, return_exceptions=True)
        await runner.cleanup()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.camerapage", description=__doc__)
    parser.add_argument("--cameras", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--lists", type=int, default=5)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.cameras, args.repeat))
    figures.update(asyncio.run(measure_whole_list(args.cameras, args.lists)))
    sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
