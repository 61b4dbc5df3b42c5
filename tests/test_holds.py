"""The hold clock: every held poll's end on one loop timer."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from server.relay.config import RelayConfig
from server.relay.holds import SLACK, HoldClock
from server.relay.local import Relay
from server.relay.waiting import HeldPoll
from tests.helpers import wait_until
from tests.sim.loop import run_virtual


class Owner:
    def __init__(self, fail: bool = False) -> None:
        self.ended: list[tuple[HeldPoll, float]] = []
        self.fail = fail
        self.all_ended = asyncio.get_running_loop().create_future()
        self.expected = 0

    def end_hold(self, poll: HeldPoll) -> None:
        self.ended.append((poll, asyncio.get_running_loop().time()))
        if len(self.ended) == self.expected and not self.all_ended.done():
            self.all_ended.set_result(None)
        if self.fail:
            raise RuntimeError("owner failed")


def new_poll() -> HeldPoll:
    return HeldPoll(asyncio.get_running_loop().create_future())


async def test_holds_end_in_order_of_their_end_not_of_their_start() -> None:
    loop = asyncio.get_running_loop()
    clock = HoldClock(loop)
    owner = Owner()
    owner.expected = 3
    long, short, middle = new_poll(), new_poll(), new_poll()
    started = loop.time()
    clock.start(long, 0.06, owner)
    clock.start(short, 0.02, owner)
    clock.start(middle, 0.04, owner)
    assert len(clock) == 3
    await asyncio.wait_for(owner.all_ended, 5)
    assert [poll for poll, _ in owner.ended] == [short, middle, long]
    for (poll, at), hold in zip(owner.ended, (0.02, 0.04, 0.06), strict=True):
        assert at >= started + hold
        assert poll.hold is None
    assert len(clock) == 0
    assert clock.entries == 0


async def test_a_released_poll_is_never_ended() -> None:
    clock = HoldClock(asyncio.get_running_loop())
    owner = Owner()
    owner.expected = 1
    released, kept = new_poll(), new_poll()
    clock.start(released, 0.01, owner)
    clock.start(kept, 0.03, owner)
    clock.release(released)
    clock.release(released)  # twice: the second changes nothing
    assert len(clock) == 1
    await asyncio.wait_for(owner.all_ended, 5)
    assert [poll for poll, _ in owner.ended] == [kept]


async def test_released_polls_do_not_pile_up() -> None:
    # A camera that polls again and again (each poll superseding the last) must not
    # grow the heap by one entry per poll for a whole hold.
    clock = HoldClock(asyncio.get_running_loop())
    owner = Owner()
    held = new_poll()
    clock.start(held, 30.0, owner)
    for _ in range(10_000):
        poll = new_poll()
        clock.start(poll, 30.0, owner)
        clock.release(poll)
        assert clock.entries <= 2 * len(clock) + SLACK + 1
    assert len(clock) == 1
    clock.release(held)
    assert clock.entries == 0


async def test_one_failing_owner_does_not_stall_the_other_holds() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        clock = HoldClock(loop)
        failing, owner = Owner(fail=True), Owner()
        owner.expected = 1
        clock.start(new_poll(), 0.01, failing)
        clock.start(new_poll(), 0.01, owner)
        await asyncio.wait_for(owner.all_ended, 5)
    finally:
        loop.set_exception_handler(None)
    assert len(failing.ended) == 1
    [error] = errors
    assert isinstance(error["exception"], RuntimeError)


@pytest.mark.parametrize("hold", [0.0, -1.0])
async def test_a_hold_already_over_ends_on_the_next_loop_turn(hold: float) -> None:
    clock = HoldClock(asyncio.get_running_loop())
    owner = Owner()
    owner.expected = 1
    poll = new_poll()
    clock.start(poll, hold, owner)
    await asyncio.wait_for(owner.all_ended, 5)
    assert owner.ended[0][0] is poll


async def test_every_session_of_a_relay_shares_one_clock() -> None:
    relay = Relay(RelayConfig(poll_hold_seconds=30.0))
    polls = [asyncio.ensure_future(relay.poll(f"cam-{index}")) for index in range(3)]
    await wait_until(lambda: relay.stats().polls_held == 3)
    sessions = [relay.session(f"cam-{index}") for index in range(3)]
    clocks = {id(session._holds) for session in sessions if session is not None}
    assert len(clocks) == 1
    assert sessions[0] is not None
    clock = sessions[0]._holds
    assert len(clock) == 3
    relay.close()
    assert await asyncio.gather(*polls) == [None, None, None]
    assert len(clock) == 0
    assert clock.entries == 0


async def test_a_released_poll_is_not_kept_alive_by_the_clock() -> None:
    # A superseded poll's future holds its PollSuperseded, whose traceback holds the
    # whole request: the clock must not keep it for the rest of the hold.
    clock = HoldClock(asyncio.get_running_loop())
    owner = Owner()
    kept = new_poll()
    clock.start(kept, 30.0, owner)
    released = new_poll()
    clock.start(released, 30.0, owner)
    future = weakref.ref(released.future)
    clock.release(released)
    del released
    gc.collect()
    assert future() is None
    assert clock.entries == 2  # its emptied entry waits for its end
    clock.release(kept)


def test_holds_started_after_the_heap_emptied_end_at_their_own_ends() -> None:
    """The timer armed for a released hold is left to fire (virtual time): a hold that
    ends later must outlive it, and one that ends sooner must not wait for it."""

    async def scenario() -> tuple[list[tuple[HeldPoll, float]], HeldPoll, HeldPoll]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        clock = HoldClock(loop)
        owner = Owner()
        owner.expected = 2
        first = new_poll()
        clock.start(first, 5.0, owner)
        clock.release(first)
        assert clock.entries == 0
        later = new_poll()
        clock.start(later, 8.0, owner)
        await asyncio.sleep(1.0)
        sooner = new_poll()
        clock.start(sooner, 2.0, owner)
        await owner.all_ended
        assert len(clock) == 0
        return [(poll, at - started) for poll, at in owner.ended], later, sooner

    ended, later, sooner = run_virtual(scenario)
    assert [poll for poll, _ in ended] == [sooner, later]
    assert [at for _, at in ended] == [pytest.approx(3.0), pytest.approx(8.0)]
