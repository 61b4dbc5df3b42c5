"""The caller's side: ``/logs`` requests on this node, wherever their work sits.

A caller's work goes to its camera's home (an ``Enqueue``); the home answers
with an ``Outcome`` (the result, or an error) naming the camera and the
caller's ref, and tells the caller where its work went when the camera moves
(``Moved``). An outcome is taken only for a ref this incarnation issued, for
a caller of the camera it names. Callers whose work sat at a node that died
are placed again once the camera polls a live node, or get 503 within the
connect timeout of the death being seen.
"""

from __future__ import annotations

import asyncio

from ..relay import CameraOffline, CameraUnknown, LogResult, RelayError, ShuttingDown, TimeRange
from . import messages as m
from .backend import BackendError, Body
from .context import NodeContext
from .courier import LocalResult
from .knownhomes import KnownHomes
from .payload import NotTaken, take_result, take_result_here
from .unavailable import ClusterUnavailable


class Waiter:
    """A ``/logs`` caller whose HTTP request is on this node."""

    __slots__ = ("camera_id", "future", "home", "orphaned_at", "ref", "time_range", "timer")

    def __init__(
        self, ref: str, camera_id: str, time_range: TimeRange, future: asyncio.Future[LogResult]
    ) -> None:
        self.ref = ref
        self.camera_id = camera_id
        self.time_range = time_range
        #: the result (with a hold for this caller), or the relay error
        self.future = future
        #: the incarnation holding its work (its camera's home); "" while unknown
        self.home = ""
        #: loop time its home was found gone, if it was
        self.orphaned_at: float | None = None
        #: its deadline (``ClusterNode``)
        self.timer: asyncio.TimerHandle | None = None


class Waiters:
    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._waiters: dict[str, Waiter] = {}
        #: loop time since which the store has failed, if it has
        self._down_since: float | None = None
        self._known_homes = KnownHomes(_loop_time)
        #: outcomes whose results wait in a task for room in the budget, not yet queued
        self._deferred = 0

    def __len__(self) -> int:
        return len(self._waiters)

    def add(self, ref: str, camera_id: str, time_range: TimeRange) -> Waiter:
        waiter = Waiter(ref, camera_id, time_range, asyncio.get_running_loop().create_future())
        self._waiters[ref] = waiter
        return waiter

    def remove(self, waiter: Waiter) -> None:
        self._waiters.pop(waiter.ref, None)

    async def place(self, waiter: Waiter) -> None:
        """Send a caller's work to its camera's home (raises when it cannot be served)."""
        ctx = self._ctx
        camera_id = waiter.camera_id
        home = self._known_homes.home_of(camera_id)
        if home is not None and home != ctx.incarnation and ctx.membership.is_alive(home):
            waiter.home = home
            ctx.events.home_found("known")
            ctx.events.forwarded("enqueue")
            await ctx.courier.send(home, self.enqueue_message(waiter, None))
            return
        entry = await ctx.entry(camera_id)
        ctx.events.home_found("store")
        now = ctx.wall_clock()
        if entry is None:
            raise CameraUnknown.of(camera_id)
        alive = await ctx.membership.confirm_alive(entry.home)
        home_seen = await ctx.membership.last_alive_at(entry.home, now)
        status = entry.status(now, ctx.config.connect_timeout_seconds, home_seen, alive)
        if not status.online:
            since = float("inf") if status.last_seen is None else now - status.last_seen
            raise CameraOffline(
                f"camera {camera_id!r} is offline: last seen {since:.0f} s ago; "
                "retry once it polls again"
            )
        waiter.home = entry.home
        if not entry.home or not alive:
            # Its home died or stopped: wait for the camera to poll a live node.
            waiter.orphaned_at = asyncio.get_running_loop().time()
            return
        self._known_homes.learn(camera_id, entry.home)
        ctx.events.forwarded("enqueue")
        await ctx.courier.send(entry.home, self.enqueue_message(waiter, None))

    @staticmethod
    def enqueue_message(waiter: Waiter, pickup: float | None) -> m.Enqueue:
        return m.Enqueue(
            camera=waiter.camera_id,
            ref=waiter.ref,
            start=waiter.time_range.start,
            end=waiter.time_range.end,
            pickup=pickup,
        )

    # ------------------------------------------------------------------ messages

    def on_outcome(self, message: m.Outcome, body: Body | None) -> None:
        if message.error:
            error = m.error_of(message.error, message.detail)
            for ref in message.refs:
                self._resolve(message.camera, ref, None, error)
            return
        if isinstance(body, LocalResult):
            self._deliver(message, body.result)
            return
        if not any(self._mine(message.camera, ref) for ref in message.refs):
            return  # nobody here waits for it: its body is not read
        if body is not None and not self._deferred:  # none taken ahead of one deferred
            taken = take_result_here(self._ctx.relay.budget, body, message.timestamps)
            if isinstance(taken, LogResult):
                self._deliver(message, taken)
                return
            if taken is NotTaken.DROPPED:
                return
        # Off the inbox's reader: the result may wait for room in the budget.
        self._deferred += 1
        self._ctx.spawn(self._take_outcome(message, body))

    async def _take_outcome(self, message: m.Outcome, body: Body | None) -> None:
        # Its reservation is granted or queued before this task first yields (a task
        # cancelled before it starts is one of a node that stops: the count is moot).
        self._deferred -= 1
        if not any(self._mine(message.camera, ref) for ref in message.refs):
            return  # nobody here waits for it: its body is not read
        try:
            result = await take_result(self._ctx.relay.budget, body, message.timestamps)
        except BackendError as error:
            self._ctx.health.failed(error)
            return
        if result is not None:
            self._deliver(message, result)

    def _deliver(self, message: m.Outcome, result: LogResult) -> None:
        """Give each caller of the message a hold on ``result``; the message's hold ends."""
        try:
            for ref in message.refs:
                result.hold()
                self._resolve(message.camera, ref, result, None)
        finally:
            result.release()

    def _mine(self, camera_id: str, ref: str) -> bool:
        waiter = self._waiters.get(ref)
        return waiter is not None and (not camera_id or waiter.camera_id == camera_id)

    def _resolve(
        self, camera_id: str, ref: str, result: LogResult | None, error: RelayError | None
    ) -> None:
        """Answer the caller ``ref`` of this node, if it waits for this camera (a result
        comes with a hold for it)."""
        waiter = self._waiters.get(ref)
        if waiter is None or waiter.future.done() or not self._mine(camera_id, ref):
            if result is not None:
                result.release()
            return
        if error is not None:
            waiter.future.set_exception(error)
        elif result is not None:
            waiter.future.set_result(result)

    def on_moved(self, message: m.Moved, body: Body | None) -> None:
        """The callers' work now waits at ``home``; "" means it waits for the camera's next
        home, where this node places it once the camera polls (``watch``)."""
        now = asyncio.get_running_loop().time()
        mine = [ref for ref in message.refs if self._mine(message.camera, ref)]
        if not mine:
            return
        if message.home:
            self._known_homes.learn(message.camera, message.home)
        else:
            self._known_homes.forget(message.camera)
        for ref in mine:
            waiter = self._waiters[ref]
            waiter.home = message.home
            waiter.orphaned_at = None if message.home else now

    # ------------------------------------------------------------------ dead homes

    def store_failing(self, failing: bool) -> None:
        if not failing:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()

    def watch(self) -> None:
        """Callers whose work sat at a node that died: placed again once the camera polls
        a live node; ``CameraOffline`` if it does not within the connect timeout."""
        ctx = self._ctx
        now = asyncio.get_running_loop().time()
        if self._down_since is not None and now - self._down_since > ctx.membership.timeout:
            self._fail_cross_node()
            return
        orphans: list[Waiter] = []
        for waiter in self._waiters.values():
            if waiter.future.done() or waiter.home == ctx.incarnation:
                continue
            if waiter.orphaned_at is None and ctx.membership.is_alive(waiter.home):
                continue
            if not waiter.home and waiter.orphaned_at is None:
                continue  # being placed
            if waiter.orphaned_at is None:
                waiter.orphaned_at = now
            if now - waiter.orphaned_at > ctx.config.connect_timeout_seconds:
                waiter.future.set_exception(
                    CameraOffline(
                        f"the server holding camera {waiter.camera_id!r} stopped and the "
                        "camera did not poll again in time; retry once it polls"
                    )
                )
            else:
                orphans.append(waiter)
        if orphans:
            ctx.spawn(self._place_orphans(orphans))

    def _fail_cross_node(self) -> None:
        """The store has failed for a node timeout: no outcome can reach callers whose
        work sits at another node, so they get 503 now rather than wait for nothing."""
        for waiter in self._waiters.values():
            if not waiter.future.done() and waiter.home != self._ctx.incarnation:
                waiter.future.set_exception(
                    ClusterUnavailable(
                        f"the cluster's Redis is unreachable, so camera {waiter.camera_id!r}, "
                        "held by another server, cannot answer; retry in a few seconds"
                    )
                )

    async def _place_orphans(self, orphans: list[Waiter]) -> None:
        ctx = self._ctx
        camera_ids = sorted({w.camera_id for w in orphans})
        try:
            entries = await ctx.directory.read(camera_ids)
        except BackendError as error:
            ctx.health.failed(error)
            return
        homes = {c: ("" if e is None else e.home) for c, e in zip(camera_ids, entries, strict=True)}
        now = asyncio.get_running_loop().time()
        for waiter in orphans:
            home = homes.get(waiter.camera_id, "")
            if waiter.future.done() or waiter.orphaned_at is None:
                continue  # answered, or told where its work went, during the read
            if not home or not ctx.membership.is_alive(home):
                continue
            if home == ctx.incarnation and not ctx.relay.has_session(waiter.camera_id):
                continue  # claimed here a moment ago: placed at the next round
            pickup = ctx.config.connect_timeout_seconds - (now - waiter.orphaned_at)
            ctx.events.forwarded("enqueue")
            ctx.courier.post(home, self.enqueue_message(waiter, pickup))
            waiter.home = home
            waiter.orphaned_at = None

    def fail_all(self, reason: str) -> None:
        """Every caller still waiting gets ``ShuttingDown``."""
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown(f"{reason}; retry in a few seconds"))


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
