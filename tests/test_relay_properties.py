"""Hypothesis property tests of the relay core (no HTTP).

Each example is a random list of operations on a ``Relay`` with tiny timeouts,
played in a fresh event loop: camera polls (and hang-ups), ``/logs`` callers with
random inclusive ranges (and disconnects), results with the right id, no id, a
wrong id, another camera's id or a repeat, sweeps, and waits that let the timers
fire. Afterwards every task must have ended, the relay must be idle, and:

- every caller got exactly its inclusive slice of the one accepted result that
  served it, from a command first handed out after the caller arrived, whose range
  covers the caller's; or ``CameraOffline``/``CameraTimeout`` (``QueueFull`` only
  when the queue was full; ``ShuttingDown`` only after ``close``); or it left;
- callers are served in arrival order, no caller waits past its timeouts;
- a result with an id is accepted at most once, repeats are duplicates, foreign
  or unknown ids are 404s; a command keeps its id and range when redelivered;
- at every step: at most one command in flight per camera, and a held poll means
  nothing is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from server.relay import (
    CameraOffline,
    CameraSession,
    CameraTimeout,
    Command,
    PollSuperseded,
    QueueFull,
    Relay,
    RelayConfig,
    RelayObserver,
    ResultOutcome,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from tests.conftest import assert_relay_idle
from tests.helpers import fetch, log_result
from tests.sim.loop import run_virtual

CONFIG = RelayConfig(
    poll_hold_seconds=0.03,
    connect_timeout_seconds=0.1,
    response_timeout_seconds=0.05,
    max_waiting_per_camera=5,
    session_retention_seconds=0.02,
)
CAMERAS = ("a", "b")
#: Slack over a caller's own timeouts for a loaded machine: the session's timers end
#: every wait, well before the relay's safety ceiling (connect + response + 1 s,
#: the contract's bound), which ends every wait in any case.
WAIT_SLACK = 0.5
#: The camera's whole log, in its own (unsorted) order: an entry at every grid point
#: 0..10, so a served caller's slice is never empty, plus repeats and half-points.
GRID = range(11)
CAMERA_LOG: list[dict[str, Any]] = [
    {"timestamp": t, "description": f"event {i}"}
    for i, t in enumerate([5, 0, 10, 2.5, 3, 1, 7, 7, 9, 4, 6, 8, 2, 9.5, 0])
]


# ------------------------------------------------------------------ operations


@dataclass(frozen=True)
class Poll:
    camera: str
    #: the camera's older poll, which this one supersedes, hangs up in the same loop turn
    drop_older: bool = False


@dataclass(frozen=True)
class DropPoll:
    index: int


@dataclass(frozen=True)
class Call:
    camera: str
    start: float | None
    end: float | None


@dataclass(frozen=True)
class Burst:
    """Several callers at once (like curl_parallel.sh), in this arrival order."""

    calls: tuple[Call, ...]
    #: the camera's held poll hangs up just as the first caller's command reaches it,
    #: before its answer is written: a lost delivery
    hang_up: bool = False


@dataclass(frozen=True)
class Disconnect:
    index: int


@dataclass(frozen=True)
class Answer:
    camera: str
    #: "own": the id of a command this camera got; "none": no id; "unknown": an id never
    #: issued; "foreign": an id issued to the other camera; "repeat": an accepted id again
    kind: str
    index: int
    #: "command": the entries in the command's range; "all": the whole log; "empty"
    logs: str
    #: then poll again at once, as a real camera does
    then_poll: bool = True


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Sweep:
    pass


def ranges() -> st.SearchStrategy[tuple[float | None, float | None]]:
    bound = st.none() | st.sampled_from(GRID) | st.sampled_from([2.5, 9.5, -1, 11])
    return st.tuples(bound, bound).map(
        lambda pair: (
            pair
            if None in pair or pair[0] <= pair[1]  # type: ignore[operator]
            else (pair[1], pair[0])
        )
    )


#: Camera "a" gets most of the traffic, so that polls, callers and results line up.
busy_camera = st.sampled_from(["a", "a", "a", "b"])
#: -1 (the latest command the camera got, what a real camera answers) most of the time.
command_index = st.sampled_from([-1, -1, -1, 0, 1, 2])
polls = st.builds(Poll, busy_camera, st.sampled_from([False, False, False, False, True]))
calls = st.builds(
    lambda camera, pairs, hang_up: Burst(
        tuple(Call(camera, start, end) for start, end in pairs), hang_up
    ),
    busy_camera,
    st.lists(ranges(), min_size=1, max_size=4),
    st.sampled_from([False, False, False, False, True]),
)
answers = st.builds(
    Answer,
    busy_camera,
    st.sampled_from(["own", "own", "own", "own", "none", "unknown", "foreign", "repeat"]),
    command_index,
    st.sampled_from(["command", "command", "all", "empty"]),
    st.sampled_from([True, True, True, False]),
)
#: Weighted by repetition (``one_of`` would favour its first branches).
OPERATIONS = st.sampled_from(
    [polls] * 3
    + [calls] * 4
    + [answers] * 5
    + [
        st.builds(DropPoll, st.integers(0, 20)),
        st.builds(Disconnect, st.integers(0, 20)),
        st.builds(Wait, st.sampled_from([0.0, 0.005, 0.01, 0.02, 0.04, 0.06, 0.12])),
        st.builds(Sweep),
    ]
).flatmap(lambda strategy: strategy)


# -------------------------------------------------------------------- the model


class Observer(RelayObserver):
    """Records when each command was first handed out (on a shared event clock) and
    which commands are unanswered, from the relay's own events."""

    def __init__(self, clock: itertools.count[int]) -> None:
        self._clock = clock
        self.delivered_at: dict[str, int] = {}
        self.delivered_to: dict[str, str] = {}
        self.deliveries: list[str] = []
        #: camera -> ids delivered and not yet accepted, timed out or abandoned
        self.unanswered: dict[str, set[str]] = {camera: set() for camera in CAMERAS}

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        self.deliveries.append(request_id)
        if redelivery:
            assert self.delivered_to.get(request_id) == camera_id, "redelivered an unknown command"
            assert request_id in self.unanswered[camera_id], "redelivered a finished command"
            note("command redelivered")
        else:
            assert request_id not in self.delivered_at, "a new command reused an id"
            assert callers >= 1
            note(f"command for {min(callers, 3)}{'+' if callers >= 3 else ''} callers")
            self.delivered_at[request_id] = next(self._clock)
            self.delivered_to[request_id] = camera_id
            self.unanswered[camera_id].add(request_id)

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        self.unanswered[camera_id].remove(request_id)
        note("command timed out")

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        self.unanswered[camera_id].remove(request_id)
        note("command abandoned")

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        note(f"result {outcome.value}")


@dataclass
class CallerRecord:
    camera: str
    time_range: TimeRange
    task: asyncio.Task[list[dict[str, Any]]]
    arrived_at: int = 0
    started: float = 0.0
    ended: float | None = None
    waiting_before: int = 0
    online_before: bool = False
    left: bool = False


@dataclass
class PostedResult:
    tag: int
    camera: str
    session: CameraSession | None
    logs: list[dict[str, Any]]
    receipt_id: str | None = None
    outcome: ResultOutcome | None = None


@dataclass
class World:
    relay: Relay
    observer: Observer
    clock: itertools.count[int]
    polls: list[tuple[str, asyncio.Task[Command | None]]] = field(default_factory=list)
    #: poll tasks cancelled while still running: their requests ended
    hung_up: set[asyncio.Task[Command | None]] = field(default_factory=set)
    callers: list[CallerRecord] = field(default_factory=list)
    commands: dict[str, list[Command]] = field(default_factory=dict)
    ranges_by_id: dict[str, TimeRange] = field(default_factory=dict)
    results: list[PostedResult] = field(default_factory=list)
    accepted: dict[str, PostedResult] = field(default_factory=dict)
    tags: itertools.count[int] = field(default_factory=itertools.count)
    lost_deliveries: int = 0


def note(value: str) -> None:
    """``hypothesis.event`` (see --hypothesis-show-statistics); a no-op outside @given."""
    with contextlib.suppress(InvalidArgument):
        event(value)


async def settle() -> None:
    """Lets every callback that is ready run (cancelled tasks clean up)."""
    for _ in range(5):
        await asyncio.sleep(0)


def check_totals(relay: Relay) -> None:
    """The totals kept as sessions change equal a walk over every session."""
    kept, walked = relay.stats(), relay.walked_stats()
    timeout = CONFIG.connect_timeout_seconds
    near_edge = [
        camera_id
        for camera_id in relay.camera_ids()
        if abs(relay.session(camera_id).seconds_since_seen() - timeout) < 0.005  # type: ignore[union-attr]
    ]
    if near_edge:  # read a moment apart, a camera at the edge may count either way
        kept, walked = replace(kept, online=0), replace(walked, online=0)
    assert kept == walked


def check_invariants(world: World) -> None:
    check_totals(world.relay)
    for status in world.relay.cameras():
        assert status.in_flight <= 1, status
        if not world.relay.closed:
            assert status.in_flight == len(world.observer.unanswered[status.camera_id]), status
        if status.polling:
            assert status.waiting == 0, status
            assert status.in_flight == 0, status
        assert status.waiting <= CONFIG.max_waiting_per_camera


def on_poll_done(world: World, camera: str, task: asyncio.Task[Command | None]) -> None:
    if task.cancelled():
        note("poll dropped")
        return
    if task.exception() is not None:
        note(f"poll {type(task.exception()).__name__}")
        return
    command = task.result()
    if command is None:
        note("poll noop")
        return
    known = world.ranges_by_id.setdefault(command.request_id, command.time_range)
    assert known == command.time_range, "a redelivered command changed its range"
    assert 0 < len(command.request_id) <= 64
    world.commands.setdefault(camera, []).append(command)


def hang_up(world: World, task: asyncio.Task[Command | None]) -> None:
    if not task.done() and task.cancel():
        world.hung_up.add(task)


def start_poll(world: World, camera: str) -> asyncio.Task[Command | None]:
    task = asyncio.create_task(world.relay.poll(camera))
    task.add_done_callback(lambda done: on_poll_done(world, camera, done))
    world.polls.append((camera, task))
    return task


async def start_call(world: World, call: Call) -> None:
    session = world.relay.session(call.camera)
    status = session.status() if session else None
    record = CallerRecord(
        call.camera,
        TimeRange(call.start, call.end),
        task=None,  # type: ignore[arg-type]
        waiting_before=status.waiting if status else 0,
        online_before=bool(status and status.online),
    )
    record.task = asyncio.create_task(run_call(world, record))
    world.callers.append(record)
    await asyncio.sleep(0)  # the caller enqueues now, before anything else happens


async def run_call(world: World, record: CallerRecord) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    record.started = loop.time()
    record.arrived_at = next(world.clock)  # enqueue happens in this same step, below
    try:
        return await fetch(world.relay, record.camera, record.time_range)
    finally:
        record.ended = loop.time()


def answer(world: World, op: Answer) -> None:
    own = world.commands.get(op.camera, [])
    other = [c for cam, cs in world.commands.items() if cam != op.camera for c in cs]
    request_id: str | None
    command: Command | None = own[op.index % len(own)] if own else None
    if op.kind == "own":
        request_id = command.request_id if command else "f" * 32
    elif op.kind == "none":
        request_id = None
        command = own[-1] if own else None
    elif op.kind == "unknown":
        request_id = "0" * 32
    elif op.kind == "foreign":
        request_id = other[op.index % len(other)].request_id if other else "e" * 32
    else:
        mine = [r for r in world.accepted.values() if r.camera == op.camera]
        request_id = mine[op.index % len(mine)].receipt_id if mine else None
    if op.logs == "empty":
        entries: list[dict[str, Any]] = []
    elif op.logs == "command" and command is not None:
        entries = inclusive_slice(command.time_range, CAMERA_LOG)
    else:
        entries = list(CAMERA_LOG)
    tag = next(world.tags)
    logs = [{**entry, "result": tag} for entry in entries]
    posted = PostedResult(tag, op.camera, world.relay.session(op.camera), logs)
    world.results.append(posted)
    unanswered = set(world.observer.unanswered[op.camera])
    try:
        receipt = world.relay.submit_result(op.camera, request_id, log_result(logs))
    except UnknownRequest:
        assert op.kind != "none" or not unanswered, "an id-less result found no command"
        assert request_id not in unanswered, "a result for an unanswered command was refused"
        if request_id in world.accepted:
            assert world.accepted[request_id].session is not posted.session, (
                "a repeat of an accepted result was not recognised"
            )
        return
    assert op.kind not in ("unknown", "foreign"), f"accepted a result for an id of kind {op.kind}"
    posted.receipt_id = receipt.request_id
    posted.outcome = receipt.outcome
    if request_id is not None:
        assert receipt.request_id == request_id
    if receipt.outcome is ResultOutcome.ACCEPTED:
        assert receipt.request_id in unanswered, "accepted a result for no unanswered command"
        assert receipt.request_id not in world.accepted, "the same id was accepted twice"
        world.observer.unanswered[op.camera].discard(receipt.request_id)
        world.accepted[receipt.request_id] = posted
    else:
        assert receipt.outcome is ResultOutcome.DUPLICATE
        assert request_id in world.accepted
        assert world.accepted[request_id].session is posted.session


async def play(operations: list[Any], close_at_end: bool) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    clock = itertools.count()
    observer = Observer(clock)
    world = World(Relay(CONFIG, observer=observer), observer, clock)

    for op in operations:
        if isinstance(op, Poll):
            older = [task for camera, task in world.polls if camera == op.camera]
            start_poll(world, op.camera)
            if op.drop_older:
                await asyncio.sleep(0)  # the new poll opens and supersedes the held one ...
                for task in older:  # ... whose client hangs up before it resumes
                    hang_up(world, task)
        elif isinstance(op, DropPoll):
            held = [task for _, task in world.polls if not task.done()]
            if held:
                hang_up(world, held[op.index % len(held)])
        elif isinstance(op, Call):
            await start_call(world, op)
        elif isinstance(op, Burst):
            for index, call in enumerate(op.calls):
                delivered = len(world.observer.deliveries)
                await start_call(world, call)
                if op.hang_up and index == 0 and len(world.observer.deliveries) > delivered:
                    # The poll's task has its command but has not resumed: its request ends.
                    for camera, task in world.polls:
                        if camera == call.camera:
                            hang_up(world, task)
                    world.lost_deliveries += 1
                    note("delivery lost")
        elif isinstance(op, Disconnect):
            waiting = [record for record in world.callers if not record.task.done()]
            if waiting:
                record = waiting[op.index % len(waiting)]
                record.left = True
                record.task.cancel()
        elif isinstance(op, Answer):
            answer(world, op)
            if op.then_poll:
                start_poll(world, op.camera)
        elif isinstance(op, Wait):
            await asyncio.sleep(op.seconds)
        elif isinstance(op, Sweep):
            await world.relay.sweep()
        await settle()
        check_invariants(world)

    if close_at_end:
        world.relay.close()
    tasks = [task for _, task in world.polls] + [record.task for record in world.callers]
    if tasks:
        longest = max(CONFIG.poll_hold_seconds, CONFIG.longest_logs_wait) + 1
        _done, pending = await asyncio.wait(tasks, timeout=longest)
        assert not pending, f"{len(pending)} tasks never ended"
    await settle()

    assert_relay_idle(world.relay)
    check_totals(world.relay)
    await world.relay.sweep()
    check_totals(world.relay)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    for _camera, task in world.polls:
        assert task.cancelled() == (task in world.hung_up), "a poll that hung up went on"
        if not task.cancelled():
            error = task.exception()
            assert error is None or isinstance(error, PollSuperseded | ShuttingDown), error
            if isinstance(error, ShuttingDown):
                assert close_at_end
    check_callers(world, close_at_end)
    gc.collect()
    assert errors == [], errors


def check_callers(world: World, close_at_end: bool) -> None:
    by_tag = {result.tag: result for result in world.results}
    served: list[tuple[str, int, int]] = []  # (camera, arrival, first delivery of its command)
    for record in world.callers:
        assert record.ended is not None
        waited = record.ended - record.started
        assert waited <= CONFIG.longest_logs_wait + WAIT_SLACK, "a caller waited past the bound"
        # Pick-up (or, after a lost delivery, which can only happen at pick-up, the
        # wait for the camera to poll again), then the result: each ended by a session timer.
        timeouts = CONFIG.connect_timeout_seconds + CONFIG.response_timeout_seconds
        assert waited <= timeouts + WAIT_SLACK, "a caller waited past its timeouts"
        assert record.task.cancelled() == record.left, "a caller that left went on, or vice versa"
        if record.left:
            note("caller left")
            continue
        error = record.task.exception()
        note(f"caller {type(error).__name__ if error else 'served'}")
        if isinstance(error, CameraOffline | CameraTimeout):
            continue
        if isinstance(error, QueueFull):
            assert record.waiting_before >= CONFIG.max_waiting_per_camera
            continue
        if isinstance(error, ShuttingDown):
            assert close_at_end
            continue
        assert error is None, f"unexpected {error!r}"
        assert not (
            record.online_before and record.waiting_before >= CONFIG.max_waiting_per_camera
        ), "a full queue took another caller"
        logs = record.task.result()
        if not logs:
            # Only a result with nothing in this caller's range can leave it empty.
            assert any(
                result.outcome is ResultOutcome.ACCEPTED
                and result.camera == record.camera
                and not inclusive_slice(record.time_range, result.logs)
                for result in world.results
            ), "a caller got no logs though every accepted result had some for it"
            continue
        note("caller got logs")
        tags = {entry["result"] for entry in logs}
        assert len(tags) == 1, f"a caller got entries from several results: {tags}"
        result = by_tag[tags.pop()]
        assert result.outcome is ResultOutcome.ACCEPTED, "served from a result not accepted"
        assert result.camera == record.camera, "served another camera's logs"
        assert logs == inclusive_slice(record.time_range, result.logs), "not its inclusive slice"
        assert result.receipt_id is not None
        # Unknown only for a command the camera never saw (its delivery was lost) and
        # answered with an id-less result.
        command_range = world.ranges_by_id.get(result.receipt_id)
        if command_range is not None:
            assert covers(command_range, record.time_range), "the command's range misses it"
        else:
            assert world.lost_deliveries
            seen = world.commands.get(record.camera, [])
            assert result.receipt_id not in {command.request_id for command in seen}
        delivered_at = world.observer.delivered_at[result.receipt_id]
        assert delivered_at > record.arrived_at, "served by a command handed out before it came"
        served.append((record.camera, record.arrived_at, delivered_at))
    for camera, arrived, delivered in served:
        for other_camera, other_arrived, other_delivered in served:
            if other_camera != camera:
                continue
            if other_arrived < arrived:
                assert other_delivered <= delivered, "callers were not served in arrival order"
            if other_arrived < delivered:
                # Queued when this command went out, so in it, unless already in an earlier one.
                assert other_delivered <= delivered, "a command left a queued caller behind"


def low(time_range: TimeRange) -> float:
    return -math.inf if time_range.start is None else time_range.start


def high(time_range: TimeRange) -> float:
    return math.inf if time_range.end is None else time_range.end


def inclusive_slice(time_range: TimeRange, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The test's own ``start <= timestamp <= end``, in the camera's order."""
    return [e for e in entries if low(time_range) <= e["timestamp"] <= high(time_range)]


def covers(outer: TimeRange, inner: TimeRange) -> bool:
    return low(outer) <= low(inner) and high(inner) <= high(outer)


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """Garbage collections during the many examples leave alone what earlier tests of the
    session left on the heap (scanning it made this test several times slower)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@settings(
    # Each example runs in virtual time (tests/sim/loop.py): its waits cost no wall time.
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    operations=st.lists(OPERATIONS, min_size=8, max_size=40),
    close_at_end=st.sampled_from([False, False, False, True]),
)
def test_relay_properties(operations: list[Any], close_at_end: bool) -> None:
    run_virtual(lambda: play(operations, close_at_end))


@pytest.mark.parametrize("close_at_end", [False, True])
def test_a_busy_fixed_scenario(close_at_end: bool) -> None:
    """A hand-written interleaving through every branch, as a fixed example."""
    operations = [
        Call("a", None, None),  # offline: never polled
        Poll("a"),
        Call("a", 1, 3),  # handed to the held poll at once
        Call("a", 2, 9),
        Call("a", None, 4),  # both wait for the next command
        Poll("a"),  # redelivery of the first command
        Answer("a", "own", 0, "command"),  # serves the first caller
        Answer("a", "repeat", 0, "all"),  # duplicate
        Poll("a"),  # the coalesced second command
        Answer("a", "foreign", 0, "all"),
        Answer("a", "unknown", 0, "all"),
        Answer("a", "none", 0, "command"),  # answers the one unanswered command
        Poll("b"),
        Call("b", 0, 0),
        Disconnect(5),  # the caller leaves; its command is abandoned
        Answer("b", "own", 0, "all"),  # late: 404
        Call("a", 5, 5),
        Wait(0.06),
        Sweep(),
        Poll("a"),
        DropPoll(5),
        Call("a", None, 2.5),
        Wait(0.02),
        Poll("a"),
        Burst((Call("a", 1, 1), Call("a", 2, 2)), hang_up=True),  # the delivery is lost
        Poll("a"),  # and the command redelivered
        Answer("a", "own", -1, "command"),
        Poll("a"),
        Burst((Call("a", 3, 3),), hang_up=True),
        Wait(0.12),  # lost, and no poll within the connect timeout: CameraOffline
    ]
    run_virtual(lambda: play(operations, close_at_end))


def test_a_superseded_poll_that_hangs_up_ends_cancelled() -> None:
    """Regression: Relay.poll once turned this cancellation into the PollSuperseded."""

    async def scenario() -> None:
        relay = Relay(CONFIG)
        older = asyncio.create_task(relay.poll("a"))
        await asyncio.sleep(0)  # held
        newer = asyncio.create_task(relay.poll("a"))
        await asyncio.sleep(0)  # the newer poll supersedes the older one ...
        older.cancel()  # ... whose client hangs up in the same loop turn
        await asyncio.gather(older, return_exceptions=True)
        newer.cancel()
        await asyncio.gather(newer, return_exceptions=True)
        assert_relay_idle(relay)
        assert older.cancelled(), f"the cancellation became {older.exception()!r}"

    run_virtual(scenario)
