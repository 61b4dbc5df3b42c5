"""A result on its way from the camera's home to a caller on another node, on the in-memory
backend: the home answers the camera's upload once the store has it, and the caller's node
takes a result that came inside its message at once, or waits for room in its budget; and
a home whose store hangs still answers its own cameras' callers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from array import array
from collections.abc import AsyncIterator, Sequence

import orjson
import pytest

from server.cluster import ClusterNode
from server.cluster import messages as m
from server.cluster.backend import BackendError, Body, Envelope, InlineBody, StoreLimits
from server.cluster.context import ClusterConfig
from server.cluster.memory import MemoryBackend, MemoryStore
from server.cluster.payload import HEAD, TAIL, NotTaken, take_result, take_result_here
from server.cluster.unavailable import ClusterUnavailable
from server.relay import (
    LogResult,
    LogSelection,
    RelayConfig,
    Reservation,
    ResultBudget,
    ResultOutcome,
    TimeRange,
)
from server.relay.logscan import ResultScanner
from tests.helpers import wait_until

RELAY = RelayConfig(
    poll_hold_seconds=2.0, connect_timeout_seconds=2.0, response_timeout_seconds=2.0
)
LIMITS = StoreLimits(
    node_timeout_seconds=2.0,
    max_cameras=8,
    answered_retention_seconds=60.0,
    unanswered_retention_seconds=RELAY.unanswered_retention_seconds,
    message_ttl_seconds=RELAY.longest_logs_wait,
    receive_wait_seconds=0.5,
)
LOGS = [{"timestamp": float(t), "description": f"event {t}"} for t in range(5)]
RESULT_BODY = HEAD + b",".join(orjson.dumps(entry) for entry in LOGS) + TAIL


class OutcomesGated(MemoryBackend):
    """The in-memory backend, where a send of an outcome waits for ``gate``; ``order``
    notes each message once the store has taken it."""

    def __init__(self, store: MemoryStore, order: list[str], gate: asyncio.Event) -> None:
        super().__init__(store)
        self._order = order
        self._gate = gate
        self.outcomes_sending = 0

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        types = [getattr(m.decode(envelope.header), "TYPE", "") for envelope in envelopes]
        if "outcome" in types:
            self.outcomes_sending += 1
            await self._gate.wait()
        await super().send(envelopes)
        self._order.extend(f"{kind} taken" for kind in types)


def node_on(
    backend: MemoryBackend,
    name: str,
    outcome_write_wait: float = 5.0,
    node_timeout: float = 2.0,
) -> ClusterNode:
    config = ClusterConfig(
        prefix="t",
        node=name,
        node_timeout_seconds=node_timeout,
        shutdown_timeout_seconds=1.0,
        outcome_write_wait_seconds=outcome_write_wait,
    )
    return ClusterNode(RELAY, config, backend, wall_clock=time.time)


def scanned(request_id: str) -> LogResult:
    scanner = ResultScanner(expected_size=None)
    scanner.feed(b'{"requestId":"%s","logs":%s}' % (request_id.encode(), orjson.dumps(LOGS)))
    return scanner.finish().result


def assert_entries_one_to_three(selection: LogSelection) -> None:
    """The caller's slice (its range is 1..3) of ``LOGS``; the selection is released."""
    try:
        assert orjson.loads(b"".join(selection.chunks(b"[", b"]"))) == LOGS[1:4]
    finally:
        selection.release()


async def answer_upload(home: ClusterNode, request_id: str, order: list[str]) -> int:
    """What /send_logs does with the camera's upload of its result; the callers it had."""
    async with home.receive_result("cam", None) as upload:
        receipt = await upload.submit(request_id, scanned(request_id))
    await asyncio.sleep(0)  # as /send_logs does before it answers the camera
    order.append("upload answered")
    return receipt.callers


@pytest.mark.parametrize("store", ["answers", "stalls", "known-down"])
async def test_the_camera_is_answered_once_the_store_has_the_result_for_a_caller_elsewhere(
    store: str,
) -> None:
    """Answered sooner, the camera's next poll would compete with the result's way to the
    caller's node; a store that does not take it holds the camera's answer only for
    ``outcome_write_wait_seconds``, and one the home knows to be down not at all."""
    memory = MemoryStore(LIMITS, time.time, inline_body_bytes=64 * 1024)
    order: list[str] = []
    gate = asyncio.Event()
    backend = OutcomesGated(memory, order, gate)
    home = node_on(backend, "home", outcome_write_wait=0.05 if store == "stalls" else 5.0)
    other = node_on(memory.backend(), "other")
    await home.start()
    await other.start()
    try:
        poll = asyncio.ensure_future(home.poll("cam"))
        await wait_until(lambda: home.is_home("cam"))  # claimed: its entry names its home
        caller = asyncio.ensure_future(other.fetch_logs("cam", TimeRange(1.0, 3.0)))
        async with asyncio.timeout(5.0):
            command = await poll
        assert command is not None
        if store == "known-down":  # as the home finds it after a call failed
            memory.set_down(True)
            home._ctx.health.failed(BackendError("the store is down"))
        answered = asyncio.ensure_future(answer_upload(home, command.request_id, order))
        await wait_until(lambda: backend.outcomes_sending == 1)
        if store == "answers":
            for _ in range(5):
                await asyncio.sleep(0)
            assert not answered.done(), "the camera was answered before the store had the result"
            gate.set()
        async with asyncio.timeout(1.0):  # below the wait, but for the stalled store's
            assert await answered == 1
        if store == "answers":
            assert order[-2:] == ["outcome taken", "upload answered"]
        else:
            assert "outcome taken" not in order
            gate.set()
        if store == "known-down":
            caller.cancel()  # its result was lost with the store: it gets a 503 in time
            return
        async with asyncio.timeout(5.0):
            selection = await caller
        assert_entries_one_to_three(selection)
    finally:
        memory.set_down(False)
        gate.set()
        await other.stop()
        await home.stop()


async def test_a_camera_whose_callers_are_all_on_its_home_is_answered_without_the_store() -> None:
    store = MemoryStore(LIMITS, time.time, inline_body_bytes=64 * 1024)
    order: list[str] = []
    gate = asyncio.Event()  # never opened: an outcome through the store would stall
    backend = OutcomesGated(store, order, gate)
    home = node_on(backend, "home")
    await home.start()
    try:
        poll = asyncio.ensure_future(home.poll("cam"))
        await wait_until(lambda: home.is_home("cam"))
        # An error for a caller elsewhere, stuck in the store: not the camera's to wait for.
        home._ctx.courier.post(
            "other~1", m.Outcome(camera="cam", refs=("other~1/1",), error="QueueFull")
        )
        await wait_until(lambda: backend.outcomes_sending == 1)
        caller = asyncio.ensure_future(home.fetch_logs("cam", TimeRange(1.0, 3.0)))
        async with asyncio.timeout(5.0):
            command = await poll
        assert command is not None
        async with asyncio.timeout(1.0):  # well below outcome_write_wait_seconds
            assert await answer_upload(home, command.request_id, order) == 1
            selection = await caller
        selection.release()
        assert backend.outcomes_sending == 1, "a result for a caller on its home went to the store"
    finally:
        gate.set()
        await home.stop()


# ---------------------------------------------------------------- take_result_here


def test_a_result_that_came_inside_its_message_is_taken_at_once_and_counted() -> None:
    budget = ResultBudget(10_000)
    body = InlineBody(RESULT_BODY)
    result = take_result_here(budget, body)
    assert isinstance(result, LogResult)
    assert [result.entry_bytes(i) for i in range(len(result))] == [
        orjson.dumps(entry) for entry in LOGS
    ]
    assert budget.in_use == len(RESULT_BODY)
    result.release()
    assert budget.in_use == 0
    assert body.take_here() is None, "its bytes are taken once"


@pytest.mark.parametrize("here", [True, False], ids=["taken-here", "read-later"])
async def test_a_result_that_came_with_its_timestamps_counts_them_too(here: bool) -> None:
    timestamps = base64.b64encode(array("d", [float(entry["timestamp"]) for entry in LOGS]))
    told = timestamps.decode()
    budget = ResultBudget(10_000)
    taken = (
        take_result_here(budget, InlineBody(RESULT_BODY), told)
        if here
        else await take_result(budget, InlineBody(RESULT_BODY), told)
    )
    assert isinstance(taken, LogResult)
    assert taken.flat, "it was indexed by its timestamps, not parsed"
    assert budget.in_use == len(RESULT_BODY) + len(told)
    taken.release()
    assert budget.in_use == 0


async def test_a_result_is_left_to_be_read_when_the_budget_has_no_room_for_it_now() -> None:
    budget = ResultBudget(len(RESULT_BODY))
    held = await budget.reserve(1)
    body = InlineBody(RESULT_BODY)
    assert take_result_here(budget, body) is NotTaken.LATER
    assert budget.in_use == 1
    assert await body.read() == RESULT_BODY, "a result not taken is left to be read"
    held.release()


async def test_a_result_does_not_overtake_one_waiting_for_room() -> None:
    size = len(RESULT_BODY)
    budget = ResultBudget(2 * size)
    held = await budget.reserve(size)
    waiting = asyncio.ensure_future(budget.reserve(size + 1))  # more than is free
    await asyncio.sleep(0)
    assert budget.waiting == 1
    # The result would fit in what is free, but the one waiting goes first.
    assert take_result_here(budget, InlineBody(RESULT_BODY)) is NotTaken.LATER
    assert budget.in_use == size
    held.release()
    (await waiting).release()
    assert budget.in_use == 0


def test_a_body_kept_in_the_store_is_read_later_and_reserves_nothing_now() -> None:
    class Kept(Body):
        size = len(RESULT_BODY)

        async def read(self) -> bytes | None:
            return RESULT_BODY

    class Counted(ResultBudget):
        reservations = 0

        def reserve_now(self, size: int) -> Reservation | None:
            self.reservations += 1
            return super().reserve_now(size)

    budget = Counted(10_000)
    assert take_result_here(budget, Kept()) is NotTaken.LATER
    assert (budget.reservations, budget.in_use) == (0, 0)


def test_a_body_that_does_not_parse_is_dropped_and_its_bytes_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = ResultBudget(10_000)
    with caplog.at_level(logging.WARNING, logger="camrelay.cluster"):
        taken = take_result_here(budget, InlineBody(b'{"logs":[{"timestamp":1}'))
    assert taken is NotTaken.DROPPED
    assert budget.in_use == 0
    assert "dropped a result message whose body does not parse" in caplog.text


async def test_a_store_that_hangs_holds_no_poll_or_caller_of_the_node_holding_the_camera() -> None:
    """Once a call to the store failed, a node whose lease lapsed still serves its own
    cameras' polls and callers at once, though the store now hangs rather than refuses."""
    memory = MemoryStore(LIMITS, time.time)
    home = node_on(memory.backend(), "home", node_timeout=0.4)  # its lease lapses in 0.2 s
    await home.start()
    try:
        first = asyncio.ensure_future(home.poll("cam"))
        await wait_until(lambda: home.is_home("cam"))
        memory.set_down(True)
        await wait_until(lambda: not home._ctx.health.up)
        memory.set_down(False)
        memory.cut_off(home.incarnation, True)  # from now on its calls hang
        await wait_until(lambda: not home._membership.lease_valid())
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        async with asyncio.timeout(1.0):
            poll = asyncio.ensure_future(home.poll("cam"))
            caller = asyncio.ensure_future(home.fetch_logs("cam", TimeRange(1.0, 3.0)))
            command = await poll
            assert command is not None
            async with home.receive_result("cam", None) as upload:
                await upload.submit(command.request_id, scanned(command.request_id))
            selection = await caller
        assert_entries_one_to_three(selection)
    finally:
        memory.cut_off(home.incarnation, False)
        await home.stop()


async def test_a_result_for_parked_work_is_503_while_the_store_refuses_to_adopt_it() -> None:
    """The node a result reaches takes over a camera whose home stopped and parked its
    work; while the store refuses that write, the camera is answered 503 (post again),
    not 404, and no session is left behind; once it takes writes, the result is taken."""
    memory = MemoryStore(LIMITS, time.time)
    home, other = node_on(memory.backend(), "home"), node_on(memory.backend(), "other")
    await home.start()
    await other.start()
    try:
        poll = asyncio.ensure_future(home.poll("cam"))
        await wait_until(lambda: home.is_home("cam"))
        caller = asyncio.ensure_future(other.fetch_logs("cam", TimeRange(1.0, 3.0)))
        command = await poll
        assert command is not None
        home.close()  # the camera took the command: its home stops before the result
        directory = memory.backend().directory

        async def parked() -> bool:
            (entry,) = await directory.read(["cam"])
            return entry is not None and entry.home == "" and entry.expect

        async with asyncio.timeout(3.0):
            while not await parked():
                await asyncio.sleep(0.005)
        memory.set_refusing_writes(True)
        with pytest.raises(ClusterUnavailable):
            async with other.receive_result("cam", None):
                pass
        assert not other.is_home("cam")
        assert other.debug_sizes()["cameras"] == 0
        memory.set_refusing_writes(False)
        async with other.receive_result("cam", None) as upload:
            receipt = await upload.submit(None, scanned(command.request_id))
        assert (receipt.outcome, receipt.request_id) == (ResultOutcome.ACCEPTED, command.request_id)
        assert other.is_home("cam")
        assert_entries_one_to_three(await caller)
    finally:
        await home.stop()
        await other.stop()


async def test_a_node_that_left_is_logged_as_gone_and_one_that_died_as_a_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A graceful stop is no fault: the others log it at INFO. A node that stopped
    beating (killed, cut off) is the one-line WARNING it always was."""
    caplog.set_level(logging.INFO, logger="camrelay.cluster")
    memory = MemoryStore(LIMITS, time.time)
    nodes = [node_on(memory.backend(), name, node_timeout=0.4) for name in ("a", "b", "c")]
    for node in nodes:
        await node.start()
    left, killed, watcher = nodes
    try:
        await wait_until(lambda: all(watcher.is_alive(n.incarnation) for n in (left, killed)))
        left.close()
        await left.stop()
        await killed.halt()

        def logged() -> list[tuple[int, str]]:
            lines = [(r.levelno, r.getMessage()) for r in caplog.records]
            return [(level, line) for level, line in lines if " left " in line or "beating" in line]

        await wait_until(lambda: len(logged()) >= 2, timeout=3.0)
        assert sorted(logged()) == [
            (logging.INFO, f"node {left.incarnation} left the cluster"),
            (
                logging.WARNING,
                f"node {killed.incarnation} stopped beating: taking over its cameras' callers",
            ),
        ]
    finally:
        await watcher.stop()


# ---------------------------------------------------------------- messages checked


async def test_an_outcome_or_move_naming_another_camera_leaves_a_caller_waiting() -> None:
    """A message names the camera its callers wait for; a receiver that took a caller of
    another camera by its ref alone would hand it that camera's entries."""
    store = MemoryStore(LIMITS, time.time, inline_body_bytes=64 * 1024)
    home, other = node_on(store.backend(), "home"), node_on(store.backend(), "other")
    await home.start()
    await other.start()
    try:
        polls = [asyncio.ensure_future(home.poll(camera)) for camera in ("cam-a", "cam-b")]
        await wait_until(lambda: home.is_home("cam-a") and home.is_home("cam-b"))
        caller = asyncio.ensure_future(other.fetch_logs("cam-a", TimeRange(1.0, 3.0)))
        await wait_until(lambda: len(other._waiters) == 1)
        [ref] = list(other._waiters._waiters)
        waiter = other._waiters._waiters[ref]
        other._waiters.on_outcome(m.Outcome(camera="cam-b", refs=(ref,), error="QueueFull"), None)
        body = InlineBody(RESULT_BODY)
        other._waiters.on_outcome(m.Outcome(camera="cam-b", request="r", refs=(ref,)), body)
        other._waiters.on_moved(m.Moved(camera="cam-b", refs=(ref,), home="x~1"), None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not caller.done()
        assert waiter.home != "x~1"
        # The same messages naming its own camera do reach it.
        other._waiters.on_outcome(m.Outcome(camera="cam-a", request="r", refs=(ref,)), body)
        async with asyncio.timeout(5.0):
            assert_entries_one_to_three(await caller)
        for poll in polls:
            poll.cancel()
    finally:
        await other.stop()
        await home.stop()


@contextlib.asynccontextmanager
async def home_of_an_idle_camera(store: MemoryStore) -> AsyncIterator[ClusterNode]:
    """A node that claimed "cam" with a poll that has ended since (no poll held)."""
    home = node_on(store.backend(), "home")
    await home.start()
    try:
        poll = asyncio.ensure_future(home.poll("cam"))
        await wait_until(lambda: home.is_home("cam"))
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
        yield home
    finally:
        await home.stop()


async def test_an_enqueue_sent_twice_queues_its_caller_once_and_a_forget_drops_it() -> None:
    """A caller's work is sent again when its home may have died; if it reached the home
    both times, it must wait there once, and leave with its one Forget."""
    store = MemoryStore(LIMITS, time.time, inline_body_bytes=64 * 1024)
    async with home_of_an_idle_camera(store) as home:
        enqueue = m.Enqueue(camera="cam", ref="other~1/1", start=1.0, end=3.0, pickup=2.0)
        home._on_enqueue(enqueue, None)
        home._on_enqueue(enqueue, None)
        session = home.relay.session("cam")
        assert session is not None
        assert session.status().waiting == 1
        home._on_forget(m.Forget(camera="cam", ref="other~1/1"), None)
        assert session.status().waiting == 0


async def test_after_the_store_lost_its_data_a_lower_numbered_takeover_is_obeyed() -> None:
    """Claims are numbered by the store's clock: a store back empty on a host whose
    clock is behind numbers new claims below those the nodes remember, and a node that
    went on by the old numbers would keep a camera another node now holds (no poll is
    held there that could be newer than the other's claim)."""
    store = MemoryStore(LIMITS, time.time, inline_body_bytes=64 * 1024)
    async with home_of_an_idle_camera(store) as home:
        remembered = home._homes.seq("cam")
        assert remembered > 0
        store.flush()
        await home._beat()  # finds the new epoch
        behind = remembered - 60_000_000  # the new store's clock is a minute behind
        home._homes.on_takeover(m.Takeover(camera="cam", to="other~1", seq=behind), None)
        assert not home.is_home("cam")
