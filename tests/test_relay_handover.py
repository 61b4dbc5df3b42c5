"""Handing a camera's work from one relay to another (the core of cluster mode), no HTTP."""

from __future__ import annotations

import asyncio

import pytest

from server.relay import (
    CameraOffline,
    CameraTimeout,
    PollSuperseded,
    QueuedWork,
    Relay,
    RelayConfig,
    ResultOutcome,
    SessionWork,
    ShuttingDown,
    TimeRange,
)
from tests.helpers import log_result
from tests.sim.loop import run_virtual

CONFIG = RelayConfig(
    poll_hold_seconds=5.0, connect_timeout_seconds=1.0, response_timeout_seconds=1.5
)
LOGS = [{"timestamp": float(t), "description": f"event {t}"} for t in range(10)]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def held_poll(relay: Relay, camera_id: str = "cam") -> asyncio.Task[object]:
    poll = asyncio.ensure_future(relay.poll(camera_id))
    await settle()
    return poll


async def test_work_moves_with_its_request_ids_and_callers() -> None:
    old, new = Relay(CONFIG), Relay(CONFIG)
    first = await held_poll(old)
    session = old.session("cam")
    assert session is not None
    delivered = session.enqueue(TimeRange(1.0, 2.0), ref="b/1")
    command = await first
    queued = session.enqueue(TimeRange(5.0, 6.0), ref="c/2")
    second = await held_poll(old)  # redelivery of the unanswered command
    assert await second == command
    work = old.hand_over("cam", superseded=True)
    assert work is not None
    assert old.session("cam") is None
    # Nobody was answered: their owner carries them to the new relay.
    assert not delivered.future.done()
    assert not queued.future.done()
    assert [item.ref for item in work.queued] == ["c/2"]
    assert [c.ref for flight in work.in_flight for c in flight.callers] == ["b/1"]

    callers = new.take_over("cam", work)
    assert sorted(c.ref or "" for c in callers) == ["b/1", "c/2"]
    poll = await held_poll(new)
    assert await poll == command  # the same request id on the next poll
    receipt = new.submit_result("cam", command.request_id, log_result(LOGS[1:3]))
    assert (receipt.outcome, receipt.callers) == (ResultOutcome.ACCEPTED, 1)
    by_ref = {c.ref: c for c in callers}
    result = by_ref["b/1"].future.result()
    assert len(result) == 2
    result.release()
    # The queued caller's command goes to the next poll.
    next_command = await (await held_poll(new))
    assert next_command is not None
    assert next_command.time_range == TimeRange(5.0, 6.0)
    new.close()
    with pytest.raises(ShuttingDown):
        await by_ref["c/2"].future


async def test_a_superseded_poll_gets_409_and_a_stopping_one_noop() -> None:
    relay = Relay(CONFIG)
    poll = await held_poll(relay)
    relay.hand_over("cam", superseded=True)
    with pytest.raises(PollSuperseded):
        await poll
    poll = await held_poll(relay)
    relay.hand_over("cam", superseded=False)
    assert await poll is None


async def test_deadlines_move_as_seconds_left() -> None:
    relay = Relay(CONFIG)
    loop = asyncio.get_running_loop()
    # a caller queued elsewhere with 0.2 s left to be picked up times out 0.2 s after
    callers = relay.take_over("cam", SessionWork(queued=(QueuedWork("b/9", TimeRange(), 0.2),)))
    started = loop.time()
    with pytest.raises(CameraOffline):
        await callers[0].future
    assert 0.18 <= loop.time() - started < 0.5


def test_a_command_the_camera_took_keeps_its_result_deadline_at_the_new_home() -> None:
    """504 comes RESPONSE_TIMEOUT_SECONDS after the first delivery, wherever the
    command is delivered again."""

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        old, new = Relay(CONFIG), Relay(CONFIG)
        first = await held_poll(old)
        session = old.session("cam")
        assert session is not None
        session.enqueue(TimeRange(), ref="b/1")
        command = await first
        delivered_at = loop.time()
        await asyncio.sleep(1.0)  # the camera works on it, then polls another node
        work = old.hand_over("cam", superseded=True)
        assert work is not None
        (moved,) = new.take_over("cam", work)
        assert await (await held_poll(new)) == command
        with pytest.raises(CameraTimeout):
            await moved.future
        return loop.time() - delivered_at

    assert run_virtual(scenario) == pytest.approx(CONFIG.response_timeout_seconds, abs=0.01)


async def test_accepted_ids_move_so_a_repeat_is_a_duplicate() -> None:
    old, new = Relay(CONFIG), Relay(CONFIG)
    first = await held_poll(old)
    session = old.session("cam")
    assert session is not None
    caller = session.enqueue(TimeRange(), ref="a/1")
    command = await first
    assert command is not None
    session.submit_result(command.request_id, log_result(LOGS))
    await settle()
    caller.future.result().release()
    work = old.hand_over("cam", superseded=False)
    assert work is not None
    assert work.accepted == (command.request_id,)
    new.take_over("cam", work)
    assert new.submit_result("cam", command.request_id, log_result([])).outcome == (
        ResultOutcome.DUPLICATE
    )


async def test_a_caller_without_ref_cannot_follow_and_is_told() -> None:
    relay = Relay(CONFIG)
    first = await held_poll(relay)
    session = relay.session("cam")
    assert session is not None
    delivered = session.enqueue(TimeRange())
    await first
    queued = session.enqueue(TimeRange())
    work = relay.hand_over("cam", superseded=False)
    assert work is not None
    assert work.empty
    for caller in (delivered, queued):
        with pytest.raises(CameraOffline, match="moved to another server"):
            await caller.future
