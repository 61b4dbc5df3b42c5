"""``ClusterRelay``: the relay's interface, with the camera's session at its home node.

See the package docstring for the story; this module is its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from redis.exceptions import RedisError

from ..logscan import ResultBodyError
from ..relay import (
    Caller,
    CameraOffline,
    CameraStatus,
    CameraTimeout,
    Command,
    LogResult,
    LogSelection,
    PollSuperseded,
    Receipt,
    Relay,
    RelayConfig,
    RelayError,
    RelayObserver,
    RelayStats,
    ResultOutcome,
    ResultUpload,
    SessionWork,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from ..relay.relay import FIRST_RESERVATION_BYTES
from . import messages as m
from .batch import TurnBatch
from .bus import Body, Bus, RedisDown
from .errors import ClusterUnavailable
from .membership import Membership
from .observer import ClusterObserver
from .payload import result_bytes, result_from
from .registry import CameraEntry, Claim, Registry
from .upload import ForwardedUpload

logger = logging.getLogger("camrelay.cluster")
T = TypeVar("T")

#: how long a new home waits for the old one to hand a camera's work over
HANDOVER_WAIT_SECONDS = 1.0
#: how long a node waits for the camera's home to answer a forwarded result
RECEIPT_WAIT_SECONDS = 2.0
#: a home's status changes reach Redis this often (a poll counts everywhere within 0.5 s)
FLUSH_INTERVAL_SECONDS = 0.1
#: how often callers whose camera's home died look for its new home
ORPHAN_CHECK_SECONDS = 0.25
#: a message passed on this many times is dropped (a loop between stale homes)
MAX_HOPS = 2


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    redis_url: str
    prefix: str
    node: str
    node_timeout_seconds: float
    shutdown_timeout_seconds: float


class Waiter:
    """A ``/logs`` caller whose HTTP request is on this node, wherever its work sits."""

    __slots__ = ("camera_id", "future", "home", "orphaned_at", "ref", "time_range")

    def __init__(
        self, ref: str, camera_id: str, time_range: TimeRange, future: asyncio.Future[LogResult]
    ) -> None:
        self.ref = ref
        self.camera_id = camera_id
        self.time_range = time_range
        #: the result (with a hold for this caller), or the relay error
        self.future = future
        #: the node holding its work (its camera's home)
        self.home = ""
        #: loop time its home was found dead, if it was
        self.orphaned_at: float | None = None


class ClusterRelay(Relay):
    """One node of a cluster: the local ``Relay`` for the cameras homed here, plus the
    messages that let any node serve any camera (see ``server.cluster``)."""

    def __init__(
        self,
        config: RelayConfig,
        cluster: ClusterConfig,
        observer: RelayObserver | None = None,
        cluster_observer: ClusterObserver | None = None,
    ) -> None:
        super().__init__(config, observer)
        self.node = cluster.node
        self._cluster = cluster
        self._events = cluster_observer or ClusterObserver()
        retention = config.session_retention_seconds
        self.bus = Bus(
            cluster.redis_url,
            cluster.prefix,
            cluster.node,
            key_ttl_seconds=max(config.longest_logs_wait * 2, 60.0),
            on_redis_error=self._events.redis_error,
        )
        self.registry = Registry(self.bus.redis, cluster.prefix, cluster.node, retention)
        self.members = Membership(self.bus, cluster.node_timeout_seconds)
        self._refs = (f"{self.node}/{n}" for n in itertools.count())
        #: callers whose request is here, by ref
        self._waiters: dict[str, Waiter] = {}
        #: callers queued in a session homed here (from any node), by ref
        self._homed: dict[str, tuple[str, Caller]] = {}
        #: claims waiting for the old home's handover, by camera
        self._handovers: dict[str, asyncio.Future[None]] = {}
        #: registry reads and claims, one pipeline per loop turn (``batch``)
        self._entries = TurnBatch(self.registry.read_each, self._spawn)
        self._claims_made = TurnBatch(self.registry.claim_each, self._spawn)
        self._claims_again = TurnBatch(
            functools.partial(self.registry.claim_each, again=True), self._spawn
        )
        #: claims under way (Redis written or handover awaited), done once the session exists
        self._claims: dict[str, asyncio.Future[None]] = {}
        #: claims sent to Redis and not answered yet: takeovers of these cameras wait
        self._claiming: dict[str, asyncio.Future[None]] = {}
        #: the latest claim sequence known here, by camera (this node's or a takeover's)
        self._claim_seqs: dict[str, int] = {}
        #: results forwarded to other homes, waiting for their receipt, by ref
        self._receipts: dict[str, asyncio.Future[m.Receipt]] = {}
        #: work of cameras given up while stopping, until parked in Redis
        self._parking: dict[str, SessionWork] = {}
        #: cameras whose status changed since the last write to Redis
        self._dirty: set[str] = set()
        #: cameras homed here whose claim could not be written (Redis was down)
        self._unclaimed: set[str] = set()
        #: outcomes to send, by (node, result): one message per node for a shared result
        self._outgoing_results: dict[tuple[str, LogResult], list[str]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._parking_task: asyncio.Task[None] | None = None
        self._detached = False
        self._was_up = True
        #: loop time since which heartbeats fail (Redis down), if they do
        self._down_since: float | None = None

    # ================================================================ lifecycle

    async def start(self) -> None:
        await self.members.beat()
        self.bus.start(self._handle)
        self._tasks = [
            asyncio.create_task(self._every(self.members.interval, self._beat), name="heartbeat"),
            asyncio.create_task(self._every(FLUSH_INTERVAL_SECONDS, self._flush), name="flush"),
            asyncio.create_task(
                self._every(min(ORPHAN_CHECK_SECONDS, self.members.interval), self._watch_orphans),
                name="orphans",
            ),
        ]
        logger.info("node %s joined the cluster", self.node)

    async def _every(self, interval: float, step: Callable[[], object]) -> None:
        while not self._detached:
            await asyncio.sleep(interval)
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a bug must not stop the heartbeat or the watch
                logger.exception("the cluster step %s failed", getattr(step, "__name__", step))

    async def sweep(self) -> int:
        forgotten = await super().sweep()
        for camera_id in [c for c in self._claim_seqs if c not in self._sessions]:
            if camera_id not in self._claiming:
                del self._claim_seqs[camera_id]
        return forgotten

    async def _beat(self) -> None:
        up = await self.members.beat()
        if up and not self._was_up:
            # Redis is back (perhaps empty): this node's cameras register again.
            self._dirty.update(self._sessions)
        if up:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
        self._was_up = up

    def close(self) -> None:
        """A graceful stop: polls get noop, work is parked for the camera's next home,
        this node's callers keep waiting for it until shortly before the shutdown ends."""
        if self._closed:
            return
        self._closed = True
        for camera_id in list(self._sessions):
            work = self.hand_over(camera_id, superseded=False)
            if work is not None:
                self._leave_for_next_home(camera_id, work)
        loop = asyncio.get_running_loop()
        give_up = max(self._cluster.shutdown_timeout_seconds - 0.5, 0.0)
        loop.call_later(give_up, self._fail_waiters_stopping)
        if not self._detached:
            self._parking_task = asyncio.create_task(self._park_all(), name="park")

    def _leave_for_next_home(self, camera_id: str, work: SessionWork) -> None:
        """Stopping: the camera's work waits in Redis for its next home."""
        if work.empty:
            return
        held = self._parking.get(camera_id)
        self._parking[camera_id] = work if held is None else _joined(held, work)
        self._moved_away(work, "")

    async def _park_all(self) -> None:
        await self._park_each()
        await self.members.leave()

    async def _park_each(self) -> None:
        for camera_id, work in list(self._parking.items()):
            data = orjson.dumps(m.work_json(work))
            try:
                parked = await self.registry.park(camera_id, data, self.config.longest_logs_wait)
            except (RedisError, OSError) as error:
                self.bus.failed(error)
                continue
            # Not parked: a node claimed the camera first; its takeover takes the work.
            if parked and self._parking.get(camera_id) is work:
                del self._parking[camera_id]

    def _fail_waiters_stopping(self) -> None:
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(
                    ShuttingDown("the server is shutting down; retry in a few seconds")
                )

    async def detach(self) -> None:
        """Stop talking to the cluster (at the very end of a stop; a test's "kill")."""
        if self._detached:
            return
        self._detached = True
        if self._parking_task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._parking_task
                    if self._parking:  # handed over to this node while it stopped
                        await self._park_each()
            await self.bus.flush()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py may turn a cancellation into a connection error: the loops then
            # see ``_detached`` and end.
            await asyncio.wait(tasks, timeout=2.0)
        await self.bus.close()

    @property
    def redis_up(self) -> bool:
        return self.bus.up

    def nodes_alive(self) -> int:
        return len(self.members.alive)

    # ================================================================ camera side

    async def poll(self, camera_id: str) -> Command | None:
        if self._closed:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        if camera_id not in self._sessions or camera_id in self._unclaimed:
            claimed = asyncio.get_running_loop().create_future()
            self._claims.setdefault(camera_id, claimed)
            try:
                await self._claim(camera_id)
            finally:
                if self._claims.get(camera_id) is claimed:
                    del self._claims[camera_id]
                # Messages held back for the claim run after the session exists (below).
                claimed.set_result(None)
        else:
            # Claimed again, in the background: a takeover sent by a node the camera polled
            # a moment ago is then older than this poll and ignored (``_on_takeover``).
            self._claiming_now(camera_id)
            self._spawn(self._claim_again(camera_id))
        self._dirty.add(camera_id)
        try:
            command = await super().poll(camera_id)
        finally:
            self._dirty.add(camera_id)
        if command is not None:
            # Other nodes learn at once that a result is due (not in the next batch).
            self._write_soon()
        return command

    async def _claim(self, camera_id: str) -> None:
        """Become the camera's home; take its work from the old home (or where it was parked).

        Raises ``PollSuperseded`` when a later claim (a newer poll elsewhere) came first."""
        claim = await self._claim_registry(camera_id)
        if claim is None:
            # Serve the poll here; the claim is made again on its next poll.
            self._unclaimed.add(camera_id)
            return
        if await self._take_work(camera_id, claim):
            done = asyncio.get_running_loop().create_future()
            self._handovers[camera_id] = done
            try:
                async with asyncio.timeout(HANDOVER_WAIT_SECONDS):
                    await done
            except TimeoutError:
                logger.warning(
                    "node %s did not hand camera %r over in time", claim.old_home, camera_id
                )
            finally:
                self._handovers.pop(camera_id, None)
        if self._claim_seqs.get(camera_id, 0) > claim.seq:
            raise PollSuperseded(f"a newer poll for camera {camera_id!r} replaced this one")

    async def _claim_again(self, camera_id: str) -> None:
        """A poll at the camera's home claims it again; a node that claimed it since (an
        older poll there) is sent a takeover, which answers that poll 409."""
        claim = await self._claim_registry(camera_id, self._claims_again)
        if claim is not None:
            await self._take_work(camera_id, claim)

    async def _take_work(self, camera_id: str, claim: Claim) -> bool:
        """Adopt the work parked for the camera, or ask its old home for it (True)."""
        if claim.parked:
            self._adopt_raw(camera_id, claim.parked)
            return False
        old = claim.old_home
        if old in ("", self.node) or not await self.members.confirm_alive(old):
            return False
        self._forwarded("takeover")
        self.bus.post(old, m.Takeover(camera=camera_id, to=self.node, seq=claim.seq))
        return True

    def _claiming_now(self, camera_id: str) -> asyncio.Future[None]:
        """Mark a claim of the camera as under way (at once, before the claim is sent)."""
        claiming = self._claiming.get(camera_id)
        if claiming is None:
            claiming = asyncio.get_running_loop().create_future()
            self._claiming[camera_id] = claiming
        return claiming

    async def _claim_registry(
        self, camera_id: str, claims: TurnBatch[str, Claim] | None = None
    ) -> Claim | None:
        """Claim the camera in Redis (``None`` when Redis failed); its sequence is noted
        before the takeovers held back meanwhile are looked at."""
        claiming = self._claiming_now(camera_id)
        claim: Claim | None = None
        try:
            claim = await (claims or self._claims_made).get(camera_id)
        except (RedisError, OSError) as error:
            self.bus.failed(error)
        finally:
            if claim is not None:
                self.bus.succeeded()
                self._unclaimed.discard(camera_id)
                self._claim_seqs[camera_id] = max(claim.seq, self._claim_seqs.get(camera_id, 0))
            if self._claiming.get(camera_id) is claiming:
                del self._claiming[camera_id]
            if not claiming.done():
                claiming.set_result(None)
        return claim

    def _adopt_raw(self, camera_id: str, raw: bytes) -> None:
        try:
            work = m.work_from(orjson.loads(raw))
        except ValueError as error:
            logger.warning("dropped the work handed over for %r: %s", camera_id, error)
            return
        self._adopt(camera_id, work)

    def _adopt(self, camera_id: str, work: SessionWork) -> None:
        if self._closed:
            # Handed over as this node stopped: parked like this node's own work.
            self._leave_for_next_home(camera_id, work)
            self._spawn(self._park_each())
            return
        callers = [
            c for c in self.take_over(camera_id, _without(work, self._homed)) if c.ref is not None
        ]
        for caller in callers:
            self._track(camera_id, caller)
        self._dirty.add(camera_id)
        refs_by_node: dict[str, list[str]] = defaultdict(list)
        for caller in callers:
            assert caller.ref is not None
            refs_by_node[_node_of(caller.ref)].append(caller.ref)
        for node, refs in refs_by_node.items():
            if node == self.node:
                self._note_moved(refs, self.node)
            else:
                self.bus.post(node, m.Moved(refs=tuple(refs), home=self.node))

    # ------------------------------------------------------------------ results

    @contextlib.asynccontextmanager
    async def receive_result(
        self, camera_id: str, declared_bytes: int | None
    ) -> AsyncIterator[ResultUpload]:
        """A result posted here: taken here if the camera is homed here, else read,
        checked and forwarded to its home (404 before the body when the home expects
        no result from this camera)."""
        if self._closed or camera_id in self._sessions:
            async with super().receive_result(camera_id, declared_bytes) as upload:
                yield upload
            return
        entry = await self._entry(camera_id)
        # ``polling``: a command just delivered may not be in Redis yet; the home decides.
        expected = entry is not None and (entry.expect or entry.polling)
        if entry is None or not expected or not await self.members.confirm_alive(entry.home):
            self._observer.upload_refused(camera_id, body_read=False)
            self._observer.result_received(camera_id, ResultOutcome.LATE)
            raise UnknownRequest(
                f"camera {camera_id!r} has no command awaiting a result; poll first"
            )
        reservation = await self.budget.reserve(declared_bytes or FIRST_RESERVATION_BYTES)
        forwarded = ForwardedUpload(
            functools.partial(self.forward_result, camera_id, entry.home), reservation
        )
        try:
            yield forwarded
        finally:
            forwarded.close()

    async def forward_result(
        self, camera_id: str, home: str, request_id: str | None, body: bytes
    ) -> Receipt:
        """A result posted here for a camera homed at ``home``: the home's receipt."""
        ref = next(self._refs)
        done: asyncio.Future[m.Receipt] = asyncio.get_running_loop().create_future()
        self._receipts[ref] = done
        try:
            self._forwarded("posted")
            await self._send(home, m.Posted(camera=camera_id, ref=ref, request_id=request_id), body)
            async with asyncio.timeout(RECEIPT_WAIT_SECONDS):
                receipt = await done
        except TimeoutError:
            raise ClusterUnavailable(
                f"the server holding camera {camera_id!r} did not confirm the result; post it again"
            ) from None
        finally:
            self._receipts.pop(ref, None)
        if receipt.error:
            raise m.error_of(receipt.error, receipt.detail)
        return Receipt(ResultOutcome(receipt.outcome), receipt.request_id, receipt.callers)

    def is_home(self, camera_id: str) -> bool:
        return camera_id in self._sessions

    # ================================================================ user side

    async def fetch_logs(self, camera_id: str, time_range: TimeRange) -> LogSelection:
        if self._closed:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        ref = next(self._refs)
        waiter = Waiter(ref, camera_id, time_range, asyncio.get_running_loop().create_future())
        self._waiters[ref] = waiter
        result: LogResult | None = None
        try:
            # The home's timers end every wait; this ceiling allows for a home that died
            # (noticed within the node timeout) and only guards against a bug.
            ceiling = self.config.longest_logs_wait + self.members.timeout
            async with asyncio.timeout(ceiling):
                if camera_id in self._sessions:
                    self._enqueue_here(camera_id, ref, time_range, None)
                    waiter.home = self.node
                else:
                    await self._place(waiter)
                result = await waiter.future
        except TimeoutError:
            raise CameraTimeout(f"camera {camera_id!r} sent no result in time") from None
        finally:
            del self._waiters[ref]
            future = waiter.future
            if not future.done():
                self._withdraw(waiter)
            elif result is None and not future.cancelled() and future.exception() is None:
                future.result().release()  # cancelled as the result came
        try:
            return result.select(time_range)
        finally:
            result.release()

    async def _place(self, waiter: Waiter) -> None:
        """Send a caller's work to its camera's home (raises when it cannot be served)."""
        camera_id = waiter.camera_id
        entry = await self._entry(camera_id)
        now = time.time()
        if entry is None:
            raise CameraOffline(f"camera {camera_id!r} has not connected; retry once it polls")
        alive = await self.members.confirm_alive(entry.home)
        if not entry.status(now, self.config.connect_timeout_seconds, alive).online:
            raise CameraOffline(
                f"camera {camera_id!r} is offline: last seen "
                f"{entry.seconds_since_seen(now):.0f} s ago; retry once it polls again"
            )
        waiter.home = entry.home
        if not entry.home or not alive:
            # Its home died or stopped: wait for the camera to poll a live node.
            waiter.orphaned_at = asyncio.get_running_loop().time()
            return
        self._forwarded("enqueue")
        await self._send(entry.home, self._enqueue_message(waiter, None))

    def _enqueue_message(self, waiter: Waiter, pickup: float | None) -> m.Enqueue:
        return m.Enqueue(
            camera=waiter.camera_id,
            ref=waiter.ref,
            start=waiter.time_range.start,
            end=waiter.time_range.end,
            pickup=pickup,
        )

    def _withdraw(self, waiter: Waiter) -> None:
        """The caller left: its work is dropped where it sits."""
        homed = self._homed.pop(waiter.ref, None)
        if homed is not None:
            camera_id, caller = homed
            session = self._sessions.get(camera_id)
            if session is not None:
                session.forget(caller)
        elif waiter.home and waiter.home != self.node:
            self.bus.post(waiter.home, m.Forget(camera=waiter.camera_id, ref=waiter.ref))

    def _enqueue_here(
        self, camera_id: str, ref: str, time_range: TimeRange, pickup: float | None
    ) -> None:
        if ref in self._homed:  # sent again after a home died: it is here already
            return
        session = self._sessions[camera_id]
        caller = session.enqueue(time_range, ref=ref, pickup_within=pickup)
        self._track(camera_id, caller)
        self._dirty.add(camera_id)

    def _track(self, camera_id: str, caller: Caller) -> None:
        assert caller.ref is not None
        self._homed[caller.ref] = (camera_id, caller)
        caller.future.add_done_callback(functools.partial(self._caller_done, camera_id, caller))

    def _caller_done(self, camera_id: str, caller: Caller, future: asyncio.Future[object]) -> None:
        """A caller queued here got its outcome: carry it to the node of its request."""
        assert caller.ref is not None
        if self._homed.get(caller.ref, (None, None))[1] is caller:
            del self._homed[caller.ref]
        session = self._sessions.get(camera_id)
        if session is not None:
            session.forget(caller)
            self._dirty.add(camera_id)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self._send_result(caller.ref, future.result())  # type: ignore[arg-type]
        else:
            self._send_error(caller.ref, error)

    def _send_result(self, ref: str, result: LogResult) -> None:
        """Carry a caller's hold on ``result`` to its node."""
        node = _node_of(ref)
        if node == self.node:
            self._resolve(ref, result, None)
            return
        key = (node, result)
        refs = self._outgoing_results.get(key)
        if refs is None:
            # Every caller of one result on one node gets one message (sent next turn).
            self._outgoing_results[key] = [ref]
            asyncio.get_running_loop().call_soon(self._post_result, key)
        else:
            refs.append(ref)

    def _post_result(self, key: tuple[str, LogResult]) -> None:
        refs = self._outgoing_results.pop(key)
        node, result = key
        body = result_bytes(result)
        for _ in refs:
            result.release()
        self._forwarded("result")
        self.bus.post(node, m.Outcome(refs=tuple(refs)), body)

    def _send_error(self, ref: str, error: BaseException) -> None:
        relay_error = error if isinstance(error, RelayError) else CameraOffline(str(error))
        node = _node_of(ref)
        if node == self.node:
            self._resolve(ref, None, relay_error)
        else:
            self._forwarded("error")
            self.bus.post(
                node,
                m.Outcome(refs=(ref,), error=type(relay_error).__name__, detail=relay_error.detail),
            )

    def _resolve(self, ref: str, result: LogResult | None, error: RelayError | None) -> None:
        """Answer the caller ``ref`` of this node (a result comes with a hold for it)."""
        waiter = self._waiters.get(ref)
        if waiter is None or waiter.future.done():
            if result is not None:
                result.release()
            return
        if error is not None:
            waiter.future.set_exception(error)
        elif result is not None:
            waiter.future.set_result(result)

    def _note_moved(self, refs: list[str] | tuple[str, ...], home: str) -> None:
        for ref in refs:
            waiter = self._waiters.get(ref)
            if waiter is not None:
                waiter.home = home
                waiter.orphaned_at = None

    def _orphan(self, ref: str) -> None:
        """The caller ``ref`` waits, at its node, for its camera to poll a live node."""
        node = _node_of(ref)
        if node == self.node:
            self._note_moved([ref], "")
        else:
            self.bus.post(node, m.Moved(refs=(ref,), home=""))

    def _moved_away(self, work: SessionWork, home: str) -> None:
        """This node gave the work up: its own callers follow it; the others are told."""
        refs_by_node: dict[str, list[str]] = defaultdict(list)
        for item in itertools.chain(
            work.queued, (c for flight in work.in_flight for c in flight.callers)
        ):
            self._homed.pop(item.ref, None)
            refs_by_node[_node_of(item.ref)].append(item.ref)
        for node, refs in refs_by_node.items():
            if node == self.node:
                self._note_moved(refs, home)
            elif home:
                self.bus.post(node, m.Moved(refs=tuple(refs), home=home))

    # ------------------------------------------------------------------ dead homes

    def _watch_orphans(self) -> None:
        """Callers whose work sat at a node that died: re-placed once the camera polls a
        live node; ``CameraOffline`` if it does not within the connect timeout."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._down_since is not None and now - self._down_since > self.members.timeout:
            self._fail_cross_node_waiters()
            return
        orphans: list[Waiter] = []
        for waiter in self._waiters.values():
            if waiter.future.done() or waiter.home == self.node:
                continue
            if waiter.orphaned_at is None and self.members.is_alive(waiter.home):
                continue
            if waiter.orphaned_at is None:
                waiter.orphaned_at = now
            if now - waiter.orphaned_at > self.config.connect_timeout_seconds:
                waiter.future.set_exception(
                    CameraOffline(
                        f"the server holding camera {waiter.camera_id!r} stopped and the "
                        "camera did not poll again in time; retry once it polls"
                    )
                )
            else:
                orphans.append(waiter)
        if orphans:
            self._spawn(self._replace_orphans(orphans))

    def _fail_cross_node_waiters(self) -> None:
        """Redis has been down for a node timeout: no outcome can reach callers whose
        work sits at another node, so they get 503 now rather than wait for nothing."""
        for waiter in self._waiters.values():
            if not waiter.future.done() and waiter.home != self.node:
                waiter.future.set_exception(
                    ClusterUnavailable(
                        f"the cluster's Redis is unreachable, so camera {waiter.camera_id!r}, "
                        "held by another server, cannot answer; retry in a few seconds"
                    )
                )

    async def _replace_orphans(self, orphans: list[Waiter]) -> None:
        try:
            entries = await self.registry.read_many(sorted({w.camera_id for w in orphans}))
        except (RedisError, OSError) as error:
            self.bus.failed(error)
            return
        homes = {entry.camera_id: entry.home for entry in entries}
        now = asyncio.get_running_loop().time()
        for waiter in orphans:
            home = homes.get(waiter.camera_id, "")
            if waiter.future.done() or waiter.orphaned_at is None:
                continue  # answered, or told where its work went, during the read
            if not home or not self.members.is_alive(home):
                continue
            pickup = self.config.connect_timeout_seconds - (now - waiter.orphaned_at)
            if home == self.node:
                if waiter.camera_id not in self._sessions:
                    continue  # claimed here a moment ago: placed at the next round
                try:
                    self._enqueue_here(waiter.camera_id, waiter.ref, waiter.time_range, pickup)
                except RelayError as error:
                    waiter.future.set_exception(error)
            else:
                self._forwarded("enqueue")
                self.bus.post(home, self._enqueue_message(waiter, pickup))
            waiter.home = home
            waiter.orphaned_at = None

    # ================================================================ messages

    async def _handle(self, message: m.Message, body: Body | None) -> None:
        if message.sent_ms:
            self._events.hop_latency(max(time.time() * 1000 - message.sent_ms, 0.0) / 1000)
        if isinstance(message, m.Enqueue):
            self._on_enqueue(message)
        elif isinstance(message, m.Forget):
            self._on_forget(message)
        elif isinstance(message, m.Outcome):
            self._on_outcome(message, body)
        elif isinstance(message, m.Moved):
            self._note_moved(message.refs, message.home)
        elif isinstance(message, m.Takeover):
            self._on_takeover(message)
        elif isinstance(message, m.Handover):
            self._on_handover(message)
        elif isinstance(message, m.Posted):
            # Off the inbox's reader: the result may wait for room in the budget.
            self._spawn(self._on_posted(message, body))
        elif isinstance(message, m.Receipt):
            done = self._receipts.get(message.ref)
            if done is not None and not done.done():
                done.set_result(message)

    def _on_enqueue(self, message: m.Enqueue) -> None:
        if self._closed:
            # Stopping: the caller's node places it at the camera's next home.
            self._orphan(message.ref)
            return
        if message.camera not in self._sessions:
            if not self._after_claim(message):
                self._pass_on(message, message.hops)
            return
        try:
            self._enqueue_here(
                message.camera,
                message.ref,
                TimeRange(message.start, message.end),
                message.pickup,
            )
        except RelayError as error:
            self._send_error(message.ref, error)
        except ValueError as error:  # a range that does not hold
            logger.warning("dropped an enqueue with a bad range: %s", error)

    def _on_forget(self, message: m.Forget) -> None:
        homed = self._homed.pop(message.ref, None)
        if homed is None:
            if not self._after_claim(message):
                self._pass_on(message, message.hops)
            return
        camera_id, caller = homed
        session = self._sessions.get(camera_id)
        if session is not None:
            session.forget(caller)
            self._dirty.add(camera_id)

    def _after_claim(self, message: m.Enqueue | m.Forget) -> bool:
        """A message for a camera this node is claiming: handled once the claim is done
        (the sender found this node as the home in Redis). False if there is no claim."""
        claim = self._claims.get(message.camera)
        if claim is None:
            return False

        async def handle_later() -> None:
            await claim
            if isinstance(message, m.Enqueue):
                self._on_enqueue(message)
            else:
                self._on_forget(message)

        self._spawn(handle_later())
        return True

    def _pass_on(self, message: m.Enqueue | m.Forget, hops: int) -> None:
        """A message for a camera no longer homed here: to its current home."""
        self._spawn(self._pass_on_later(message, hops))
        self._tasks = [task for task in self._tasks if not task.done()]

    async def _pass_on_later(self, message: m.Enqueue | m.Forget, hops: int) -> None:
        with contextlib.suppress(ClusterUnavailable):
            entry = await self._entry(message.camera)
            home = "" if entry is None else entry.home
            alive = await self.members.confirm_alive(home)
            if hops < MAX_HOPS and home and home != self.node and alive:
                self.bus.post(home, _with_hops(message, hops + 1))
                return
            if entry is not None and isinstance(message, m.Enqueue):
                # The camera's work waits for its next poll (parked, or its home stopped):
                # the caller's node places the caller there, or answers 503 past the
                # connect timeout (``_watch_orphans``).
                self._orphan(message.ref)
                return
        if isinstance(message, m.Enqueue):
            self._send_error(
                message.ref,
                CameraOffline(f"camera {message.camera!r} moved and is not polling; retry"),
            )

    def _on_outcome(self, message: m.Outcome, body: Body | None) -> None:
        if message.error:
            for ref in message.refs:
                self._resolve(ref, None, m.error_of(message.error, message.detail))
            return
        # Off the inbox's reader: the result may wait for room in the budget.
        self._spawn(self._take_outcome(message, body))

    async def _result_in_budget(self, body: Body | None) -> LogResult | None:
        """The result in a message's body, read once this node's budget has room for it
        and counted there until its last hold ends; ``None`` if the body is gone; raises
        ``ResultBodyError``."""
        reservation = await self.budget.reserve(
            FIRST_RESERVATION_BYTES if body is None or not body.size else body.size
        )
        try:
            data = b"" if body is None else await body.read()
            if data is None:
                reservation.release()
                return None
            await reservation.grow_to(len(data))
            result = result_from(data, reservation.release)
        except BaseException:
            reservation.release()
            raise
        reservation.done_reading()
        return result

    async def _take_outcome(self, message: m.Outcome, body: Body | None) -> None:
        try:
            result = await self._result_in_budget(body)
        except ResultBodyError as error:
            logger.warning("dropped a result message whose body does not parse: %s", error)
            return
        if result is None:
            return
        try:
            for ref in message.refs:
                result.hold()
                self._resolve(ref, result, None)
        finally:
            result.release()

    def _on_takeover(self, message: m.Takeover) -> None:
        camera_id = message.camera
        claiming = self._claiming.get(camera_id)
        if claiming is not None:
            # This node's own claim is in Redis's hands: compare once its sequence is known.
            async def look_later() -> None:
                await claiming
                self._on_takeover(message)

            self._spawn(look_later())
            return
        latest = self._claim_seqs.get(camera_id, 0)
        if message.seq and message.seq < latest:
            # Sent for a poll older than this node's latest claim: the newer poll stays;
            # the sender gets this node's own takeover.
            logger.info("ignored a takeover of camera %r older than the latest poll", camera_id)
            return
        if message.seq:
            self._claim_seqs[camera_id] = message.seq
        waiting = self._handovers.get(camera_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # superseded: ``_claim`` answers its poll 409
        work = self.hand_over(message.camera, superseded=True)
        if work is None:
            work = self._parking.pop(message.camera, None)
        work = work or SessionWork()
        self._moved_away(work, message.to)
        self._forwarded("handover")
        self.bus.post(message.to, m.Handover(camera=message.camera, work=m.work_json(work)))

    def _on_handover(self, message: m.Handover) -> None:
        try:
            work = m.work_from(message.work)
        except ValueError as error:
            logger.warning("dropped the work handed over for %r: %s", message.camera, error)
            work = SessionWork()
        self._adopt(message.camera, work)
        done = self._handovers.get(message.camera)
        if done is not None and not done.done():
            done.set_result(None)

    async def _on_posted(self, message: m.Posted, body: Body | None) -> None:
        reply: m.Receipt
        try:
            if message.camera not in self._sessions:
                raise UnknownRequest(
                    f"camera {message.camera!r} has no command awaiting a result; poll first"
                )
            result = await self._result_in_budget(body)
            if result is None:
                return  # the body is gone: the node that forwarded it tells the camera
            try:
                receipt = self.submit_result(message.camera, message.request_id, result)
            finally:
                result.release()
            reply = m.Receipt(
                ref=message.ref,
                outcome=receipt.outcome.value,
                request_id=receipt.request_id,
                callers=receipt.callers,
            )
        except RelayError as error:
            reply = m.Receipt(ref=message.ref, error=type(error).__name__, detail=error.detail)
        except ResultBodyError as error:
            logger.warning("dropped a forwarded result whose body does not parse: %s", error)
            return
        self.bus.post(message.sender, reply)

    # ================================================================ the fleet

    async def _entry(self, camera_id: str) -> CameraEntry | None:
        """The camera's entry in Redis (read with the others asked for in this loop turn)."""
        try:
            entry = await self._entries.get(camera_id)
        except (RedisError, OSError) as error:
            self.bus.failed(error)
            raise ClusterUnavailable(
                f"camera {camera_id!r} is not connected to this server and the cluster's "
                "Redis is unreachable; retry in a few seconds"
            ) from None
        self.bus.succeeded()
        return entry

    async def _send(self, node: str, message: m.Message, body: bytes | None = None) -> None:
        try:
            await self.bus.send(node, message, body)
        except RedisDown:
            raise ClusterUnavailable(
                "the cluster's Redis is unreachable, so the server holding the camera "
                "cannot be reached; retry in a few seconds"
            ) from None

    def _write_soon(self) -> None:
        self._spawn(self._flush())

    def _spawn(self, step: Coroutine[Any, Any, None]) -> None:
        """A short task of this node's, cancelled with the others when it detaches."""
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _flush(self) -> None:
        """Write the status of cameras homed here that changed (one round trip)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        statuses: list[tuple[CameraStatus, bool]] = []
        for camera_id in dirty:
            session = self._sessions.get(camera_id)
            if session is not None:
                status = session.status()
                statuses.append((status, bool(status.in_flight) or session.has_answered()))
        if not statuses:
            return
        try:
            await self.registry.update(statuses)
        except (RedisError, OSError) as error:
            self.bus.failed(error)
            self._dirty |= dirty
            return
        self.bus.succeeded()

    async def list_cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        found: list[CameraStatus] = []
        cursor = after
        page = 500 if limit is None else max(limit * 2, 50)
        now = time.time()
        while limit is None or len(found) < limit:
            ids = await self._registry_call(self.registry.ids(prefix, cursor, page))
            if not ids:
                break
            cursor = ids[-1]
            entries = await self._registry_call(self.registry.read_many(ids))
            for home in {entry.home for entry in entries} - self.members.alive:
                await self.members.confirm_alive(home)  # a node that joined since the beat
            for entry in entries:
                status = self._status_of(entry, now)
                if online is None or status.online is online:
                    found.append(status)
            if len(ids) < page:
                break
        return found if limit is None else found[:limit]

    def _status_of(self, entry: CameraEntry, now: float) -> CameraStatus:
        session = self._sessions.get(entry.camera_id)
        if session is not None:  # homed here: the freshest status is local
            return session.status()
        alive = self.members.is_alive(entry.home)
        return entry.status(now, self.config.connect_timeout_seconds, alive)

    async def fleet_stats(self) -> RelayStats:
        statuses = await self.list_cameras()
        return RelayStats(
            len(statuses),
            sum(s.online for s in statuses),
            sum(s.polling for s in statuses),
            sum(s.waiting for s in statuses),
            sum(s.in_flight for s in statuses),
        )

    async def _registry_call(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except (RedisError, OSError) as error:
            self.bus.failed(error)
            raise ClusterUnavailable(
                "the cluster's Redis is unreachable, so the fleet cannot be listed; "
                "retry in a few seconds"
            ) from None
        self.bus.succeeded()
        return result

    def _forwarded(self, kind: str) -> None:
        self._events.forwarded(kind)


def _node_of(ref: str) -> str:
    return ref.rpartition("/")[0]


def _joined(first: SessionWork, second: SessionWork) -> SessionWork:
    return SessionWork(
        queued=first.queued + second.queued,
        in_flight=first.in_flight + second.in_flight,
        accepted=first.accepted + second.accepted,
        last_seen=max(first.last_seen or 0.0, second.last_seen or 0.0) or None,
    )


def _with_hops(message: m.Enqueue | m.Forget, hops: int) -> m.Enqueue | m.Forget:
    return dataclasses.replace(message, hops=hops)


def _without(work: SessionWork, homed: dict[str, tuple[str, Caller]]) -> SessionWork:
    """``work`` minus callers already queued here (sent again after a home died)."""
    if not any(item.ref in homed for item in work.queued) and not any(
        c.ref in homed for flight in work.in_flight for c in flight.callers
    ):
        return work
    return dataclasses.replace(
        work,
        queued=tuple(item for item in work.queued if item.ref not in homed),
        in_flight=tuple(
            dataclasses.replace(
                flight, callers=tuple(c for c in flight.callers if c.ref not in homed)
            )
            for flight in work.in_flight
        ),
    )
