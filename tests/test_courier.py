"""The courier on the in-memory backend: what a message wakes runs before the reader asks
for the next messages; what a flush and a drain wait for; a writer that outlives a bug."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from server.cluster import messages as m
from server.cluster.backend import Body, Delivery, Envelope, StoreLimits
from server.cluster.courier import Courier
from server.cluster.health import StoreHealth
from server.cluster.memory import MemoryBackend, MemoryStore
from server.cluster.unavailable import ClusterUnavailable
from tests.helpers import wait_until

LIMITS = StoreLimits(
    node_timeout_seconds=2.0,
    max_cameras=4,
    answered_retention_seconds=0.8,
    unanswered_retention_seconds=0.3,
    message_ttl_seconds=5.0,
    receive_wait_seconds=5.0,
)


class ReadsRecorded(MemoryBackend):
    """The in-memory backend, noting in ``order`` each read of an inbox."""

    def __init__(self, store: MemoryStore, order: list[str]) -> None:
        super().__init__(store)
        self._order = order

    async def receive(self, node: str) -> list[Delivery]:
        self._order.append("read")
        return await super().receive(node)


async def test_a_request_woken_through_a_task_a_message_started_answers_before_the_next_read() -> (
    None
):
    store = MemoryStore(LIMITS, time.time)
    order: list[str] = []
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    started: list[asyncio.Task[None]] = []

    async def request() -> None:
        await woken
        order.append("answered")

    async def take(message: m.Enqueue) -> None:  # as an outcome is taken: in a task
        woken.set_result(None)

    def on_enqueue(message: m.Enqueue, body: Body | None) -> None:
        started.append(loop.create_task(take(message)))

    waiting = loop.create_task(request())
    home = Courier(ReadsRecorded(store, order), "home~1", StoreHealth(), time.time)
    caller = Courier(store.backend(), "caller~1", StoreHealth(), time.time)
    home.start({m.Enqueue: on_enqueue})
    caller.start({})
    try:
        await wait_until(lambda: order == ["read"])
        await caller.send("home~1", m.Enqueue(camera="cam", ref="caller~1:1"))
        await waiting
        await wait_until(lambda: len(order) == 3)
        assert order == ["read", "answered", "read"]
    finally:
        await home.close()
        await caller.close()
        await asyncio.gather(*started)


async def test_a_callers_work_sent_to_an_earlier_run_of_a_node_comes_back_as_moved() -> None:
    store = MemoryStore(LIMITS, time.time)
    loop = asyncio.get_running_loop()
    told: asyncio.Future[m.Moved] = loop.create_future()

    def on_moved(message: m.Moved, body: Body | None) -> None:
        told.set_result(message)

    def on_enqueue(message: m.Enqueue, body: Body | None) -> None:
        raise AssertionError("work for an earlier run was taken by the later one")

    restarted = Courier(store.backend(), "home~2", StoreHealth(), time.time)
    caller = Courier(store.backend(), "caller~1", StoreHealth(), time.time)
    restarted.start({m.Enqueue: on_enqueue})
    caller.start({m.Moved: on_moved})
    try:
        # Sent to the run before (its inbox is the node's: the later run reads it).
        await caller.send("home~1", m.Enqueue(camera="cam", ref="caller~1/7"))
        async with asyncio.timeout(2.0):
            moved = await told
    finally:
        await restarted.close()
        await caller.close()
    assert (moved.camera, moved.refs, moved.home, moved.dest) == (
        "cam",
        ("caller~1/7",),
        "",
        "caller~1",
    )


class SendsGated(MemoryBackend):
    """The in-memory backend, whose ``n``-th send waits for ``gates[n]``; ``taken`` lists
    the types of the messages the store has taken, in order."""

    def __init__(self, store: MemoryStore, gates: list[asyncio.Event]) -> None:
        super().__init__(store)
        self.gates = gates
        self.sends = 0
        self.taken: list[str] = []

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        gate = self.gates[self.sends]
        self.sends += 1
        await gate.wait()
        await super().send(envelopes)
        self.taken.extend(m.decode(envelope.header).TYPE for envelope in envelopes)  # type: ignore[union-attr]


@pytest.fixture
async def gated() -> AsyncIterator[tuple[Courier, SendsGated]]:
    """A started courier whose first two sends wait for their gates (opened at the end)."""
    backend = SendsGated(MemoryStore(LIMITS, time.time), [asyncio.Event(), asyncio.Event()])
    courier = Courier(backend, "home~1", StoreHealth(), time.time)
    courier.start({})
    try:
        yield courier, backend
    finally:
        for gate in backend.gates:
            gate.set()
        await courier.close()


async def still_waiting(waiting: asyncio.Future[None]) -> bool:
    for _ in range(5):
        await asyncio.sleep(0)
    return not waiting.done()


async def test_a_flush_waits_for_what_was_posted_before_it_and_not_for_what_came_after(
    gated: tuple[Courier, SendsGated],
) -> None:
    courier, backend = gated
    courier.post("caller~1", m.Enqueue(camera="cam", ref="caller~1/1"))
    flushed = asyncio.ensure_future(courier.flush(seconds=5.0))
    await wait_until(lambda: backend.sends == 1)  # the first batch is being written
    courier.post("caller~1", m.Forget(camera="cam", ref="caller~1/1"))
    assert await still_waiting(flushed), "the flush ended before its message was written"
    backend.gates[0].set()
    async with asyncio.timeout(2.0):
        await flushed
    assert backend.taken == ["enqueue"], "the flush waited for a message posted after it"
    second = asyncio.ensure_future(courier.flush(seconds=5.0))
    await wait_until(lambda: backend.sends == 2)
    assert await still_waiting(second), "a flush ended before the message posted ahead of it"
    backend.gates[1].set()
    async with asyncio.timeout(2.0):
        await second
    assert backend.taken == ["enqueue", "forget"]


async def test_a_flush_the_store_does_not_answer_ends_after_its_timeout(
    gated: tuple[Courier, SendsGated],
) -> None:
    courier, _ = gated
    courier.post("caller~1", m.Enqueue(camera="cam", ref="caller~1/1"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(2.0):
        await courier.flush(seconds=0.05)
    assert loop.time() - started >= 0.05


async def test_a_drain_waits_for_what_is_posted_while_it_waits(
    gated: tuple[Courier, SendsGated],
) -> None:
    """A node's last messages before it stops: a reply posted during the drain goes too."""
    courier, backend = gated
    courier.post("caller~1", m.Enqueue(camera="cam", ref="caller~1/1"))
    drained = asyncio.ensure_future(courier.drain(seconds=5.0))
    await wait_until(lambda: backend.sends == 1)
    courier.post("caller~1", m.Forget(camera="cam", ref="caller~1/1"))
    backend.gates[0].set()
    await wait_until(lambda: backend.sends == 2)
    assert await still_waiting(drained), "the drain ended with a message posted meanwhile unwritten"
    backend.gates[1].set()
    async with asyncio.timeout(2.0):
        await drained
    assert backend.taken == ["enqueue", "forget"]


class SendsBroken(MemoryBackend):
    """The in-memory backend, whose first send fails with an error that is not the
    store's (a bug); ``taken`` lists the types of the messages the store took."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.sends = 0
        self.taken: list[str] = []

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        self.sends += 1
        if self.sends == 1:
            raise RuntimeError("a bug")
        await super().send(envelopes)
        self.taken.extend(m.decode(envelope.header).TYPE for envelope in envelopes)  # type: ignore[union-attr]


async def test_a_send_that_fails_unexpectedly_is_logged_and_the_writer_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore(LIMITS, time.time)
    backend = SendsBroken(store)
    health = StoreHealth()
    courier = Courier(backend, "home~1", health, time.time)
    courier.start({})
    try:
        with pytest.raises(ClusterUnavailable):
            await courier.send("caller~1", m.Enqueue(camera="cam", ref="caller~1/1"))
        assert not health.up
        assert "cluster messages could not be sent" in caplog.text
        await courier.send("caller~1", m.Forget(camera="cam", ref="caller~1/1"))
        assert backend.taken == ["forget"]
        assert health.up
    finally:
        await courier.close()
