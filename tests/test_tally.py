"""The relay's fleet totals, kept as sessions change, equal a walk over every session
after random operations, handovers between relays included."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from server.relay import Relay, RelayConfig, TimeRange, UnknownRequest
from tests.helpers import log_result
from tests.sim.loop import run_virtual

CONFIG = RelayConfig(
    poll_hold_seconds=0.3,
    connect_timeout_seconds=0.05,
    response_timeout_seconds=0.2,
    max_waiting_per_camera=5,
)


def assert_totals(relay: Relay) -> None:
    kept, walked = relay.stats(), relay.walked_stats()
    assert (kept.cameras, kept.polls_held, kept.callers_waiting, kept.commands_in_flight) == (
        walked.cameras,
        walked.polls_held,
        walked.callers_waiting,
        walked.commands_in_flight,
    )
    edge = any(
        abs(session.seconds_since_seen() - CONFIG.connect_timeout_seconds) < 0.005
        for session in map(relay.session, relay.camera_ids())
        if session is not None
    )
    if not edge:
        assert kept.online == walked.online


@pytest.mark.parametrize("seed", range(8))
def test_totals_equal_a_walk_after_random_operations(seed: int) -> None:
    run_virtual(lambda: random_operations(seed))  # its waits cost no wall time


async def random_operations(seed: int) -> None:
    rng = random.Random(seed)
    relays = [Relay(CONFIG), Relay(CONFIG)]
    cameras = [f"cam-{i}" for i in range(4)]
    tasks: list[asyncio.Task[object]] = []
    for _ in range(120):
        relay = rng.choice(relays)
        camera = rng.choice(cameras)
        action = rng.random()
        if action < 0.25:
            tasks.append(asyncio.ensure_future(relay.poll(camera)))
        elif action < 0.5 and relay.has_session(camera):
            start = rng.choice([None, 1.0, 2.0])
            call = relay.fetch_logs(camera, TimeRange(start, None))
            tasks.append(asyncio.ensure_future(call))
        elif action < 0.6 and relay.has_session(camera):
            result = log_result([{"timestamp": 1.5}])
            with contextlib.suppress(UnknownRequest):  # nothing awaited: a 404
                relay.submit_result(camera, None, result)
            result.release()
        elif action < 0.7:
            running = [task for task in tasks if not task.done()]
            if running:
                rng.choice(running).cancel()
        elif action < 0.8 and relay.has_session(camera):
            other = relays[1 - relays.index(relay)]
            work = relay.hand_over(camera, superseded=rng.random() < 0.5)
            if work is not None:
                for caller in other.take_over(camera, work):
                    caller.future.add_done_callback(lambda _f: None)
        elif action < 0.9:
            await asyncio.sleep(rng.choice([0.0, 0.01, 0.06]))
        else:
            await relay.sweep()
        for _ in range(3):
            await asyncio.sleep(0)
        for each in relays:
            assert_totals(each)
    for relay in relays:
        relay.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for relay in relays:
        assert_totals(relay)
        stats = relay.stats()
        assert (stats.polls_held, stats.callers_waiting, stats.commands_in_flight) == (0, 0, 0)
