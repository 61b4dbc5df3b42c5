"""The deterministic simulation of a cluster (``tests.sim``): random seeds, replay,
determinism, and one focused scenario per fault of the cluster contract."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.sim.loop import Deadlock, run_virtual, wall_clock

SIM_SEEDS = int(os.environ.get("SIM_SEEDS", "4"))


# ---------------------------------------------------------------- the loop itself


def test_virtual_time_costs_no_wall_time() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(3600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(30)
        return loop.time() - started, wall_clock()

    started = time.monotonic()
    elapsed, wall = run_virtual(main)
    assert elapsed == pytest.approx(3605)
    assert wall == pytest.approx(1_700_000_000 + 3605)
    assert time.monotonic() - started < 1.0


def test_a_deadlock_is_an_error() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(Deadlock, match="deadlock"):
        run_virtual(main)


def test_timers_fire_in_order_and_tokens_are_seeded() -> None:
    import secrets

    async def main() -> tuple[list[int], str]:
        fired: list[int] = []
        loop = asyncio.get_running_loop()
        for delay in (3, 1, 2):
            loop.call_later(delay, fired.append, delay)
        await asyncio.sleep(5)
        return fired, secrets.token_hex(8)

    first = run_virtual(main, seed=7)
    assert first[0] == [1, 2, 3]
    assert run_virtual(main, seed=7) == first
    assert run_virtual(main, seed=8)[1] != first[1]
