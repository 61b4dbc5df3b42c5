"""``ClusterNode``: the ``RelayService`` of one node of a cluster.

It composes a local ``Relay`` (the sessions of the cameras homed at this
node, run by the framework-free core, unchanged) with the roles that let any
node serve any camera; see the package docstring for the story. Imports run
one way: this module → ``fleet`` → ``homes`` → ``hosted`` → ``context``, and
``waiters``/``forwarding`` → ``context``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

from ..relay import (
    CameraStatus,
    Command,
    LogResult,
    LogSelection,
    Relay,
    RelayConfig,
    RelayError,
    RelayObserver,
    RelayService,
    RelayStats,
    ShuttingDown,
    TimeRange,
    Upload,
)
from . import messages as m
from .backend import Backend, Body
from .context import ClusterConfig, NodeContext
from .courier import Courier, Handler
from .fleet import Fleet, counts_note
from .forwarding import AdoptedHere, ResultForwarding
from .health import StoreHealth
from .homes import Homes
from .hosted import HostedCallers
from .identity import Refs, new_incarnation
from .membership import Membership
from .observer import ClusterObserver
from .unavailable import ClusterUnavailable
from .waiters import Waiter, Waiters

logger = logging.getLogger("camrelay.cluster")

#: a home's status changes reach the store this often (a poll counts everywhere within 0.5 s)
FLUSH_INTERVAL_SECONDS = 0.1
#: a poll's end reaches the store this long after it, unless the camera polled again
POLL_END_GRACE_SECONDS = 1.0
#: how often callers whose camera's home died look for its new home
ORPHAN_CHECK_SECONDS = 0.25
#: how long a poll or a caller waits for a beat once the store is known to be away
STORE_AWAY_WAIT_SECONDS = 0.1


class ClusterNode(RelayService):
    def __init__(
        self,
        config: RelayConfig,
        cluster: ClusterConfig,
        backend: Backend,
        *,
        observer: RelayObserver | None = None,
        events: ClusterObserver | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cluster = cluster
        self.incarnation = new_incarnation(cluster.node)
        self._relay = Relay(config, observer, wall_clock, poll_ended=self._poll_ended)
        self.budget = self._relay.budget
        self._backend = backend
        events = events or ClusterObserver()
        health = StoreHealth(events.redis_error)
        self._health = health
        self._membership = Membership(
            backend.members,
            self.incarnation,
            cluster.node_timeout_seconds,
            health,
            note=lambda: counts_note(self._relay.stats()),
        )
        courier = Courier(
            backend.transport, self.incarnation, health, wall_clock, events.hop_latency
        )
        self._courier = courier
        ctx = NodeContext(
            relay=self._relay,
            directory=backend.directory,
            cluster=cluster,
            incarnation=self.incarnation,
            health=health,
            membership=self._membership,
            courier=courier,
            events=events,
            wall_clock=wall_clock,
        )
        self._ctx = ctx
        self._refs = Refs(self.incarnation)
        self._hosted = HostedCallers(ctx)
        self._homes = Homes(ctx, self._hosted)
        self._waiters = Waiters(ctx)
        self._forwarding = ResultForwarding(ctx, self._refs, self._adopt_for_result)
        self._fleet = Fleet(ctx, self._homes)
        self._loops: list[asyncio.Task[None]] = []
        self._beating: asyncio.Task[None] | None = None
        self._last_beat_at = float("-inf")
        self._leaving: asyncio.Task[None] | None = None
        self._give_up_timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def _handlers(self) -> Mapping[type[m.Message], Handler]:
        return {
            m.Enqueue: self._on_enqueue,
            m.Forget: self._on_forget,
            m.Outcome: self._waiters.on_outcome,
            m.Moved: self._waiters.on_moved,
            m.Takeover: self._homes.on_takeover,
            m.Handover: self._homes.on_handover,
            m.Posted: self._forwarding.on_posted,
            m.ResultReceipt: self._forwarding.on_receipt,
        }

    # ================================================================ lifecycle

    async def start(self) -> None:
        await self._beat()
        self._courier.start(self._handlers())
        interval = self._membership.interval
        self._loops = [
            asyncio.create_task(self._every(interval, self._beat), name="camrelay-heartbeat"),
            asyncio.create_task(
                self._every(FLUSH_INTERVAL_SECONDS, self._fleet.flush), name="camrelay-flush"
            ),
            asyncio.create_task(
                self._every(min(ORPHAN_CHECK_SECONDS, interval), self._watch), name="camrelay-watch"
            ),
        ]
        if self._ctx.health.up:
            logger.info("node %s joined the cluster", self.incarnation)
        else:
            logger.info(
                "node %s started; it joins the cluster once Redis answers", self.incarnation
            )

    async def _every(self, interval: float, step: Callable[[], Awaitable[None] | None]) -> None:
        while not self._stopped:
            await asyncio.sleep(interval)
            try:
                outcome = step()
                if outcome is not None:
                    await outcome
            except Exception:  # a bug must not stop the heartbeat or the watch
                logger.exception("the cluster step %s failed", getattr(step, "__name__", step))

    async def _watch(self) -> None:
        self._waiters.watch()

    async def _beat(self) -> None:
        """One heartbeat (shared by whoever asks for one while it runs)."""
        if self._beating is None or self._beating.done():
            self._beating = asyncio.get_running_loop().create_task(self._beat_once())
        await asyncio.shield(self._beating)

    async def _beat_once(self) -> None:
        self._last_beat_at = asyncio.get_running_loop().time()
        outcome = await self._membership.beat()
        self._waiters.store_failing(not outcome.up)
        if not outcome.up:
            return
        if outcome.new_epoch:
            self._homes.forget_claim_order()
            self._fleet.mark_all()
        if outcome.lapsed:
            # Others took this node for dead and may have claimed its cameras; entries
            # the store lost are written again (a store that lost everything shows a new
            # epoch, above).
            await self._fleet.check_homes()
        if outcome.departed and min(self._membership.alive) == self.incarnation:
            # One node (the first alive by name) tells the store that the polls the
            # departed held ended, rather than leave them polling until their expiry.
            self._ctx.spawn(self._fleet.end_polls_of(outcome.departed))

    async def _current(self) -> None:
        """Before serving: if this node's lease lapsed (it was paused or cut off), beat and
        give up the cameras others claimed meanwhile. While the store stays away, the
        node serves what it holds: once a call to it has failed, a beat is waited for
        only ``STORE_AWAY_WAIT_SECONDS`` (a store that hangs would hold every poll and
        caller for its whole timeout)."""
        if self._membership.lease_valid():
            return
        loop = asyncio.get_running_loop()
        beating = self._beating is not None and not self._beating.done()
        if not beating and loop.time() - self._last_beat_at < self._membership.interval:
            return
        if self._health.up:
            await self._beat()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STORE_AWAY_WAIT_SECONDS):
                await self._beat()

    @property
    def closed(self) -> bool:
        return self._ctx.closing

    def close(self) -> None:
        """A graceful stop: polls get noop, work is parked for the camera's next home,
        this node's callers keep waiting for it until shortly before the stop ends."""
        ctx = self._ctx
        if ctx.closing:
            return
        ctx.closing = True
        self._homes.leave_all()
        self._relay.close()
        loop = asyncio.get_running_loop()
        give_up = max(self.cluster.shutdown_timeout_seconds - 0.5, 0.0)
        self._give_up_timer = loop.call_later(
            give_up, self._waiters.fail_all, "the server is shutting down"
        )
        if not self._stopped:
            self._leaving = loop.create_task(self._park_and_leave())

    async def _park_and_leave(self) -> None:
        await self._homes.write_ended()
        await self._homes.park_each()
        await self._membership.leave()

    async def stop(self) -> None:
        """The end of a stop: work handed over meanwhile is parked, then connections close."""
        if self._stopped:
            return
        if self._leaving is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._leaving
                    if self._homes.parking:  # handed over to this node while it stopped
                        await self._homes.park_each()
            await self._courier.drain()
        await self.halt()

    async def halt(self) -> None:
        """Stop at once, saying nothing to the cluster (a kill, in tests)."""
        if self._stopped:
            return
        self._stopped = True
        if self._give_up_timer is not None:
            self._give_up_timer.cancel()
        tasks = [*self._loops, *[t for t in (self._beating, self._leaving) if t is not None]]
        self._loops = []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._ctx.cancel_tasks()
        await self._courier.close()
        await self._backend.close()

    # ================================================================ camera side

    def poll(self, camera_id: str) -> Coroutine[Any, Any, Command | None]:
        """Await it where it is called, as the view does: whether the camera is at home
        here is decided at the call."""
        ctx = self._ctx
        if not ctx.closing and self._membership.lease_valid() and self._homes.at_home(camera_id):
            # Most polls: nothing to claim or wait for, and no coroutine of the node's
            # around the relay's for as long as the poll is held.
            self._homes.poll_held(camera_id, ctx.wall_clock())
            ctx.mark_dirty(camera_id)
            return self._relay.poll(camera_id, self.config.poll_hold_seconds)
        return self._claim_and_poll(camera_id)

    async def _claim_and_poll(self, camera_id: str) -> Command | None:
        if self._ctx.closing:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        arrived = asyncio.get_running_loop().time()
        arrived_wall = self._ctx.wall_clock()
        await self._current()
        await self._homes.before_poll(camera_id)
        self._homes.poll_held(camera_id, arrived_wall)
        self._ctx.mark_dirty(camera_id)
        # The hold counts from the poll's arrival: a claim that waited for the old home's
        # handover does not make the camera wait longer than POLL_HOLD_SECONDS.
        waited = asyncio.get_running_loop().time() - arrived
        return await self._relay.poll(camera_id, self.config.poll_hold_seconds - waited)

    def _poll_ended(self, camera_id: str, command: Command | None) -> None:
        if command is None:
            # A camera polls again at once after a noop: the store hears of the poll's
            # end only if the next one does not come first.
            self._ctx.mark_dirty(camera_id, delay=POLL_END_GRACE_SECONDS)
            return
        self._ctx.mark_dirty(camera_id)
        # Other nodes learn at once that a result is due (not in the next batch).
        self._ctx.spawn(self._fleet.flush())

    def camera_seen(self, camera_id: str) -> None:
        self._relay.camera_seen(camera_id)
        if self._relay.has_session(camera_id):
            self._ctx.mark_dirty(camera_id)

    @contextlib.asynccontextmanager
    async def receive_result(
        self, camera_id: str, declared_bytes: int | None
    ) -> AsyncIterator[Upload]:
        """Taken here if the camera is homed here (or its home stopped and parked its
        work, which this node then takes over), else read, checked and forwarded to its
        home (404 before the body when the home expects no result)."""
        upload: Upload
        if not (self._ctx.closing or self._relay.has_session(camera_id)):
            try:
                async with self._forwarding.receive(camera_id, declared_bytes) as upload:
                    yield upload
                return
            except AdoptedHere:
                pass  # homed here now: taken as any result of this node's cameras
        async with self._relay.receive_result(camera_id, declared_bytes) as upload:
            yield upload
        # The callers it answered queue their results in the next loop turn (their
        # futures' callbacks): post them then, and answer the camera once the store
        # has them. Answered sooner, the camera's next poll would compete with
        # their way to the callers' nodes for the CPU.
        await asyncio.sleep(0)
        if self._hosted.post_outgoing() and self._ctx.health.up:
            await self._ctx.courier.flush(self._ctx.cluster.outcome_write_wait_seconds)

    async def _adopt_for_result(self, camera_id: str) -> bool:
        """Take over a camera whose home stopped, with its parked work, for a result it
        posted here; True once its session is here, False if it has a home again.
        Only while it has no home: a poll held elsewhere meanwhile keeps it there. The
        camera's next poll, wherever it lands, moves it as from any home."""
        await self._current()
        return await self._homes.adopt(camera_id)

    # ================================================================ user side

    async def fetch_logs(self, camera_id: str, time_range: TimeRange) -> LogSelection:
        if self._ctx.closing:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        await self._current()
        waiter = self._waiters.add(self._refs.next(), camera_id, time_range)
        result: LogResult | None = None
        try:
            result = await self._wait(waiter)
        finally:
            self._waiters.remove(waiter)
            future = waiter.future
            if not future.done():
                self._withdraw(waiter)
            elif result is None and not future.cancelled() and future.exception() is None:
                future.result().release()  # cancelled as the result came
        try:
            return result.select(time_range)
        finally:
            result.release()

    async def _wait(self, waiter: Waiter) -> LogResult:
        """The caller's result; its deadline is the contract's, plus a node timeout for a
        caller whose camera's home died. Past it, its outcome was lost between nodes."""
        loop = asyncio.get_running_loop()
        waiter.timer = loop.call_later(self.config.longest_logs_wait + 1.0, self._expire, waiter)
        try:
            if self._relay.has_session(waiter.camera_id):
                self._hosted.enqueue(waiter.camera_id, waiter.ref, waiter.time_range, None)
                waiter.home = self.incarnation
            else:
                await self._waiters.place(waiter)
            return await waiter.future
        finally:
            waiter.timer.cancel()

    def _expire(self, waiter: Waiter, extended: bool = False) -> None:
        if waiter.future.done():
            return
        if waiter.orphaned_at is not None and not extended:
            loop = asyncio.get_running_loop()
            waiter.timer = loop.call_later(self._membership.timeout, self._expire, waiter, True)
            return
        waiter.future.set_exception(
            ClusterUnavailable(
                f"no answer for camera {waiter.camera_id!r} reached this server in time "
                "(a message between servers was lost); retry"
            )
        )

    def _withdraw(self, waiter: Waiter) -> None:
        """The caller left: its work is dropped where it sits."""
        if self._hosted.withdraw(waiter.ref):
            return
        if waiter.home and waiter.home != self.incarnation:
            self._courier.post(waiter.home, m.Forget(camera=waiter.camera_id, ref=waiter.ref))

    async def list_cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        return await self._fleet.list_cameras(prefix, online, after, limit)

    async def fleet_stats(self) -> RelayStats:
        return await self._fleet.stats()

    def stats(self) -> RelayStats:
        return self._relay.stats()

    async def sweep(self) -> int:
        forgotten = await self._relay.sweep()
        self._homes.sweep()
        if not self._ctx.closing:
            self._fleet.sweep_store()
        return forgotten

    # ================================================================ messages

    def _on_enqueue(self, message: m.Enqueue, body: Body | None) -> None:
        ctx = self._ctx
        if ctx.closing:
            # Stopping: the caller's node places it at the camera's next home.
            self._hosted.moved(message.camera, (message.ref,), "")
            return
        if not self._relay.has_session(message.camera):
            if not self._after_claim(message):
                self._hosted.pass_on(message)
            return
        try:
            time_range = TimeRange(message.start, message.end)
        except ValueError as error:  # a range that does not hold
            logger.warning("dropped an enqueue with a bad range: %s", error)
            return
        try:
            self._hosted.enqueue(message.camera, message.ref, time_range, message.pickup)
        except RelayError as error:
            self._hosted.send_error(message.camera, message.ref, error)

    def _on_forget(self, message: m.Forget, body: Body | None) -> None:
        if self._hosted.withdraw(message.ref):
            return
        if not self._after_claim(message):
            self._hosted.pass_on(message)

    def _after_claim(self, message: m.Enqueue | m.Forget) -> bool:
        """A message for a camera this node is claiming: handled once the claim is done
        (the sender found this node as the home in the store). False if none is."""
        claim = self._homes.claim_under_way(message.camera)
        if claim is None:
            return False

        async def handle_later() -> None:
            await claim
            if isinstance(message, m.Enqueue):
                self._on_enqueue(message, None)
            else:
                self._on_forget(message, None)

        self._ctx.spawn(handle_later())
        return True

    # ================================================================ state

    def store_state(self) -> str:
        return "up" if self._health.up else "down"

    def nodes_alive(self) -> int:
        return len(self._membership.alive)

    def is_alive(self, incarnation: str) -> bool:
        return self._membership.is_alive(incarnation)

    def is_home(self, camera_id: str) -> bool:
        return self._relay.has_session(camera_id)

    @property
    def relay(self) -> Relay:
        """The sessions of the cameras homed here."""
        return self._relay

    def debug_sizes(self) -> dict[str, int]:
        """How much this node holds, for tests that check nothing grows without bound."""
        return {
            "cameras": len(self._relay.camera_ids()),
            "waiters": len(self._waiters),
            "hosted": len(self._hosted),
            "receipts": len(self._forwarding),
            "tasks": self._ctx.tasks_running,
            "dirty": len(self._ctx.dirty),
            **self._homes.sizes(),
        }
