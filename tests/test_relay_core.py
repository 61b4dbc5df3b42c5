"""The relay state machine, without HTTP: the contract's rules (README) per session."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from server.relay import (
    WIRE_MAX,
    CameraOffline,
    CameraTimeout,
    Command,
    PollSuperseded,
    QueueFull,
    RegistryFull,
    Relay,
    RelayConfig,
    RelayObserver,
    ResultOutcome,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from tests.conftest import assert_relay_idle
from tests.helpers import fetch, log_result, wait_until
from tests.sim.loop import run_virtual

CONFIG = RelayConfig(
    poll_hold_seconds=5.0,
    connect_timeout_seconds=1.0,
    response_timeout_seconds=1.5,
    max_waiting_per_camera=100,
)
LOGS = [{"timestamp": float(t), "description": f"event {t}"} for t in range(0, 100, 10)]


def entries(*timestamps: float) -> list[dict[str, Any]]:
    return [entry for entry in LOGS if entry["timestamp"] in timestamps]


@pytest.fixture
async def relay() -> Relay:
    return Relay(CONFIG)


async def settle() -> None:
    """Let every ready callback and task step run."""
    for _ in range(5):
        await asyncio.sleep(0)


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.ensure_future(coro)


async def connect(relay: Relay, camera_id: str = "default") -> asyncio.Task[Command | None]:
    """Start a poll and let it register (the camera is seen from then on)."""
    poll = spawn(relay.poll(camera_id))
    await settle()
    return poll


async def test_held_poll_answers_noop_after_the_hold() -> None:
    relay = Relay(RelayConfig(poll_hold_seconds=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await relay.poll("default") is None
    assert 0.28 <= loop.time() - started < 0.55  # the hold, not twice it
    assert_relay_idle(relay)


async def test_poll_gets_queued_work_with_both_bounds_finite(relay: Relay) -> None:
    first = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange(None, 50.0)))
    command = await first
    assert command is not None
    assert command.time_range == TimeRange(None, 50.0)
    assert (command.time_range.wire_start, command.time_range.wire_end) == (-WIRE_MAX, 50.0)
    assert len(command.request_id) == 32  # 128 random bits, hex
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == entries(0, 10, 20, 30, 40, 50)
    assert_relay_idle(relay)


async def test_unbounded_request_goes_out_as_extreme_finite_doubles(relay: Relay) -> None:
    poll = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange()))
    command = await poll
    assert command is not None
    assert command.time_range.wire_start == -1.7976931348623157e308
    assert command.time_range.wire_end == 1.7976931348623157e308
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == LOGS


async def test_work_waiting_is_answered_at_once_on_the_next_poll(relay: Relay) -> None:
    first = await connect(relay)
    caller_a = spawn(fetch(relay, "default", TimeRange(10.0, 20.0)))
    command_a = await first
    assert command_b_is_pending(relay)
    caller_b = spawn(fetch(relay, "default", TimeRange(30.0, 30.0)))
    await settle()
    assert command_a is not None
    relay.submit_result("default", command_a.request_id, log_result(LOGS))
    assert await caller_a == entries(10, 20)
    command_b = await relay.poll("default")  # caller_b's work is waiting: no hold
    assert command_b is not None
    assert command_b.time_range == TimeRange(30.0, 30.0)
    relay.submit_result("default", command_b.request_id, log_result(LOGS))
    assert await caller_b == entries(30)


def command_b_is_pending(relay: Relay) -> bool:
    status = relay.cameras()[0]
    return status.in_flight == 1 and not status.polling


async def test_newest_poll_wins_and_the_older_gets_superseded(relay: Relay) -> None:
    older = await connect(relay)
    newer = await connect(relay)
    with pytest.raises(PollSuperseded):
        await older
    assert relay.cameras()[0].polling
    caller = spawn(fetch(relay, "default", TimeRange()))
    command = await newer
    assert command is not None
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == LOGS


async def test_unanswered_command_is_redelivered_with_the_same_id(relay: Relay) -> None:
    first = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange(20.0, 40.0)))
    delivered = await first
    assert delivered is not None
    again = await relay.poll("default")
    assert again == delivered
    relay.submit_result("default", delivered.request_id, log_result(LOGS))
    assert await caller == entries(20, 30, 40)
    assert_relay_idle(relay)


async def test_poll_dropped_as_the_command_goes_out_gets_it_on_the_next_poll(
    relay: Relay,
) -> None:
    first = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange(0.0, 10.0)))
    await asyncio.sleep(0)  # the caller's step sets the command on the poll ...
    assert not first.done()
    first.cancel()  # ... and the connection drops before the poll's task writes it
    with pytest.raises(asyncio.CancelledError):
        await first
    command = await relay.poll("default")
    assert command is not None
    assert command.time_range == TimeRange(0.0, 10.0)
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == entries(0, 10)


async def test_hold_timer_firing_just_after_work_was_handed_out(relay: Relay) -> None:
    poll_task = await connect(relay)
    session = relay.session("default")
    assert session is not None
    held = session._poll
    assert held is not None
    caller = spawn(fetch(relay, "default", TimeRange(50.0, 60.0)))
    await settle()
    assert held.future.done()
    # The hold's deadline passes in the same instant: its callback runs after the
    # command was set. The command stands; the poll does not turn into a noop.
    session.end_hold(held)
    command = await poll_task
    assert command is not None
    assert command.time_range == TimeRange(50.0, 60.0)
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == entries(50, 60)


async def test_hold_expiring_first_leaves_the_work_for_the_next_poll() -> None:
    relay = Relay(RelayConfig(poll_hold_seconds=0.05, connect_timeout_seconds=1.0))
    assert await relay.poll("default") is None
    # Polling again right away, as a camera does: the caller who came between the
    # two polls is served by the second.
    caller = spawn(fetch(relay, "default", TimeRange(0.0, 0.0)))
    await settle()
    command = await relay.poll("default")
    assert command is not None
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await caller == entries(0)


async def test_result_without_request_id_answers_the_one_unanswered_command(
    relay: Relay,
) -> None:
    poll = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange(90.0, None)))
    command = await poll
    assert command is not None
    receipt = relay.submit_result("default", None, log_result(LOGS))
    assert (receipt.outcome, receipt.request_id) == (ResultOutcome.ACCEPTED, command.request_id)
    assert await caller == entries(90)
    with pytest.raises(UnknownRequest):
        relay.submit_result("default", None, log_result(LOGS))


async def test_duplicate_result_is_acknowledged_and_the_first_wins(relay: Relay) -> None:
    poll = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange()))
    command = await poll
    assert command is not None
    first = relay.submit_result("default", command.request_id, log_result(LOGS[:2]))
    second = relay.submit_result("default", command.request_id, log_result(LOGS))
    assert first.outcome is ResultOutcome.ACCEPTED
    assert second.outcome is ResultOutcome.DUPLICATE
    assert await caller == LOGS[:2]


async def test_result_for_unknown_id_or_other_camera_is_rejected(relay: Relay) -> None:
    poll_a = await connect(relay, "cam-a")
    await connect_and_forget(relay, "cam-b")
    caller = spawn(fetch(relay, "cam-a", TimeRange()))
    command = await poll_a
    assert command is not None
    with pytest.raises(UnknownRequest, match="issued to another camera"):
        relay.submit_result("cam-b", command.request_id, log_result([]))
    with pytest.raises(UnknownRequest):
        relay.submit_result("cam-a", "f" * 32, log_result([]))
    with pytest.raises(UnknownRequest):
        relay.submit_result("never-seen", command.request_id, log_result([]))
    # The wrong attempts changed nothing: the real result still gets through.
    relay.submit_result("cam-a", command.request_id, log_result(LOGS))
    assert await caller == LOGS


async def connect_and_forget(relay: Relay, camera_id: str) -> None:
    poll = await connect(relay, camera_id)
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)


async def test_burst_is_coalesced_into_one_command_with_exact_slices(relay: Relay) -> None:
    first_poll = await connect(relay)
    first = spawn(fetch(relay, "default", TimeRange(0.0, 0.0)))
    first_command = await first_poll
    assert first_command is not None
    # Callers that arrive while the first command is out share the next one.
    ranges = [
        TimeRange(10.0, 20.0),
        TimeRange(None, 10.0),
        TimeRange(70.0, None),
        TimeRange(35, 36),
    ]
    burst = [spawn(fetch(relay, "default", r)) for r in ranges]
    await settle()
    assert relay.cameras()[0].waiting == 4
    relay.submit_result("default", first_command.request_id, log_result(LOGS))
    assert await first == entries(0)
    second_command = await relay.poll("default")
    assert second_command is not None
    assert second_command.time_range == TimeRange(None, None)
    relay.submit_result("default", second_command.request_id, log_result(LOGS))
    assert await burst[0] == entries(10, 20)
    assert await burst[1] == entries(0, 10)
    assert await burst[2] == entries(70, 80, 90)
    assert await burst[3] == []
    assert_relay_idle(relay)


async def test_union_of_bounded_ranges_is_bounded(relay: Relay) -> None:
    first_poll = await connect(relay)
    first = spawn(fetch(relay, "default", TimeRange(0.0, 0.0)))
    first_command = await first_poll
    assert first_command is not None
    burst = [spawn(fetch(relay, "default", TimeRange(a, b))) for a, b in [(30, 40), (20, 25)]]
    await settle()
    relay.submit_result("default", first_command.request_id, log_result(LOGS))
    await first
    command = await relay.poll("default")
    assert command is not None
    assert command.time_range == TimeRange(20.0, 40.0)
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert [await task for task in burst] == [entries(30, 40), entries(20)]


async def test_caller_arriving_after_the_command_left_waits_for_the_next(relay: Relay) -> None:
    poll = await connect(relay)
    early = spawn(fetch(relay, "default", TimeRange(0.0, 100.0)))
    command = await poll
    late = spawn(fetch(relay, "default", TimeRange(0.0, 100.0)))
    await settle()
    assert command is not None
    relay.submit_result("default", command.request_id, log_result(LOGS[:3]))
    assert await early == LOGS[:3]
    assert not late.done()  # not served from the older snapshot
    second = await relay.poll("default")
    assert second is not None
    assert second.request_id != command.request_id
    relay.submit_result("default", second.request_id, log_result(LOGS))
    assert await late == LOGS


async def test_never_seen_camera_is_offline_at_once(relay: Relay) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CameraOffline, match="has not connected"):
        await fetch(relay, "ghost", TimeRange())
    assert loop.time() - started < 0.1
    assert relay.cameras() == []


async def test_camera_that_just_left_gets_503_after_the_connect_timeout() -> None:
    relay = Relay(RelayConfig(connect_timeout_seconds=0.2))
    await connect_and_forget(relay, "default")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CameraOffline, match="did not pick up"):
        await fetch(relay, "default", TimeRange())
    waited = loop.time() - started
    assert 0.18 <= waited < 0.35  # the connect timeout, not twice it
    assert_relay_idle(relay)


async def test_camera_long_gone_is_offline_at_once() -> None:
    relay = Relay(RelayConfig(connect_timeout_seconds=0.05))
    await connect_and_forget(relay, "default")
    await asyncio.sleep(0.06)  # let the last-seen time age past the connect timeout
    with pytest.raises(CameraOffline, match="is offline"):
        await fetch(relay, "default", TimeRange())
    assert relay.cameras()[0].online is False


async def test_no_result_in_time_is_a_timeout_and_the_late_result_is_rejected() -> None:
    relay = Relay(RelayConfig(response_timeout_seconds=0.1))
    poll = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange()))
    command = await poll
    assert command is not None
    with pytest.raises(CameraTimeout):
        await caller
    with pytest.raises(UnknownRequest):
        relay.submit_result("default", command.request_id, log_result(LOGS))
    assert_relay_idle(relay)


async def test_queued_caller_that_leaves_is_never_sent(relay: Relay) -> None:
    await connect_and_forget(relay, "default")
    caller = spawn(fetch(relay, "default", TimeRange(1.0, 2.0)))
    await settle()
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    assert relay.cameras()[0].waiting == 0
    poll = await connect(relay)
    assert not poll.done()  # nothing to send: the poll is held
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)


async def test_delivered_command_nobody_waits_for_is_forgotten(relay: Relay) -> None:
    poll = await connect(relay)
    caller = spawn(fetch(relay, "default", TimeRange()))
    command = await poll
    assert command is not None
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    assert_relay_idle(relay)
    next_poll = await connect(relay)
    assert not next_poll.done()  # not redelivered
    with pytest.raises(UnknownRequest):
        relay.submit_result("default", command.request_id, log_result(LOGS))
    next_poll.cancel()
    await asyncio.gather(next_poll, return_exceptions=True)


async def test_one_caller_leaving_does_not_cancel_the_others(relay: Relay) -> None:
    first_poll = await connect(relay)
    first = spawn(fetch(relay, "default", TimeRange(0.0, 0.0)))
    first_command = await first_poll
    assert first_command is not None
    stays = spawn(fetch(relay, "default", TimeRange(10.0, 10.0)))
    leaves = spawn(fetch(relay, "default", TimeRange(20.0, 20.0)))
    await settle()
    relay.submit_result("default", first_command.request_id, log_result(LOGS))
    await first
    command = await relay.poll("default")
    leaves.cancel()
    await asyncio.gather(leaves, return_exceptions=True)
    assert command is not None
    relay.submit_result("default", command.request_id, log_result(LOGS))
    assert await stays == entries(10)


async def test_full_queue_turns_callers_away() -> None:
    relay = Relay(RelayConfig(max_waiting_per_camera=2))
    await connect_and_forget(relay, "default")
    waiting = [spawn(fetch(relay, "default", TimeRange())) for _ in range(2)]
    await settle()
    with pytest.raises(QueueFull):
        await fetch(relay, "default", TimeRange())
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_close_answers_polls_noop_and_callers_shutting_down(relay: Relay) -> None:
    poll_a = await connect(relay, "cam-a")
    poll_b = await connect(relay, "cam-b")
    in_flight = spawn(fetch(relay, "cam-a", TimeRange()))
    await poll_a
    queued = spawn(fetch(relay, "cam-a", TimeRange()))
    await settle()
    relay.close()
    assert await poll_b is None
    for task in (in_flight, queued):
        with pytest.raises(ShuttingDown):
            await task
    with pytest.raises(ShuttingDown):
        await relay.poll("cam-a")
    with pytest.raises(ShuttingDown):
        await fetch(relay, "cam-a", TimeRange())
    assert_relay_idle(relay)


async def test_sweep_drops_idle_cameras_past_retention() -> None:
    relay = Relay(RelayConfig(connect_timeout_seconds=0.01, session_retention_seconds=0.02))
    await connect_and_forget(relay, "old")
    held = await connect(relay, "active")
    await asyncio.sleep(0.03)
    assert await relay.sweep() == 1
    assert [status.camera_id for status in relay.cameras()] == ["active"]
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)


async def answer_one_command(relay: Relay, camera_id: str) -> None:
    """The camera polls, takes a command and answers it: it has answered a command."""
    poll = await connect(relay, camera_id)
    caller = spawn(fetch(relay, camera_id, TimeRange()))
    command = await poll
    assert command is not None
    relay.submit_result(camera_id, command.request_id, log_result(LOGS))
    assert await caller == LOGS


async def sweep_until_forgotten(relay: Relay, camera_id: str) -> None:
    async with asyncio.timeout(3):
        while relay.session(camera_id) is not None:
            await relay.sweep()
            await asyncio.sleep(0.005)


async def test_cameras_that_never_answered_are_forgotten_sooner() -> None:
    config = RelayConfig(
        poll_hold_seconds=0.02, connect_timeout_seconds=0.03, session_retention_seconds=0.3
    )
    assert config.unanswered_retention_seconds == pytest.approx(0.05)
    relay = Relay(config)
    loop = asyncio.get_running_loop()
    await answer_one_command(relay, "answered")
    answered_at = loop.time()
    await connect_and_forget(relay, "silent")  # seen after "answered", never answered
    await sweep_until_forgotten(relay, "silent")
    assert relay.session("answered") is not None
    await sweep_until_forgotten(relay, "answered")
    assert loop.time() - answered_at > config.session_retention_seconds


async def test_a_new_id_past_max_cameras_is_refused_after_the_delay() -> None:
    relay = Relay(RelayConfig(max_cameras=2, refusal_delay_seconds=0.05))
    await connect_and_forget(relay, "a")
    await connect_and_forget(relay, "b")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RegistryFull, match=r"already tracks 2 cameras"):
        await relay.poll("c")
    assert loop.time() - started >= 0.05
    assert relay.session("c") is None
    known = await connect(relay, "a")  # a known id still polls
    assert relay.cameras()[0].polling
    relay.close()
    assert await known is None


class DisconnectRecorder(RelayObserver):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def camera_disconnected(self, camera_id: str) -> None:
        self.events.append("offline")


async def test_the_sweep_yields_to_the_loop_between_slices() -> None:
    """A large registry is swept a slice at a time, other work running in between."""
    events: list[str] = []
    config = RelayConfig(
        connect_timeout_seconds=0.01, session_retention_seconds=0.02, sweep_slice=100
    )
    relay = Relay(config, observer=DisconnectRecorder(events))
    polls = [spawn(relay.poll(f"cam-{n}")) for n in range(350)]
    await settle()
    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    last = relay.session("cam-349")
    assert last is not None
    await wait_until(lambda: last.seconds_since_seen() > 0.02)  # all offline, past retention

    async def tick() -> None:
        while True:
            events.append("tick")
            await asyncio.sleep(0)

    ticker = spawn(tick())
    await asyncio.sleep(0)
    assert await relay.sweep() == 350
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    assert relay.cameras() == []
    runs = [len(run) for run in "".join("x" if e == "offline" else " " for e in events).split()]
    assert runs == [100, 100, 100, 50]  # four slices, the loop turning between them


#: the broken-upload tests' timeouts: a hold, a connect timeout, a longer response one
UPLOADS_CONFIG = RelayConfig(
    poll_hold_seconds=20.0, connect_timeout_seconds=10.0, response_timeout_seconds=30.0
)


async def command_out(relay: Relay) -> tuple[Command, asyncio.Task[Any]]:
    """A held poll of "cam" carries a caller's command: the command and the caller."""
    poll = asyncio.ensure_future(relay.poll("cam"))
    await asyncio.sleep(0)
    caller = asyncio.ensure_future(fetch(relay, "cam", TimeRange()))
    command = await poll
    assert command is not None
    return command, caller


def test_a_broken_upload_keeps_the_result_due_from_the_first_delivery() -> None:
    """The camera began uploading, so it had the command: the 504 comes the response
    timeout after the first delivery, however the command is delivered again after the
    upload broke off, and the result that comes later is refused (virtual time)."""

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        relay = Relay(UPLOADS_CONFIG)
        command, caller = await command_out(relay)
        delivered = loop.time()
        await asyncio.sleep(5.0)
        async with relay.receive_result("cam", 1000) as upload:
            upload.lost(command.request_id)  # the camera hung up mid-body
        await asyncio.sleep(1.0)
        assert await relay.poll("cam") == command  # delivered again, same requestId
        with pytest.raises(CameraTimeout):
            await caller
        timed_out = loop.time()
        with pytest.raises(UnknownRequest):
            relay.submit_result("cam", command.request_id, log_result(LOGS))
        relay.close()
        return delivered, timed_out

    delivered, timed_out = run_virtual(scenario)
    assert timed_out == pytest.approx(delivered + 30.0, abs=0.01)


def test_a_broken_upload_keeps_its_result_due_when_the_work_moves_to_another_relay() -> None:
    """In cluster mode the camera's next poll after a broken upload may reach another
    node, which takes the work over: the result stays due from the first delivery there
    too (virtual time)."""

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        first, second = Relay(UPLOADS_CONFIG), Relay(UPLOADS_CONFIG)
        poll = asyncio.ensure_future(first.poll("cam"))
        await asyncio.sleep(0)
        first.enqueue("cam", TimeRange(), ref="caller-1")
        command = await poll
        assert command is not None
        delivered = loop.time()
        await asyncio.sleep(5.0)
        async with first.receive_result("cam", 1000) as upload:
            upload.lost(command.request_id)
        await asyncio.sleep(1.0)
        work = first.hand_over("cam", superseded=True)
        assert work is not None
        [caller] = second.take_over("cam", work)
        assert await second.poll("cam") == command  # delivered again at the new home
        with pytest.raises(CameraTimeout):
            await caller.future
        first.close()
        second.close()
        return delivered, loop.time()

    delivered, timed_out = run_virtual(scenario)
    assert timed_out == pytest.approx(delivered + 30.0, abs=0.01)


def test_a_poll_that_hangs_up_marks_the_camera_seen_when_it_ends() -> None:
    """A camera counts as seen when its poll ends however it ends, hung up included
    (virtual time)."""
    config = RelayConfig(poll_hold_seconds=30.0, connect_timeout_seconds=10.0)

    async def scenario() -> tuple[bool, float]:
        relay = Relay(config)
        poll = asyncio.ensure_future(relay.poll("cam"))
        await asyncio.sleep(25.0)
        poll.cancel()  # the camera hangs up 25 s into the hold
        await asyncio.sleep(0)
        await asyncio.sleep(5.0)  # 5 s after it ended: still within the connect timeout
        session = relay.session("cam")
        assert session is not None
        online = session.is_online()
        since = session.seconds_since_seen()
        relay.close()
        return online, since

    online, since = run_virtual(scenario)
    assert online
    assert since == pytest.approx(5.0, abs=0.01)


def test_a_broken_upload_near_the_due_time_ends_at_the_due_time() -> None:
    """Its callers wait for the camera's next poll, but not past when the result was
    due (virtual time)."""

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        relay = Relay(UPLOADS_CONFIG)
        command, caller = await command_out(relay)
        delivered = loop.time()
        await asyncio.sleep(28.0)
        async with relay.receive_result("cam", 1000) as upload:
            upload.lost(command.request_id)  # breaks off 2 s before the result is due
        with pytest.raises(CameraOffline):  # the camera never polls again
            await caller
        ended = loop.time()
        relay.close()
        return delivered, ended

    delivered, ended = run_virtual(scenario)
    assert ended == pytest.approx(delivered + 30.0, abs=0.01)  # not delivered + 28 + 10


def test_the_sweep_keeps_a_camera_whose_command_awaits_its_result() -> None:
    """A response timeout longer than the retention: the camera is unseen while it
    works, yet its session (and its callers) must stay (virtual time)."""
    config = RelayConfig(
        poll_hold_seconds=1.0, connect_timeout_seconds=1.0, response_timeout_seconds=120.0
    )

    async def scenario() -> int:
        relay = Relay(config)
        command, caller = await command_out(relay)
        await asyncio.sleep(60.0)  # the camera works on it, unseen past the retention (2 s)
        await relay.sweep()
        assert relay.has_session("cam")
        relay.submit_result("cam", command.request_id, log_result(LOGS))
        count = len(await caller)
        relay.close()
        return count

    assert run_virtual(scenario) == len(LOGS)


def test_callers_of_one_command_are_answered_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        relay = Relay(RelayConfig())
        first_poll = asyncio.ensure_future(relay.poll("cam"))
        await asyncio.sleep(0)
        blocker = asyncio.ensure_future(fetch(relay, "cam", TimeRange()))
        first = await first_poll  # the first caller's command is out
        assert first is not None
        order: list[int] = []
        callers = []
        for index in range(3):
            task = asyncio.ensure_future(fetch(relay, "cam", TimeRange()))
            task.add_done_callback(lambda _t, i=index: order.append(i))
            callers.append(task)
            await asyncio.sleep(0)
        relay.submit_result("cam", first.request_id, log_result(LOGS))
        await blocker
        second = await relay.poll("cam")
        assert second is not None
        relay.submit_result("cam", second.request_id, log_result(LOGS))
        for task in callers:
            await task
        relay.close()
        return order

    assert run_virtual(scenario) == [0, 1, 2]
