"""A cluster in one virtual-time event loop: nodes on one ``MemoryStore``, cameras,
callers and faults, all drawn from one seed, and the invariants the protocol promises.

The world speaks to each ``ClusterNode`` exactly as the HTTP layer does (poll,
fetch_logs, receive_result with the body scanner), with each request as a task on
its node, so that killing a node drops its connections. Every decision comes from
``World.rng`` and every event goes into ``World.trace`` (virtual time, text), so a
seed replays exactly. Violations are collected with the virtual time they happened.

Invariants (the letters the brief uses):

- (a) a ``/logs`` answer holds only its own camera's entries, exactly those with
  ``start <= timestamp <= end``, in the camera's order;
- (b) every caller ends, with 200, 503 (``CameraOffline``, ``QueueFull``,
  ``ShuttingDown``, ``ClusterUnavailable``) or 504 (``CameraTimeout``), within
  ``CONNECT + RESPONSE + NODE_TIMEOUT + 2`` s of its arrival (callers on a node that
  was killed or stopped lose their connection: they are exempt);
- (c) once quiet, every camera serves a caller at every node (200, its exact slice),
  and at most one node holds a poll for a camera;
- (d) a poll held at one node while the camera polls again (anywhere) ends within
  1 s, when the cluster was calm (no fault within a hold plus a node timeout); and
  every poll ends within a hold plus a second when calm;
- (e) after the quiet period and a sweep, each node's waiters, refs and tasks are
  back to a small bound, and the store's keys are bounded by the fleet's size;
- (f) a 504 blames a camera that took a command: one of its polls carried a command
  after the caller arrived and at least ``RESPONSE`` s before the 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from server.cluster import ClusterConfig, ClusterNode, ClusterUnavailable
from server.cluster.backend import StoreLimits
from server.cluster.memory import MemoryStore
from server.relay import (
    CameraOffline,
    CameraTimeout,
    Command,
    PollSuperseded,
    QueueFull,
    Receipt,
    RegistryFull,
    RelayConfig,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from server.relay.logscan import ResultScanner

T = TypeVar("T")
Entry = dict[str, Any]

#: what one read of an upload's body takes at most (as ``server.http.body_reader``)
READ_CHUNK_BYTES = 64 * 1024
ENTRIES_PER_CAMERA = 12


@dataclass(frozen=True, slots=True)
class SimConfig:
    nodes: int = 3
    cameras: int = 4
    poll_hold: float = 3.0
    connect: float = 2.0
    response: float = 3.0
    node_timeout: float = 2.0
    shutdown_timeout: float = 2.0
    #: virtual seconds of traffic and faults before the quiet period
    traffic_seconds: float = 120.0
    #: ``/logs`` callers per virtual second during the traffic
    caller_rate: float = 2.0
    max_cameras: int = 64
    #: each call to the store takes up to this long
    store_latency: float = 0.005
    #: bodies up to this size travel inside their messages, as Redis sends them (a result
    #: is then taken as it is read); 0 keeps every body apart (read later, it may expire)
    inline_body_bytes: int = 0

    def relay(self) -> RelayConfig:
        return RelayConfig(
            poll_hold_seconds=self.poll_hold,
            connect_timeout_seconds=self.connect,
            response_timeout_seconds=self.response,
            max_cameras=self.max_cameras,
            session_retention_seconds=60.0,
        )

    def cluster(self, name: str) -> ClusterConfig:
        return ClusterConfig(
            prefix="sim",
            node=name,
            node_timeout_seconds=self.node_timeout,
            shutdown_timeout_seconds=self.shutdown_timeout,
        )

    def limits(self) -> StoreLimits:
        relay = self.relay()
        return StoreLimits(
            node_timeout_seconds=self.node_timeout,
            max_cameras=self.max_cameras,
            answered_retention_seconds=relay.session_retention_seconds,
            unanswered_retention_seconds=relay.unanswered_retention_seconds,
            message_ttl_seconds=relay.longest_logs_wait,
        )

    @property
    def caller_deadline(self) -> float:
        """(b): how long after its arrival a caller has an answer at the latest."""
        return self.connect + self.response + self.node_timeout + 2.0

    @property
    def settle(self) -> float:
        """How long a fault's effects may last once it ended (a hold and a node timeout)."""
        return self.poll_hold + self.node_timeout


def camera_log(index: int) -> list[Entry]:
    """Camera ``index``'s log: distinct entries naming the camera; odd cameras' timestamps
    are out of order, and every camera's overlap the others' (only the text tells)."""
    entries: list[Entry] = []
    for k in range(ENTRIES_PER_CAMERA):
        step = (k * 7) % ENTRIES_PER_CAMERA if index % 2 else k
        timestamp: float | int = 1000 + step if k % 3 else 1000.5 + step
        entries.append({"timestamp": timestamp, "description": f"cam-{index} event {k}"})
    return entries


def inside(entries: list[Entry], time_range: TimeRange) -> list[Entry]:
    low = -float("inf") if time_range.start is None else time_range.start
    high = float("inf") if time_range.end is None else time_range.end
    return [entry for entry in entries if low <= entry["timestamp"] <= high]


# ---------------------------------------------------------------- records


@dataclass(slots=True)
class CallerRecord:
    number: int
    camera: str
    node: str
    time_range: TimeRange
    arrived: float
    ended: float | None = None
    #: "200", "503 CameraOffline", "504 CameraTimeout", "dropped", or what went wrong
    outcome: str = "running"

    def __str__(self) -> str:
        bounds = f"[{self.time_range.start}, {self.time_range.end}]"
        return (
            f"caller #{self.number} ({self.camera} at {self.node}, range {bounds}, "
            f"arrived t={self.arrived:.3f})"
        )


@dataclass(slots=True)
class PollRecord:
    camera: str
    node: str
    started: float
    ended: float | None = None
    outcome: str = "held"
    #: when the camera polled again while this one was held
    superseded_at: float | None = None
    command: Command | None = None


@dataclass(slots=True)
class NodeSlot:
    """One ``NODE_NAME``: the incarnation running under it now, if any."""

    name: str
    node: ClusterNode | None = None
    #: "down", "up", "paused" (cut off from the store, no requests routed), "stopping"
    state: str = "down"
    requests: dict[asyncio.Task[Any], None] = field(default_factory=dict)

    @property
    def routable(self) -> bool:
        return self.state == "up" and self.node is not None


class Violation(AssertionError):
    pass


class TraceLog(logging.Handler):
    """The nodes' warnings, in the trace at the virtual time they were logged."""

    def __init__(self, world: World) -> None:
        super().__init__(logging.WARNING)
        self._world = world

    def emit(self, record: logging.LogRecord) -> None:
        self._world.note(f"log {record.levelname} {record.getMessage()}")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        logger = logging.getLogger("camrelay")
        logger.addHandler(self)
        try:
            yield
        finally:
            logger.removeHandler(self)


# ---------------------------------------------------------------- the world


class World:
    def __init__(self, seed: int = 0, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.store = MemoryStore(
            self.config.limits(),
            self.wall,
            random.Random(f"store-{seed}"),
            inline_body_bytes=self.config.inline_body_bytes,
        )
        self.store.set_latency(self.config.store_latency)
        self.slots = [NodeSlot(f"node-{index}") for index in range(self.config.nodes)]
        self.cameras = [f"cam-{index}" for index in range(self.config.cameras)]
        self.logs = {camera: camera_log(index) for index, camera in enumerate(self.cameras)}
        self.trace: list[tuple[float, str]] = []
        self.violations: list[tuple[float, str]] = []
        self.callers: list[CallerRecord] = []
        self.polls: list[PollRecord] = []
        #: per camera, its polls not yet ended (oldest first)
        self.open_polls: dict[str, list[PollRecord]] = {camera: [] for camera in self.cameras}
        #: [start, end] of each fault, its effects included (no calm inside; a fault under
        #: way ends at infinity)
        self.turbulence: list[list[float]] = []
        #: cameras do only well-behaved things (the quiet period, focused scenarios)
        self.steady = False
        self.stopping = False
        #: scenarios: where each camera's requests go (else a random routable node)
        self.route: Callable[[str], NodeSlot | None] | None = None
        #: scenarios: how long a camera takes to answer (else up to 0.3 s)
        self.answer_delay: float | None = None
        self._tasks: dict[asyncio.Task[Any], None] = {}
        self._node_fault = asyncio.Lock()
        self._store_fault = asyncio.Lock()
        #: store faults' windows, with their settling time
        self.store_turbulence: list[list[float]] = []
        #: cameras that posted a result without ``requestId`` in such a window, and when
        self.ambiguous_results: dict[str, float] = {}

    # ------------------------------------------------------------------ basics

    def now(self) -> float:
        return self.loop.time()

    def wall(self) -> float:
        from tests.sim.loop import EPOCH

        return EPOCH + self.loop.time()

    def note(self, text: str) -> None:
        self.trace.append((round(self.now(), 6), text))

    def violate(self, text: str) -> None:
        self.note(f"VIOLATION {text}")
        self.violations.append((self.now(), text))

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task of the world's (a camera, a caller, a fault): cancelled at the end."""
        task = self.loop.create_task(coro)
        self._tasks[task] = None
        task.add_done_callback(self._tasks.pop)
        return task

    def request(self, slot: NodeSlot, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A request connected to ``slot``'s node: killing the node drops it."""
        task = self.loop.create_task(coro)
        requests = slot.requests
        requests[task] = None
        task.add_done_callback(requests.pop)
        return task

    def pick_slot(self, exclude: NodeSlot | None = None) -> NodeSlot | None:
        slots = [slot for slot in self.slots if slot.routable and slot is not exclude]
        return self.rng.choice(slots) if slots else None

    def calm(self, start: float, end: float) -> bool:
        return not any(s < end and start < e for s, e in self.turbulence)

    @contextlib.contextmanager
    def fault(self, text: str, settle: float | None = None) -> Iterator[None]:
        """A fault's window; no calm until ``settle`` (a hold and a node timeout) after it."""
        window = [self.now() - 0.001, float("inf")]
        self.turbulence.append(window)
        self.note(f"fault {text} begins")
        try:
            yield
        finally:
            self.note(f"fault {text} ends")
            window[1] = self.now() + (self.config.settle if settle is None else settle)

    # ------------------------------------------------------------------ nodes

    async def start_node(self, slot: NodeSlot) -> ClusterNode:
        config = self.config
        node = ClusterNode(
            config.relay(), config.cluster(slot.name), self.store.backend(), wall_clock=self.wall
        )
        await node.start()
        slot.node, slot.state = node, "up"
        self.note(f"{slot.name} starts as {node.incarnation}")
        return node

    async def kill(self, slot: NodeSlot) -> None:
        """SIGKILL: its connections drop, then its tasks stop (no goodbye)."""
        node = slot.node
        assert node is not None
        slot.state = "down"
        self.note(f"{slot.name} killed ({node.incarnation})")
        await self._drop_requests(slot)
        await node.halt()
        slot.node = None

    async def stop(self, slot: NodeSlot) -> None:
        """SIGTERM: no new requests, the node answers what it holds, then it exits."""
        node = slot.node
        assert node is not None
        slot.state = "stopping"
        self.note(f"{slot.name} stops ({node.incarnation})")
        node.close()
        if slot.requests:
            await asyncio.wait(list(slot.requests), timeout=self.config.shutdown_timeout)
        detach = getattr(node, "detach", None) or node.stop  # the API names it either way
        await detach()
        self.note(f"{slot.name} stopped, {len(slot.requests)} requests cut")
        slot.state = "down"
        await self._drop_requests(slot)
        slot.node = None

    async def pause(self, slot: NodeSlot, seconds: float) -> None:
        """A stopped VM: cut off from the store, no requests reach it; then it resumes."""
        node = slot.node
        assert node is not None
        with self.fault(f"pause {slot.name}"):
            slot.state = "paused"
            self.store.cut_off(node.incarnation, True)
            self.note(f"{slot.name} paused ({node.incarnation})")
            await asyncio.sleep(seconds)
            self.store.cut_off(node.incarnation, False)
            if slot.node is node and slot.state == "paused":
                slot.state = "up"
            self.note(f"{slot.name} resumes")

    async def _drop_requests(self, slot: NodeSlot) -> None:
        tasks = list(slot.requests)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ callers

    async def call(self, camera: str, slot: NodeSlot, time_range: TimeRange) -> CallerRecord:
        """A ``/logs`` caller at ``slot``; checks (a) and records its outcome for (b)."""
        node = slot.node
        assert node is not None
        record = CallerRecord(len(self.callers) + 1, camera, slot.name, time_range, self.now())
        self.callers.append(record)
        self.note(f"{record} arrives")
        task = self.request(slot, self._fetch(node, camera, time_range))
        await asyncio.wait([task])
        record.ended = self.now()
        if task.cancelled():
            record.outcome = "dropped"
        elif (error := task.exception()) is not None:
            record.outcome = outcome_of(error)
            if not record.outcome.startswith(("503", "504")):
                self.violate(f"(b) {record} ended {record.outcome}: {error!r}")
        else:
            record.outcome = "200"
            self._check_answer(record, task.result())
        self.note(f"caller #{record.number} ends {record.outcome}")
        if record.outcome.startswith("504") and not self._camera_took_a_command_for(record):
            self.violate(
                f"(f) {record} got 504 at t={record.ended:.3f}, but no poll carried a command "
                f"to {camera} between its arrival and {self.config.response:g} s before"
            )
        if record.ended - record.arrived > self.config.caller_deadline and (
            record.outcome != "dropped"
        ):
            self.violate(
                f"(b) {record} took {record.ended - record.arrived:.3f} s "
                f"(> {self.config.caller_deadline:g} s), then {record.outcome}"
            )
        return record

    def _camera_took_a_command_for(self, record: CallerRecord) -> bool:
        assert record.ended is not None
        latest = record.ended - self.config.response + 0.001
        return any(
            poll.camera == record.camera
            and poll.outcome == "command"
            and poll.ended is not None
            and record.arrived <= poll.ended <= latest
            for poll in self.polls
        )

    async def _fetch(self, node: ClusterNode, camera: str, time_range: TimeRange) -> list[Entry]:
        selection = await node.fetch_logs(camera, time_range)
        try:
            body = b"".join(selection.chunks(b"[", b"]"))
        finally:
            selection.release()
        entries: list[Entry] = orjson.loads(body)
        return entries

    def _check_answer(self, record: CallerRecord, entries: list[Entry]) -> None:
        log = self.logs.get(record.camera)
        strangers = [
            entry
            for entry in entries
            if not str(entry.get("description", "")).startswith(f"{record.camera} ")
        ]
        if strangers:
            self.violate(f"(a) {record} got entries of another camera: {strangers[:3]}")
        elif log is None:
            self.violate(f"(a) {record} got 200 for a camera that never polled: {entries[:3]}")
        elif entries != (expected := inside(log, record.time_range)):
            if self._ambiguous(record, entries, log):
                self.note(f"{record} got another command's slice of its camera: tolerated")
                return
            self.violate(
                f"(a) {record} got {len(entries)} entries, expected {len(expected)}: "
                f"{[e['description'] for e in entries]} != {[e['description'] for e in expected]}"
            )

    def store_troubled(self, when: float) -> bool:
        """``when`` falls in a store fault's window (or the settling after it)."""
        return any(start <= when <= end for start, end in self.store_turbulence)

    def _ambiguous(self, record: CallerRecord, entries: list[Entry], log: list[Entry]) -> bool:
        """The one case where a caller may get a slice of another command of its own
        camera: a result without ``requestId`` posted while the store failed. Nodes that
        cannot reach the store cannot tell which of them handed the camera the command it
        answered (``docs/CLUSTER.md``, "When things fail"); entries of another camera, or
        entries the camera never sent, are never tolerated."""
        posted_at = self.ambiguous_results.get(record.camera)
        return (
            posted_at is not None
            and posted_at >= record.arrived
            and all(entry in log for entry in entries)
        )

    def random_range(self) -> TimeRange:
        rng = self.rng
        low, high = 998.0, 1000.0 + ENTRIES_PER_CAMERA + 1
        start = rng.choice([None, round(rng.uniform(low, high) * 2) / 2])
        end = rng.choice([None, round(rng.uniform(low, high) * 2) / 2])
        if start is not None and end is not None and start > end:
            start, end = end, start
        return TimeRange(start, end)

    # ------------------------------------------------------------------ camera side

    def start_poll(self, camera: str, slot: NodeSlot) -> tuple[PollRecord, asyncio.Task[Any]]:
        node = slot.node
        assert node is not None
        record = PollRecord(camera, slot.name, self.now())
        for older in self.open_polls.get(camera, []):
            if older.superseded_at is None:
                older.superseded_at = record.started
        self.open_polls.setdefault(camera, []).append(record)
        self.polls.append(record)
        self.note(f"{camera} polls {slot.name}")
        task = self.request(slot, self._poll(node, camera))
        task.add_done_callback(lambda done: self._poll_ended(record, done))
        return record, task

    @staticmethod
    async def _poll(node: ClusterNode, camera: str) -> Command | None:
        """As the view does: the node is asked in the request's own task, when it runs."""
        return await node.poll(camera)

    def _poll_ended(self, record: PollRecord, task: asyncio.Task[Any]) -> None:
        record.ended = self.now()
        self.open_polls[record.camera].remove(record)
        if task.cancelled():
            record.outcome = "dropped"
        elif (error := task.exception()) is not None:
            record.outcome = type(error).__name__
            expected = PollSuperseded | ShuttingDown | ClusterUnavailable | RegistryFull
            if not isinstance(error, expected):
                self.violate(f"a poll of {record.camera} at {record.node} raised {error!r}")
        else:
            record.command = task.result()
            record.outcome = "noop" if record.command is None else "command"
        self.note(f"{record.camera} poll at {record.node} ends {record.outcome}")
        self._check_poll(record)

    def _check_poll(self, record: PollRecord) -> None:
        assert record.ended is not None
        hold = self.config.poll_hold
        if record.outcome == "dropped":
            return
        if record.ended - record.started > hold + 1.0 and self.calm(record.started, record.ended):
            self.violate(
                f"(d) the poll of {record.camera} at {record.node} from t={record.started:.3f} "
                f"was held {record.ended - record.started:.3f} s (> hold {hold:g} s + 1 s)"
            )
        since = record.superseded_at
        if since is not None and record.ended - since > 1.0 and self.calm(since - 1, record.ended):
            self.violate(
                f"(d) the poll of {record.camera} at {record.node} from t={record.started:.3f} "
                f"ended {record.ended - since:.3f} s after a newer poll (t={since:.3f}), "
                f"with {record.outcome}"
            )

    async def post(
        self, camera: str, slot: NodeSlot, body: bytes, *, cut_after: float | None = None
    ) -> str:
        """A ``/send_logs`` at ``slot``; ``cut_after``: the camera hangs up mid-body."""
        node = slot.node
        assert node is not None
        if b'"requestId"' not in body and self.store_troubled(self.now()):
            self.ambiguous_results[camera] = self.now()
        task = self.request(slot, self._upload(node, camera, body, stall=cut_after is not None))
        if cut_after is not None:
            done, _ = await asyncio.wait([task], timeout=cut_after)
            if not done:
                task.cancel()
        await asyncio.wait([task])
        if task.cancelled():
            outcome = "dropped"
        elif (error := task.exception()) is not None:
            outcome = outcome_of(error)
            if not isinstance(error, UnknownRequest | ShuttingDown | ClusterUnavailable):
                self.violate(f"an upload of {camera} at {slot.name} raised {error!r}")
        else:
            receipt: Receipt = task.result()
            outcome = f"{receipt.outcome.value} by {receipt.callers}"
        self.note(f"{camera} posts to {slot.name}: {outcome}")
        return outcome

    async def _upload(self, node: ClusterNode, camera: str, body: bytes, *, stall: bool) -> Receipt:
        """What ``server.http.body_reader.receive_result`` does with a body."""
        node.camera_seen(camera)
        async with node.receive_result(camera, len(body)) as upload:
            scanner = ResultScanner(on_request_id=upload.check_request_id, expected_size=len(body))
            try:
                size = len(body) // 2 if stall else len(body)
                for start in range(0, size, READ_CHUNK_BYTES):
                    scanner.feed(body[start : min(start + READ_CHUNK_BYTES, size)])
                    await upload.reserve(scanner.received + scanner.index_bytes)
                    await asyncio.sleep(0)
                if stall:
                    await asyncio.sleep(3600)  # the rest never comes: the camera hangs up
            except (ConnectionError, asyncio.CancelledError):
                upload.lost()
                raise
            scanned = scanner.finish(on_release=upload.release_budget)
            return await upload.submit(scanned.request_id, scanned.result)

    def result_body(self, camera: str, command: Command, *, with_id: bool = True) -> bytes:
        logs = inside(self.logs[camera], command.time_range)
        if with_id:
            return orjson.dumps({"requestId": command.request_id, "logs": logs})
        return orjson.dumps({"logs": logs})

    async def run_camera(self, camera: str) -> None:
        """Polls a random node each time, answers what it is given (mostly well)."""
        rng = self.rng
        while not self.stopping:
            slot = self.route(camera) if self.route else self.pick_slot()
            if slot is None:
                await asyncio.sleep(0.5)
                continue
            record, task = self.start_poll(camera, slot)
            mischief = 1.0 if self.steady else rng.random()
            if mischief < 0.25:  # gives up on this poll (or thinks so) after a while
                done, _ = await asyncio.wait(
                    [task], timeout=rng.uniform(0.1, self.config.poll_hold)
                )
                if not done:
                    if mischief < 0.05:
                        task.cancel()  # its connection drops
                        await asyncio.wait([task])
                    continue  # else it is left held at the node: the camera polls elsewhere
            await asyncio.wait([task])
            if record.command is not None:
                await self.answer(camera, record.command)
            elif record.outcome in ("PollSuperseded", "ShuttingDown", "ClusterUnavailable"):
                await asyncio.sleep(0.5)
            elif record.outcome == "RegistryFull":
                await asyncio.sleep(1.0)

    async def answer(self, camera: str, command: Command) -> None:
        rng = self.rng
        delay = self.answer_delay
        await asyncio.sleep(rng.uniform(0.0, 0.3) if delay is None else delay)
        choice = 1.0 if self.steady else rng.random()
        slot = self.route(camera) if self.route else self.pick_slot()
        if slot is None or choice < 0.03:
            self.note(f"{camera} never answers {command.request_id[:8]}")
            return
        if choice < 0.08:
            await self.post(camera, slot, self.result_body(camera, command), cut_after=0.2)
            return
        body = self.result_body(camera, command, with_id=choice >= 0.16)
        await self.post(camera, slot, body)
        if 0.16 <= choice < 0.24 and (again := self.pick_slot()) is not None:
            await self.post(camera, again, body)  # the answer is sent twice

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (virtual time) until ``condition()``; a violation if it takes too long."""
        deadline = self.now() + timeout
        while not condition():
            if self.now() >= deadline:
                self.violate(f"{what}: not within {timeout:g} s")
                return
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ traffic and faults

    async def run_callers(self, until: float) -> None:
        rng = self.rng
        ghosts = 0
        while True:
            await asyncio.sleep(rng.expovariate(self.config.caller_rate))
            if self.now() >= until:
                return
            if rng.random() < 0.05:
                ghosts += 1
                camera = f"ghost-{ghosts}"
            else:
                camera = rng.choice(self.cameras)
            for _ in range(1 if rng.random() < 0.85 else rng.randint(2, 6)):
                if (slot := self.pick_slot()) is not None:
                    self.spawn(self.call(camera, slot, self.random_range()))

    async def run_faults(self, until: float) -> None:
        rng = self.rng
        faults: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self._kill_and_restart,
            self._stop_and_restart,
            self._pause_one,
            self._flush,
            self._store_down,
            self._refuse_writes,
            self._delay_messages,
            self._drop_messages,
        ]
        while True:
            await asyncio.sleep(rng.uniform(4.0, 14.0))
            if self.now() >= until:
                return
            self.spawn(rng.choice(faults)())

    async def _node_fault_slot(self) -> NodeSlot | None:
        if self._node_fault.locked() or sum(slot.routable for slot in self.slots) < 2:
            return None
        await self._node_fault.acquire()
        return self.pick_slot()

    async def _kill_and_restart(self) -> None:
        if (slot := await self._node_fault_slot()) is None:
            return
        try:
            with self.fault(f"kill {slot.name}"):
                await self.kill(slot)
                await asyncio.sleep(self.rng.choice([0.0, self.rng.uniform(0.2, 5.0)]))
                await self.start_node(slot)
        finally:
            self._node_fault.release()

    async def _stop_and_restart(self) -> None:
        if (slot := await self._node_fault_slot()) is None:
            return
        try:
            with self.fault(f"stop {slot.name}"):
                await self.stop(slot)
                await asyncio.sleep(self.rng.uniform(0.0, 3.0))
                await self.start_node(slot)
        finally:
            self._node_fault.release()

    async def _pause_one(self) -> None:
        if (slot := await self._node_fault_slot()) is None:
            return
        try:
            await self.pause(slot, self.config.node_timeout + self.rng.uniform(0.5, 3.0))
        finally:
            self._node_fault.release()

    async def _store_window(
        self,
        text: str,
        begin: Callable[[], None],
        end: Callable[[], None],
        settle: float | None = None,
    ) -> None:
        if self._store_fault.locked():
            return
        async with self._store_fault:
            with self.fault(text, settle):
                window = [self.now() - 0.001, float("inf")]
                self.store_turbulence.append(window)
                begin()
                await asyncio.sleep(self.rng.uniform(0.5, 4.0))
                end()
                window[1] = self.now() + self.config.settle

    async def _flush(self) -> None:
        await self._store_window("store flushed", self.store.flush, lambda: None)

    async def _store_down(self) -> None:
        store = self.store
        await self._store_window(
            "store down", lambda: store.set_down(True), lambda: store.set_down(False)
        )

    async def _refuse_writes(self) -> None:
        store = self.store
        await self._store_window(
            "store refuses writes",
            lambda: store.set_refusing_writes(True),
            lambda: store.set_refusing_writes(False),
        )

    async def _delay_messages(self) -> None:
        store, delay = self.store, self.rng.uniform(0.05, 0.6)
        await self._store_window(
            f"messages delayed up to {delay:.2f} s (and reordered)",
            lambda: store.delay_messages(delay),
            lambda: store.delay_messages(0.0),
            settle=delay,
        )

    async def _drop_messages(self) -> None:
        store, probability = self.store, self.rng.uniform(0.1, 0.5)
        await self._store_window(
            f"messages dropped with p={probability:.2f}",
            lambda: store.drop_messages(probability),
            lambda: store.drop_messages(0.0),
        )

    # ------------------------------------------------------------------ a whole run

    async def run(self) -> None:
        """Traffic and faults, a quiet period, a final round, then the checks."""
        config = self.config
        if config.inline_body_bytes:
            self.note(f"bodies up to {config.inline_body_bytes} bytes inside their messages")
        for slot in self.slots:
            await self.start_node(slot)
        for camera in self.cameras:
            self.spawn(self.run_camera(camera))
        until = self.now() + config.traffic_seconds
        callers = self.spawn(self.run_callers(until))
        faults = self.spawn(self.run_faults(until))
        await asyncio.wait([callers, faults])
        while self._node_fault.locked() or self._store_fault.locked():
            await asyncio.sleep(0.1)
        self.note("quiet period")
        self.steady = True
        await asyncio.sleep(max(config.settle + 3.0, config.caller_deadline + 1.0))
        await self.final_round()
        await self.check_single_poll_holder()
        await self.check_bounded()
        self.check_callers_ended()
        await self.shut_down()

    async def final_round(self) -> None:
        """(c): every camera serves a caller at every node, exactly."""
        self.note("final round")
        first = len(self.callers)
        tasks = [
            self.spawn(self.call(camera, slot, self.random_range()))
            for camera in self.cameras
            for slot in self.slots
            if slot.routable
        ]
        await asyncio.wait(tasks)
        for record in self.callers[first:]:
            if record.outcome != "200":
                self.violate(f"(c) in the final round {record} ended {record.outcome}")

    async def check_single_poll_holder(self) -> None:
        """(c): for each camera, once its poll has been held a second, one node holds it."""
        pending = list(self.cameras)
        deadline = self.now() + 4 * self.config.poll_hold
        while pending and self.now() < deadline:
            for camera in list(pending):
                held = self.open_polls[camera]
                if held and self.now() - held[-1].started >= 1.1:
                    pending.remove(camera)
                    holders = [s.name for s in self.slots if held_poll(s.node, camera)]
                    if len(held) > 1 or len(holders) > 1:
                        self.violate(
                            f"(c) {camera} has {len(held)} polls open "
                            f"({[p.node for p in held]}); nodes holding one: {holders}"
                        )
            await asyncio.sleep(0.1)

    async def check_bounded(self) -> None:
        """(e): nothing grows without bound."""
        config = self.config
        for slot in self.slots:
            if slot.node is not None:
                await slot.node.sweep()
        limit = size_limit(config)
        for slot in self.slots:
            if slot.node is None:
                continue
            sizes = slot.node.debug_sizes()
            self.note(f"{slot.name} holds {sizes}")
            for name, size in sizes.items():
                bound = limit(name)
                if bound is not None and size > bound:
                    self.violate(f"(e) {slot.name}'s {name} holds {size} (> {bound})")
        keys = self.store.key_count()
        self.note(f"the store holds {keys} keys")
        bound = store_key_bound(config)
        if keys > bound:
            self.violate(f"(e) the store holds {keys} keys (> {bound})")

    def check_callers_ended(self) -> None:
        """(b): no caller still waits long after its deadline."""
        for record in self.callers:
            if record.ended is None and self.now() - record.arrived > self.config.caller_deadline:
                self.violate(f"(b) {record} never ended")

    async def shut_down(self) -> None:
        self.stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in self.slots:
            if slot.node is not None:
                await self._drop_requests(slot)
                await slot.node.halt()
                slot.node = None

    # ------------------------------------------------------------------ reports

    def excerpt(self, at: float, before: float = 3.0, limit: int = 40) -> str:
        lines = [f"  {t:10.3f} {text}" for t, text in self.trace if at - before <= t <= at + 0.5]
        return "\n".join(lines[-limit:])

    def report(self, name: str | None = None) -> str:
        """Each violation, with the trace around the first one (``name``: a scenario's,
        else the seed and how to replay it)."""
        if not self.violations:
            return ""
        at, _ = self.violations[0]
        listed = "\n".join(f"  t={t:.3f} {text}" for t, text in self.violations[:20])
        more = len(self.violations) - 20
        bodies = "SIM_BODIES=inline " if self.config.inline_body_bytes else ""
        replay = (
            f"\nreplay: {bodies}SIM_SEED={self.seed} pytest tests/test_cluster_sim.py -k replay"
        )
        return (
            f"{name or f'seed {self.seed}'}: {len(self.violations)} violation(s)\n{listed}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + ("" if name else replay)
            + f"\ntrace before the first:\n{self.excerpt(at)}"
        )


def outcome_of(error: BaseException) -> str:
    if isinstance(error, ClusterUnavailable | CameraOffline | QueueFull | ShuttingDown):
        return f"503 {type(error).__name__}"
    if isinstance(error, CameraTimeout):
        return "504 CameraTimeout"
    if isinstance(error, UnknownRequest):
        return "404 UnknownRequest"
    return f"500 {type(error).__name__}"


def held_poll(node: ClusterNode | None, camera: str) -> bool:
    """The node holds a poll of ``camera`` (as its local relay says)."""
    relay = getattr(node, "relay", None)
    session = None if relay is None else relay.session(camera)
    return session is not None and bool(session.status().polling)


def size_limit(config: SimConfig) -> Callable[[str], int | None]:
    """(e): what a quiet node may still hold, by the name of the map.

    Waiters, refs, hosted callers, receipts awaited: none (every caller and upload of
    the final round has ended). Tasks: one per camera at most (a claim, a flush under
    way) plus a few. Anything else is kept per camera (or per node): at most the fleet.
    """

    def limit(name: str) -> int | None:
        lowered = name.lower()
        if any(word in lowered for word in ("waiter", "ref", "hosted", "receipt")):
            return 0
        if "task" in lowered:
            return config.cameras + 4
        return config.cameras + config.nodes

    return limit


def store_key_bound(config: SimConfig) -> int:
    """(e): an entry and parked work per camera, a beat and an inbox per incarnation
    still remembered (live ones, and those gone less than a message TTL ago: at most two
    per node once quiet), a body per message, and the epoch."""
    cameras, nodes = config.cameras, config.nodes
    return 1 + 2 * cameras + 2 * (2 * nodes) + cameras * nodes


def simulate(seed: int, config: SimConfig | None = None) -> World:
    """One whole run of ``seed`` on its own virtual loop; raises ``Violation`` (its message
    starts with ``seed N:``) if the run itself failed. Read ``World.report()`` for the rest."""
    from tests.sim.loop import run_virtual

    worlds: list[World] = []

    async def main() -> None:
        world = World(seed, config)
        worlds.append(world)
        with TraceLog(world).installed():
            await world.run()

    limit = (config or SimConfig()).traffic_seconds + 300.0
    try:
        run_virtual(main, seed=seed, limit=limit)
    except Exception as error:
        trace = worlds[0].excerpt(worlds[0].trace[-1][0]) if worlds and worlds[0].trace else ""
        raise Violation(
            f"seed {seed}: the run raised {error!r}\n"
            f"replay: SIM_SEED={seed} pytest tests/test_cluster_sim.py -k replay\n"
            f"trace before it:\n{trace}"
        ) from error
    return worlds[0]
