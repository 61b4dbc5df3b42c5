"""The shared store in one process: several nodes in one event loop (tests, the simulation).

``MemoryStore`` plays the part of Redis for every node of a test; each node gets
its own ``MemoryBackend`` (``store.backend()``), with the semantics
``server.cluster.backend`` states. Nothing here does real I/O: every call passes
through ``MemoryStore._io``, the one point where faults are injected, drawn from
the ``random.Random`` the test passes in so that a run can be replayed:

- ``flush()``: the store loses everything and gets a new epoch (Redis restarted empty);
- ``set_down(True)``: every call raises ``BackendError``;
- ``set_refusing_writes(True)``: calls that add data raise ``BackendError`` (maxmemory);
- ``cut_off(incarnation, True)``: that node's calls hang until it is reconnected
  (a paused node, a partition);
- ``delay_messages(s)``, ``drop_messages(p)``: each message is delivered up to ``s``
  seconds late (a receive batch then comes in shuffled order), or lost with probability ``p``;
- ``set_latency(s)``: each call takes up to ``s`` seconds.

A body of at most ``inline_body_bytes`` travels inside its message, as the Redis
transport's small ones do; a bigger one is kept apart, to be read (and to expire)
on its own.

Times are the ``wall_clock`` the store is given (seen times, expiry); waits use the
event loop's clock, so a loop with virtual time runs the store in virtual time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import random
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field, replace

from .backend import (
    BEATS_KEPT_AT_LEAST_SECONDS,
    BEATS_KEPT_TIMEOUTS,
    Backend,
    BackendError,
    Beat,
    Body,
    CameraEntry,
    Claim,
    Delivery,
    Directory,
    Envelope,
    InlineBody,
    Members,
    StatusWrite,
    StoreLimits,
    Transport,
    Written,
)


@dataclass(slots=True)
class _Entry:
    entry: CameraEntry
    #: the incarnation that made the latest claim (the home, unless it parked the camera)
    claimer: str
    answered: bool
    expires: float


@dataclass(slots=True)
class _Message:
    header: bytes
    body: int | None  # a key of ``_bodies``
    size: int
    due: float
    expires: float
    #: a body that travels inside the message
    inline: bytes | None = None


@dataclass(slots=True)
class _Faults:
    down: bool = False
    refusing_writes: bool = False
    delay: float = 0.0
    drop: float = 0.0
    latency: float = 0.0
    cut: dict[str, asyncio.Event] = field(default_factory=dict)


class MemoryStore:
    """The data every node shares, and the faults the test injects into it."""

    def __init__(
        self,
        limits: StoreLimits,
        wall_clock: Callable[[], float],
        rng: random.Random | None = None,
        *,
        inline_body_bytes: int = 0,
    ) -> None:
        self.limits = limits
        self.inline_body_bytes = inline_body_bytes
        self._clock = wall_clock
        self._rng = rng or random.Random(0)
        self._faults = _Faults()
        #: the directory's writes so far, one per camera a claim or status write names
        self.camera_writes = 0
        self._epochs = itertools.count(1)
        self._keys = itertools.count(1)
        self._clear()
        self._woken = asyncio.Event()

    def _clear(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._parked: dict[str, tuple[bytes, float]] = {}
        self._beats: dict[str, float] = {}
        #: each node's last beat, kept as long as Redis keeps the beats' sorted set
        self._last_beats: dict[str, float] = {}
        self._notes: dict[str, bytes] = {}
        self._inboxes: dict[str, list[_Message]] = {}
        self._bodies: dict[int, tuple[bytes, float]] = {}
        self.epoch = f"epoch-{next(self._epochs)}"

    def backend(self) -> MemoryBackend:
        return MemoryBackend(self)

    # ------------------------------------------------------------------ faults

    def flush(self) -> None:
        """Lose everything: Redis restarted empty (a new epoch)."""
        self._clear()
        self._wake()

    def set_down(self, down: bool) -> None:
        self._faults.down = down
        self._wake()

    def set_refusing_writes(self, refusing: bool) -> None:
        self._faults.refusing_writes = refusing

    def cut_off(self, node: str, cut: bool) -> None:
        """``node``'s calls hang from now on (``cut``), or go on again."""
        if cut:
            self._faults.cut.setdefault(node, asyncio.Event())
        elif (event := self._faults.cut.pop(node, None)) is not None:
            event.set()

    def delay_messages(self, max_seconds: float) -> None:
        self._faults.delay = max_seconds

    def drop_messages(self, probability: float) -> None:
        self._faults.drop = probability

    def set_latency(self, max_seconds: float) -> None:
        self._faults.latency = max_seconds

    def key_count(self) -> int:
        """The keys Redis would hold now (the epoch one included)."""
        self._expire()
        kept: tuple[Sized, ...] = (
            self._entries,
            self._parked,
            self._beats,
            self._inboxes,
            self._bodies,
        )
        return 1 + sum(map(len, kept))

    # ------------------------------------------------------------------ internals

    async def _io(self, node: str, *, write: bool = False) -> float:
        """One round trip for ``node``: the faults, then the wall-clock time of the call."""
        faults = self._faults
        await asyncio.sleep(self._rng.uniform(0, faults.latency) if faults.latency else 0)
        while (cut := faults.cut.get(node)) is not None:
            await cut.wait()
        if faults.down:
            raise BackendError("the store is down (connection refused)")
        if write and faults.refusing_writes:
            raise BackendError("the store refused a write (OOM command not allowed)")
        now = self._clock()
        self._expire(now)
        return now

    def _expire(self, now: float | None = None) -> None:
        """Forget whatever outlived its time (the store holds nothing expired)."""
        now = self._clock() if now is None else now
        for camera_id in [c for c, held in self._entries.items() if held.expires <= now]:
            del self._entries[camera_id]
        for camera_id in [c for c, (_, expires) in self._parked.items() if expires <= now]:
            del self._parked[camera_id]
        timeout = self.limits.node_timeout_seconds
        for node in [n for n, beat in self._beats.items() if beat + timeout <= now]:
            del self._beats[node]
            self._notes.pop(node, None)
        kept = max(timeout * BEATS_KEPT_TIMEOUTS, BEATS_KEPT_AT_LEAST_SECONDS)
        for node in [n for n, beat in self._last_beats.items() if beat + kept <= now]:
            del self._last_beats[node]
        for key in [k for k, (_, expires) in self._bodies.items() if expires <= now]:
            del self._bodies[key]
        for node, inbox in list(self._inboxes.items()):
            inbox[:] = [message for message in inbox if message.expires > now]
            if not inbox:
                del self._inboxes[node]

    def _wake(self) -> None:
        self._woken.set()
        self._woken = asyncio.Event()

    def _seq(self, held: _Entry | None, now: float) -> int:
        return max(0 if held is None else held.entry.seq + 1, int(now * 1e6))

    def _retention(self, answered: bool, polling: bool) -> float:
        limits = self.limits
        kept = (
            limits.answered_retention_seconds if answered else limits.unanswered_retention_seconds
        )
        return kept + limits.status_refresh_seconds if polling else kept


class _MemoryBody(Body):
    def __init__(self, store: MemoryStore, node: str, key: int, size: int) -> None:
        self._store = store
        self._node = node
        self._key = key
        self.size = size

    async def read(self) -> bytes | None:
        await self._store._io(self._node)
        found = self._store._bodies.pop(self._key, None)
        return None if found is None else found[0]


class MemoryBackend(Backend, Directory, Members, Transport):
    """One node's connection to a ``MemoryStore``: the three interfaces in one object.

    It learns which incarnation it serves from the first call that names its own
    node (so that ``MemoryStore.cut_off`` also holds up the calls that name none).
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.node = ""
        self._closed = False
        self.directory = self.members = self.transport = self

    async def _io(self, node: str = "", *, write: bool = False) -> float:
        if self._closed:
            raise BackendError("the connection to the store is closed")
        self.node = self.node or node
        return await self.store._io(self.node or node, write=write)

    async def close(self) -> None:
        self._closed = True

    # ------------------------------------------------------------------ directory

    async def claim(self, camera_ids: Sequence[str], node: str, *, again: bool) -> list[Claim]:
        now = await self._io(node, write=True)
        store = self.store
        store.camera_writes += len(camera_ids)
        claims: list[Claim] = []
        for camera_id in camera_ids:
            held = store._entries.get(camera_id)
            if held is None and len(store._entries) >= store.limits.max_cameras:
                claims.append(Claim("", b"", 0, refused=True))
                continue
            seq = store._seq(held, now)
            seen = int(now * 1000)
            if held is not None and again and held.entry.home == node:
                held.entry = replace(held.entry, seen_ms=seen, seq=seq)
                claims.append(Claim(node, b"", seq))
            else:
                old = "" if held is None else held.entry.home
                parked = store._parked.pop(camera_id, (b"", 0.0))[0] if not old else b""
                entry = CameraEntry(camera_id, node, seen, True, 0, 0, False, seq)
                if held is not None:
                    entry = replace(held.entry, home=node, seen_ms=seen, polling=True, seq=seq)
                held = _Entry(entry, node, held is not None and held.answered, 0.0)
                store._entries[camera_id] = held
                claims.append(Claim(old, parked, seq))
            held.expires = now + store._retention(held.answered, polling=True)
        return claims

    async def write_status(self, node: str, writes: Sequence[StatusWrite]) -> list[Written]:
        now = await self._io(node, write=True)
        store = self.store
        store.camera_writes += len(writes)
        written: list[Written] = []
        for write in writes:
            status = write.status
            held = store._entries.get(status.camera_id)
            if (
                held is not None
                and held.claimer != node
                and (held.entry.home or held.entry.seq > write.seq)
            ):
                written.append(Written(held.entry.home, held.entry.seq))
                continue
            seq = held.entry.seq if held is not None and held.entry.home else store._seq(held, now)
            seen = int((now if status.last_seen is None else status.last_seen) * 1000)
            _, _, _, polling, waiting, in_flight = status
            entry = CameraEntry(
                status.camera_id, node, seen, polling, waiting, in_flight, write.expect, seq
            )
            expires = now + store._retention(write.answered, polling)
            store._entries[status.camera_id] = _Entry(entry, node, write.answered, expires)
            written.append(Written(node, seq))
        return written

    async def end_polls(self, home: str, seen: float) -> None:
        now = await self._io(write=True)
        store = self.store
        for camera_id, held in list(store._entries.items()):
            entry = held.entry
            if entry.home != home or not entry.polling:
                continue
            seen_ms = max(entry.seen_ms or 0, int(seen * 1000))
            expires = seen_ms / 1000 + store._retention(held.answered, False)
            if expires <= now:
                del store._entries[camera_id]
            else:
                held.entry = replace(entry, polling=False, seen_ms=seen_ms)
                held.expires = expires

    async def park(self, camera_id: str, node: str, work: bytes) -> bool:
        now = await self._io(node, write=True)
        store = self.store
        held = store._entries.get(camera_id)
        if held is None or held.entry.home != node:
            return False
        held.entry = replace(held.entry, home="", polling=False)
        store._parked[camera_id] = (work, now + store.limits.message_ttl_seconds)
        return True

    async def adopt(self, camera_id: str, node: str) -> Claim:
        now = await self._io(node, write=True)
        store = self.store
        held = store._entries.get(camera_id)
        if held is None or held.entry.home:
            home = "" if held is None else held.entry.home
            return Claim(home, b"", 0 if held is None else held.entry.seq, refused=True)
        store.camera_writes += 1
        seq = store._seq(held, now)
        held.entry = replace(held.entry, home=node, seq=seq)
        held.claimer = node
        return Claim("", store._parked.pop(camera_id, (b"", 0.0))[0], seq)

    async def read(self, camera_ids: Sequence[str]) -> list[CameraEntry | None]:
        await self._io()
        entries = self.store._entries
        return [None if (held := entries.get(c)) is None else held.entry for c in camera_ids]

    async def page(self, prefix: str, after: str | None, count: int) -> list[str]:
        await self._io()
        ids = sorted(self.store._entries)
        start = bisect.bisect_left(ids, prefix)
        if after is not None:
            start = max(start, bisect.bisect_right(ids, after))
        found = itertools.takewhile(lambda camera_id: camera_id.startswith(prefix), ids[start:])
        return list(itertools.islice(found, count))

    async def count(self) -> int:
        await self._io()
        return len(self.store._entries)

    async def sweep(self, share: float) -> None:
        await self._io()  # forgets what expired

    # ------------------------------------------------------------------ members

    async def beat(self, node: str, note: bytes = b"") -> Beat:
        now = await self._io(node, write=True)
        store = self.store
        store._beats[node] = now
        store._last_beats[node] = now
        store._notes[node] = note
        half = store.limits.node_timeout_seconds / 2
        alive = frozenset(n for n, beat in store._beats.items() if now - beat <= half)
        return Beat(alive, store.epoch)

    async def is_alive(self, node: str) -> bool:
        now = await self._io()
        beat = self.store._beats.get(node)
        return beat is not None and now - beat <= self.store.limits.node_timeout_seconds / 2

    async def last_beat(self, node: str) -> float | None:
        await self._io()
        return self.store._last_beats.get(node)

    async def notes(self, nodes: Sequence[str]) -> list[bytes | None]:
        await self._io()
        store = self.store
        return [store._notes.get(node) if node in store._beats else None for node in nodes]

    async def leave(self, node: str) -> None:
        await self._io(node)
        self.store._beats.pop(node, None)
        self.store._last_beats.pop(node, None)
        self.store._notes.pop(node, None)

    # ------------------------------------------------------------------ transport

    async def send(self, envelopes: Sequence[Envelope]) -> None:
        now = await self._io(write=True)
        store = self.store
        faults = store._faults
        ttl = store.limits.message_ttl_seconds
        for envelope in envelopes:
            if faults.drop and store._rng.random() < faults.drop:
                continue
            key = inline = None
            body = envelope.body
            if (
                body is not None
                and store.inline_body_bytes > 0
                and len(body) <= store.inline_body_bytes
            ):
                inline = body
            elif body is not None:
                key = next(store._keys)
                store._bodies[key] = (body, now + ttl)
            delay = store._rng.uniform(0, faults.delay) if faults.delay else 0.0
            size = 0 if body is None else len(body)
            message = _Message(envelope.header, key, size, now + delay, now + ttl, inline)
            store._inboxes.setdefault(envelope.to, []).append(message)
        store._wake()

    async def receive(self, node: str) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.store.limits.receive_wait_seconds
        while True:
            now = await self._io(node)
            store = self.store
            inbox = store._inboxes.get(node, [])
            ready = [message for message in inbox if message.due <= now]
            if ready:
                inbox[:] = [message for message in inbox if message.due > now]
                if store._faults.delay:
                    store._rng.shuffle(ready)
                return [self._delivery(message) for message in ready]
            wait = deadline - loop.time()
            if wait <= 0:
                return []
            if inbox:  # a delayed message: come back when it is due
                wait = min(wait, min(message.due for message in inbox) - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0)):
                    await store._woken.wait()

    def _delivery(self, message: _Message) -> Delivery:
        if message.inline is not None:
            return Delivery(message.header, InlineBody(message.inline))
        if message.body is None:
            return Delivery(message.header)
        return Delivery(
            message.header, _MemoryBody(self.store, self.node, message.body, message.size)
        )
