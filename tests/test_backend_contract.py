"""The contract of ``server.cluster.backend``, checked the same way on every backend.

Each check is one coroutine taking a ``Store``: the in-memory backend runs it on a
virtual loop (its waits cost no wall time), the Redis one on a real loop against a
real redis-server (its waits are real, so the limits below are short).
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.cluster.backend import (
    Backend,
    BackendError,
    CameraEntry,
    Envelope,
    StatusWrite,
    StoreLimits,
    Written,
)
from server.cluster.memory import MemoryStore
from server.relay import CameraStatus
from tests.sim.loop import run_virtual, wall_clock
from tools.redis_server import LocalRedisCluster

#: Short, so that the Redis checks' waits for real expiry (and for an empty inbox) stay
#: short; each check leaves at least 0.3 s between what must still be there and when it
#: expires. A node counts alive for half the node timeout after its beat: a whole second,
#: so that a loaded machine's stall between a beat and the check that follows it does not
#: read as a missed beat.
LIMITS = StoreLimits(
    node_timeout_seconds=2.0,
    max_cameras=4,
    answered_retention_seconds=0.8,
    unanswered_retention_seconds=0.3,
    # a big body is sent, then read back after two other reads: on a loaded machine,
    # through a Redis Cluster, that once took longer than 0.6 s
    message_ttl_seconds=1.5,
    status_refresh_seconds=0.3,
    receive_wait_seconds=0.3,
)
#: an entry that says polling lives this much longer
POLLING_EXTRA = LIMITS.status_refresh_seconds
#: more than any retention above is stretched by the store's clock or TTL rounding
MARGIN = 0.1
N1, N2, N3 = "n1~aaaa", "n2~bbbb", "n3~cccc"


class Store(abc.ABC):
    """One shared store, and a way to make it lose its data."""

    @abc.abstractmethod
    def backend(self) -> Backend: ...

    @abc.abstractmethod
    async def flush(self) -> None: ...

    @abc.abstractmethod
    def wall(self) -> float:
        """The time the store's clock reads now (epoch seconds)."""

    async def close(self) -> None:
        return


class MemoryStoreUnderTest(Store):
    def __init__(self) -> None:
        # Small bodies inside their messages, as the Redis transport sends them.
        self.store = MemoryStore(LIMITS, wall_clock, inline_body_bytes=64 * 1024)

    def backend(self) -> Backend:
        return self.store.backend()

    async def flush(self) -> None:
        self.store.flush()

    def wall(self) -> float:
        return wall_clock()


class RedisStoreUnderTest(Store):
    def __init__(self, url: str, cluster: LocalRedisCluster | None = None) -> None:
        self.url = url
        self.cluster = cluster
        self.prefix = f"contract-{secrets.token_hex(4)}"
        self.backends: list[Backend] = []

    def backend(self) -> Backend:
        from server.cluster.redis import RedisBackend

        backend = RedisBackend.from_url(
            self.url, self.prefix, LIMITS, cluster=self.cluster is not None
        )
        self.backends.append(backend)
        return backend

    async def flush(self) -> None:
        from redis.asyncio import Redis

        if self.cluster is not None:
            await self.cluster.flush()
            return
        client = Redis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    def wall(self) -> float:
        return time.time()

    async def close(self) -> None:
        for backend in self.backends:
            await backend.close()


Check = Callable[[Store], Awaitable[None]]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
def run_check(request: pytest.FixtureRequest) -> Callable[[Check], None]:
    """Runs a check against the backend of this parameter."""
    if request.param == "memory":

        def run_memory(check: Check) -> None:
            async def main() -> None:
                await check(MemoryStoreUnderTest())

            run_virtual(main)

        return run_memory

    pytest.importorskip("server.cluster.redis", reason="server.cluster.redis is not written yet")
    cluster: LocalRedisCluster | None = None
    if request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
    else:
        url = request.getfixturevalue("redis_server").url

    def run_redis(check: Check) -> None:
        async def main() -> None:
            store = RedisStoreUnderTest(url, cluster)
            try:
                await check(store)
            finally:
                await store.close()

        asyncio.run(main())

    return run_redis


def status(camera_id: str, **fields: Any) -> CameraStatus:
    values: dict[str, Any] = {
        "online": True,
        "last_seen": None,
        "polling": True,
        "waiting": 0,
        "in_flight": 0,
        **fields,
    }
    return CameraStatus(camera_id, **values)


def write(camera_id: str, seq: int, *, answered: bool = False, **fields: Any) -> StatusWrite:
    return StatusWrite(status(camera_id, **fields), expect=True, answered=answered, seq=seq)


async def entry_of(backend: Backend, camera_id: str) -> CameraEntry | None:
    (entry,) = await backend.directory.read([camera_id])
    return entry


# ---------------------------------------------------------------- directory


async def check_claims_are_numbered_in_order(store: Store) -> None:
    backend = store.backend()
    directory = backend.directory
    (first,) = await directory.claim(["cam"], N1, again=False)
    assert (first.old_home, first.parked, first.refused) == ("", b"", False)
    assert abs(first.seq / 1e6 - store.wall()) < 5, "a claim's seq is a clock in microseconds"
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.polling, entry.seq) == (N1, True, first.seq)
    assert entry.seen_ms is not None
    assert abs(entry.seen_ms / 1000 - store.wall()) < 5

    (second,) = await directory.claim(["cam"], N2, again=False)
    assert (second.old_home, second.parked) == (N1, b"")
    assert second.seq > first.seq
    (third,) = await directory.claim(["cam"], N2, again=True)
    assert third.old_home == N2, "a home claiming again finds itself"
    assert third.seq > second.seq
    (fourth,) = await directory.claim(["cam"], N1, again=True)
    assert fourth.old_home == N2, "a node that only believes it is home takes it like any claim"
    assert fourth.seq > third.seq
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.seq) == (N1, fourth.seq)

    both = await directory.claim(["x", "y"], N3, again=False)
    assert [claim.old_home for claim in both] == ["", ""]

    await store.flush()
    await asyncio.sleep(0.01)
    (after_flush,) = await directory.claim(["cam"], N2, again=False)
    assert after_flush.old_home == ""
    assert after_flush.seq > fourth.seq, "a claim after the store lost its data still comes later"


async def check_a_new_camera_past_max_cameras_is_refused(store: Store) -> None:
    directory = store.backend().directory
    ids = [f"cam-{index}" for index in range(LIMITS.max_cameras)]
    claims = await directory.claim(ids, N1, again=False)
    assert not any(claim.refused for claim in claims)
    (refused,) = await directory.claim(["one-more"], N1, again=False)
    assert refused.refused
    assert await directory.read(["one-more"]) == [None], "a refused claim writes nothing"
    assert await directory.count() == LIMITS.max_cameras
    (known,) = await directory.claim(["cam-0"], N2, again=False)
    assert not known.refused, "a known camera is never refused"
    assert known.old_home == N1
    await asyncio.sleep(LIMITS.unanswered_retention_seconds + POLLING_EXTRA + MARGIN)
    (now_in,) = await directory.claim(["one-more"], N1, again=False)
    assert not now_in.refused, "expired cameras are forgotten before counting"
    assert await directory.count() == 1


async def check_a_camera_that_never_answered_expires(store: Store) -> None:
    backend = store.backend()
    directory = backend.directory
    (claim,) = await directory.claim(["quiet"], N1, again=False)
    (answered,) = await directory.claim(["talker"], N1, again=False)
    (brief,) = await directory.claim(["brief"], N1, again=False)
    landed = await directory.write_status(
        N1,
        [
            write("talker", answered.seq, answered=True),
            write("brief", brief.seq, polling=False),
        ],
    )
    assert landed == [Written(N1, answered.seq), Written(N1, brief.seq)]
    await asyncio.sleep(LIMITS.unanswered_retention_seconds + MARGIN)
    assert await entry_of(backend, "brief") is None, "a poll that ended is forgotten on time"
    assert await entry_of(backend, "quiet") is not None, "a polling camera lives a refresh longer"
    await asyncio.sleep(POLLING_EXTRA)
    assert await entry_of(backend, "quiet") is None
    assert await entry_of(backend, "talker") is not None, "an answering camera is kept longer"
    assert await directory.count() == 1
    (again,) = await directory.claim(["quiet"], N2, again=False)
    assert again.old_home == ""
    assert again.seq > claim.seq
    await asyncio.sleep(LIMITS.answered_retention_seconds + POLLING_EXTRA + MARGIN)
    assert await directory.read(["quiet", "talker"]) == [None, None]
    assert await directory.count() == 0


async def check_status_lands_only_at_the_home(store: Store) -> None:
    backend = store.backend()
    directory = backend.directory
    (claim,) = await directory.claim(["cam"], N1, again=False)
    seen = round(store.wall() - 3, 3)
    landed = await directory.write_status(
        N1, [write("cam", claim.seq, last_seen=seen, polling=False, waiting=2, in_flight=1)]
    )
    assert landed == [Written(N1, claim.seq)]
    assert not landed[0].lost_to(N1)
    entry = await entry_of(backend, "cam")
    assert entry == CameraEntry("cam", N1, int(seen * 1000), False, 2, 1, True, claim.seq)

    (taken,) = await directory.claim(["cam"], N2, again=False)
    dropped = await directory.write_status(N1, [write("cam", claim.seq, waiting=7)])
    assert dropped == [Written(N2, taken.seq)]
    assert dropped[0].lost_to(N1)
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.waiting, entry.seq) == (N2, 2, taken.seq), "the write was dropped"

    fresh = await directory.write_status(N3, [write("never-claimed", 0)])
    assert fresh[0].home == N3, "nobody was home: the writer is"
    assert abs(fresh[0].seq / 1e6 - store.wall()) < 5, "with a fresh seq"

    await store.flush()
    await asyncio.sleep(0.01)
    (again,) = await directory.write_status(N1, [write("cam", 0, waiting=3)])
    assert again.home == N1, "the store lost the entry: the writer is home again"
    assert again.seq > taken.seq
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.waiting, entry.seq) == (N1, 3, again.seq)


async def check_parked_work_is_taken_once(store: Store) -> None:
    backend = store.backend()
    directory = backend.directory
    await directory.claim(["cam"], N1, again=False)
    assert not await directory.park("cam", N2, b"not home"), "only the home parks"
    assert await directory.park("cam", N1, b"work")
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.polling) == ("", False)
    (taken,) = await directory.claim(["cam"], N2, again=False)
    assert (taken.old_home, taken.parked) == ("", b"work")
    (next_claim,) = await directory.claim(["cam"], N3, again=False)
    assert (next_claim.old_home, next_claim.parked) == (N2, b""), "parked work is taken once"
    assert not await directory.park("cam", N2, b"late"), "a former home parks nothing"

    # A stale home's status does not take back a camera another node claimed and parked.
    (stale,) = await directory.claim(["other"], N1, again=False)
    await directory.claim(["other"], N2, again=False)
    assert await directory.park("other", N2, b"for the next home")
    await directory.write_status(N1, [write("other", stale.seq)])
    entry = await entry_of(backend, "other")
    assert entry is not None
    assert entry.home == "", "the write of a home older than the latest claim was dropped"
    (next_home,) = await directory.claim(["other"], N3, again=False)
    assert next_home.parked == b"for the next home"


async def check_the_polls_of_a_home_that_died_end_at_its_last_beat(store: Store) -> None:
    directory = store.backend().directory
    await directory.claim(["x-1", "x-2"], N1, again=False)
    await directory.claim(["y-1"], N2, again=False)
    [x2, y1] = await directory.read(["x-2", "y-1"])
    assert x2 is not None
    assert x2.polling
    last_beat = store.wall()
    await directory.end_polls(N1, last_beat)
    x1, x2, y1 = await directory.read(["x-1", "x-2", "y-1"])
    for ended in (x1, x2):
        assert ended is not None
        assert (ended.home, ended.polling) == (N1, False)
        assert ended.seen_ms is not None
        assert abs(ended.seen_ms / 1000 - last_beat) < 0.002
    assert y1 is not None
    assert y1.polling, "another home's poll stays held"
    # They never answered: gone one short retention after the last beat, as any poll
    # that ended (a held poll's entry would live a refresh interval longer).
    await asyncio.sleep(LIMITS.unanswered_retention_seconds + MARGIN)
    assert await directory.read(["x-1", "x-2", "y-1"]) == [None, None, y1]


async def check_parked_work_is_adopted_only_while_nobody_is_home(store: Store) -> None:
    backend = store.backend()
    directory = backend.directory
    (claim,) = await directory.claim(["cam"], N1, again=False)
    refused = await directory.adopt("cam", N2)
    assert (refused.refused, refused.old_home) == (True, N1), "a camera with a home stays"
    assert await directory.park("cam", N1, b"work")
    adopted = await directory.adopt("cam", N2)
    assert (adopted.refused, adopted.old_home, adopted.parked) == (False, "", b"work")
    assert adopted.seq > claim.seq
    entry = await entry_of(backend, "cam")
    assert entry is not None
    assert (entry.home, entry.polling, entry.seq) == (N2, False, adopted.seq)
    again = await directory.adopt("cam", N3)
    assert (again.refused, again.old_home, again.parked) == (True, N2, b"")
    (next_claim,) = await directory.claim(["cam"], N3, again=False)
    assert (next_claim.old_home, next_claim.parked) == (N2, b""), "the work was taken once"
    gone = await directory.adopt("never-seen", N2)
    assert (gone.refused, gone.old_home) == (True, "")
    assert await entry_of(backend, "never-seen") is None


async def check_read_page_and_count(store: Store) -> None:
    directory = store.backend().directory
    await directory.claim(["b-1", "a-2", "a-1", "a-3"], N1, again=False)
    assert await directory.count() == 4
    assert await directory.page("", None, 10) == ["a-1", "a-2", "a-3", "b-1"]
    assert await directory.page("a-", None, 2) == ["a-1", "a-2"]
    assert await directory.page("a-", "a-2", 10) == ["a-3"]
    assert await directory.page("a-", "0", 10) == ["a-1", "a-2", "a-3"]
    assert await directory.page("", "a-3", 10) == ["b-1"]
    assert await directory.page("c", None, 10) == []
    found = await directory.read(["a-1", "zz", "b-1"])
    assert [None if entry is None else entry.camera_id for entry in found] == ["a-1", None, "b-1"]
    assert await directory.read([]) == []


# ---------------------------------------------------------------- members


async def check_beats_liveness_and_epoch(store: Store) -> None:
    members = store.backend().members
    first = await members.beat(N1)
    assert first.alive == frozenset({N1})
    assert (await members.beat(N2)).alive == frozenset({N1, N2})
    assert await members.is_alive(N1)
    assert not await members.is_alive(N3)
    await asyncio.sleep(LIMITS.node_timeout_seconds / 2 + MARGIN)
    beat = await members.beat(N2)
    assert beat.alive == frozenset({N2}), "N1 did not beat within half the node timeout"
    assert beat.epoch == first.epoch, "the epoch stays while the store keeps its data"
    assert not await members.is_alive(N1)
    await members.leave(N2)
    assert not await members.is_alive(N2)
    assert (await members.beat(N1)).alive == frozenset({N1})
    await store.flush()
    flushed = await members.beat(N1)
    assert flushed.epoch != first.epoch, "the store lost its data: a new epoch"
    assert (await members.beat(N1)).epoch == flushed.epoch


async def check_a_node_that_stopped_beating_keeps_its_last_beat(store: Store) -> None:
    members = store.backend().members
    before = store.wall()
    await members.beat(N1)
    await members.beat(N2)
    after = store.wall()
    await asyncio.sleep(LIMITS.node_timeout_seconds / 2 + MARGIN)
    assert not await members.is_alive(N1)
    last = await members.last_beat(N1)
    assert last is not None
    assert before - MARGIN <= last <= after + MARGIN, (before, last, after)
    await members.leave(N2)
    assert await members.last_beat(N2) is None, "a node that left has no last beat"
    assert await members.last_beat(N3) is None
    assert await members.last_beat("") is None


async def check_a_beat_carries_the_nodes_note(store: Store) -> None:
    members = store.backend().members
    await members.beat(N1, b"[1,2,3,4]")
    await members.beat(N2, b"two")
    assert await members.notes([N2, N3, N1]) == [b"two", None, b"[1,2,3,4]"]
    await members.beat(N1, b"[5,6,7,8]")
    await members.leave(N2)
    assert await members.notes([N1, N2]) == [b"[5,6,7,8]", None], "a node that left says nothing"
    assert await members.notes([]) == []


# ---------------------------------------------------------------- transport


async def check_messages_and_bodies(store: Store) -> None:
    sender, receiver = store.backend(), store.backend()
    big = secrets.token_bytes(1_000_000)
    await sender.transport.send(
        [
            Envelope(N1, b"first"),
            Envelope(N2, b"big", big),
            Envelope(N1, b"second", b"small"),
        ]
    )
    first, second = await receiver.transport.receive(N1)
    assert (first.header, first.body) == (b"first", None)
    assert second.header == b"second"
    assert second.body is not None
    assert second.body.size in (0, 5)
    # Its bytes are taken once: at once if they came inside the message, else read.
    here = second.body.take_here()
    assert here in (None, b"small")
    assert await second.body.read() == (b"small" if here is None else None)
    assert second.body.take_here() is None
    (large,) = await receiver.transport.receive(N2)
    assert large.body is not None
    assert large.body.take_here() is None, "a big body is read from the store"
    assert await large.body.read() == big

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await receiver.transport.receive(N3) == []
    waited = loop.time() - started
    assert LIMITS.receive_wait_seconds - 0.05 <= waited <= LIMITS.receive_wait_seconds + 1.0, (
        "an empty inbox is waited on for the receive wait"
    )

    waiting = asyncio.ensure_future(receiver.transport.receive(N3))
    await asyncio.sleep(0.05)
    started = loop.time()
    await sender.transport.send([Envelope(N3, b"wake up")])
    assert [delivery.header for delivery in await waiting] == [b"wake up"]
    assert loop.time() - started < 0.5, "a waiting receive wakes when a message comes"

    # A big body waits for its reader in the store (a small one may come with its message).
    await sender.transport.send([Envelope(N1, b"kept", big)])
    (kept,) = await receiver.transport.receive(N1)
    await sender.transport.send([Envelope(N1, b"lost", b"body")])
    await asyncio.sleep(LIMITS.message_ttl_seconds + MARGIN)
    assert kept.body is not None
    assert await kept.body.read() is None, "a big body expires unread"
    assert await receiver.transport.receive(N1) == [], "a message expires unread"


async def check_a_closed_backend_fails(store: Store) -> None:
    backend = store.backend()
    await backend.close()
    with pytest.raises(BackendError):
        await backend.directory.count()
    with pytest.raises(BackendError):
        await backend.members.beat(N1)


CHECKS = [
    check_claims_are_numbered_in_order,
    check_a_new_camera_past_max_cameras_is_refused,
    check_a_camera_that_never_answered_expires,
    check_status_lands_only_at_the_home,
    check_parked_work_is_taken_once,
    check_parked_work_is_adopted_only_while_nobody_is_home,
    check_the_polls_of_a_home_that_died_end_at_its_last_beat,
    check_read_page_and_count,
    check_beats_liveness_and_epoch,
    check_a_node_that_stopped_beating_keeps_its_last_beat,
    check_a_beat_carries_the_nodes_note,
    check_messages_and_bodies,
    check_a_closed_backend_fails,
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_backend_contract(run_check: Callable[[Check], None], check: Check) -> None:
    assert inspect.iscoroutinefunction(check)
    run_check(check)


# ---------------------------------------------------------------- the memory store's faults


def run_memory(check: Callable[[MemoryStore], Awaitable[None]]) -> None:
    async def main() -> None:
        await check(MemoryStore(LIMITS, wall_clock))

    run_virtual(main)


def test_memory_store_down_and_refusing_writes() -> None:
    async def check(store: MemoryStore) -> None:
        backend = store.backend()
        await backend.directory.claim(["cam"], N1, again=False)
        store.set_down(True)
        with pytest.raises(BackendError):
            await backend.directory.read(["cam"])
        with pytest.raises(BackendError):
            await backend.transport.receive(N1)
        store.set_down(False)
        store.set_refusing_writes(True)
        with pytest.raises(BackendError):
            await backend.directory.claim(["cam"], N1, again=True)
        with pytest.raises(BackendError):
            await backend.transport.send([Envelope(N1, b"x")])
        with pytest.raises(BackendError):
            await backend.members.beat(N1)
        assert await entry_of(backend, "cam") is not None, "reads still work"
        await backend.members.leave(N1)
        store.set_refusing_writes(False)
        await backend.members.beat(N1)

    run_memory(check)


def test_memory_store_cut_off_holds_that_node_calls_until_reconnected() -> None:
    async def check(store: MemoryStore) -> None:
        mine, other = store.backend(), store.backend()
        await mine.members.beat(N1)
        await other.members.beat(N2)
        store.cut_off(N1, True)
        hung = asyncio.ensure_future(mine.directory.count())
        receiving = asyncio.ensure_future(mine.transport.receive(N1))
        await asyncio.sleep(30)
        assert not hung.done(), "a call that names no node hangs too (the backend knows its node)"
        assert not receiving.done()
        assert (await other.members.beat(N2)).alive == frozenset({N2}), "N1 could not beat"
        await other.transport.send([Envelope(N1, b"while away")])
        store.cut_off(N1, False)
        assert await hung == 0
        assert [delivery.header for delivery in await receiving] == [b"while away"]

    run_memory(check)


def test_memory_store_drops_delays_and_reorders_messages() -> None:
    async def check(store: MemoryStore) -> None:
        backend = store.backend()
        store.drop_messages(1.0)
        await backend.transport.send([Envelope(N1, b"lost")])
        assert await backend.transport.receive(N1) == []
        store.drop_messages(0.0)
        store.delay_messages(0.5)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        headers = [str(index).encode() for index in range(20)]
        await backend.transport.send([Envelope(N1, header) for header in headers])
        got: list[bytes] = []
        while len(got) < len(headers):
            got += [delivery.header for delivery in await backend.transport.receive(N1)]
            assert loop.time() - sent <= 0.5 + 1e-6, "a message is at most that late"
        assert sorted(got) == sorted(headers)
        assert got != headers, "delayed messages come out of order"

    run_memory(check)


def test_memory_store_forgets_what_expired() -> None:
    async def check(store: MemoryStore) -> None:
        backend = store.backend()
        await backend.directory.claim(["a", "b"], N1, again=False)
        assert await backend.directory.park("b", N1, b"work")
        await backend.members.beat(N1)
        await backend.transport.send([Envelope(N2, b"h", b"body")])
        assert store.key_count() > 1
        await asyncio.sleep(
            max(
                LIMITS.unanswered_retention_seconds + POLLING_EXTRA,
                LIMITS.message_ttl_seconds,
                LIMITS.node_timeout_seconds,
            )
            + 1
        )
        assert store.key_count() == 1, "only the epoch is left"

    run_memory(check)
