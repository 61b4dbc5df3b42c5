"""One camera's relay state machine: the held poll, queued callers, in-flight commands.

Every transition happens synchronously inside a method or a loop timer of this
class, and each future gets exactly one outcome, so a poll that expires at the
moment work arrives, or a result racing a timeout, has one well-defined end."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

from .config import RelayConfig
from .errors import (
    CameraOffline,
    CameraTimeout,
    PollSuperseded,
    QueueFull,
    RelayError,
    ShuttingDown,
    UnknownRequest,
)
from .handover import InFlightWork, QueuedWork, SessionWork
from .holds import HoldClock
from .logresult import LogResult
from .observer import RelayObserver, ResultOutcome
from .records import CameraStatus, Command, Receipt
from .tally import FleetTally, Reported, reports_after
from .timerange import TimeRange
from .waiting import Caller, HeldPoll, PendingCommand, new_request_id, shown

#: ties between equal deadlines keep the callers' order
_caller_serials = itertools.count()


class CameraSession:
    """The relay's state for one camera id. Knows nothing of HTTP."""

    def __init__(
        self,
        camera_id: str,
        config: RelayConfig,
        observer: RelayObserver,
        wall_clock: Callable[[], float] = time.time,
        tally: FleetTally | None = None,
        holds: HoldClock | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._config = config
        self._observer = observer
        self._wall_clock = wall_clock
        self._loop = asyncio.get_running_loop()
        #: the registry's totals this session reports its numbers to (see ``_sync``)
        self._tally = tally or FleetTally(config.connect_timeout_seconds, self._loop.time)
        #: ends the held poll's hold (one timer for every session of the registry)
        self._holds = holds if holds is not None else HoldClock(self._loop)
        self._counted = Reported()
        #: the poll held now: a newer poll answers an older one 409 at once
        self._poll: HeldPoll | None = None
        self._queue: dict[Caller, None] = {}
        #: the queued callers' pick-up deadlines, earliest first (entries of callers no
        #: longer queued are skipped when reached; none until one is); one timer for all
        self._deadlines: list[tuple[float, int, Caller]] | None = None
        self._pickup_timer: asyncio.TimerHandle | None = None
        self._pickup_at = 0.0
        self._in_flight: dict[str, PendingCommand] = {}
        #: request ids accepted recently (a repeat is recognised), by loop time; made at need
        self._accepted: dict[str, float] | None = None
        #: ``/send_logs`` bodies being read now
        self._uploads = 0
        #: deliveries made so far (a serial: tells deliveries before an upload from those after)
        self._deliveries_made = 0
        self._last_seen_at: float | None = None
        self._last_seen_wall: float | None = None
        self._closed = False
        self._announced_online = False

    # ---------------------------------------------------------------- camera side

    @reports_after
    def open_poll(self, hold_seconds: float | None = None) -> HeldPoll:
        """Register a poll: answered at once if work waits, else held (``hold_seconds``)."""
        if self._closed:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        if not self._announced_online:
            self._announced_online = True
            self._observer.camera_connected(self.camera_id)
        self._mark_seen()
        older = self._poll
        if older is not None:
            self._holds.release(older)
            if not older.future.done():
                older.future.set_exception(
                    PollSuperseded(
                        f"a newer poll for camera {self.camera_id!r} replaced this one; "
                        "if another device uses this cameraId, give it a different one"
                    )
                )
        poll = HeldPoll(self._loop.create_future())
        self._poll = poll
        self._dispatch()
        if not poll.future.done():
            hold = self._config.poll_hold_seconds if hold_seconds is None else hold_seconds
            self._holds.start(poll, hold, self)
        return poll

    @reports_after
    def close_poll(self, poll: HeldPoll) -> None:
        """Called once the poll's request ends, however it ended."""
        if self._poll is poll:
            self._poll = None
        self._holds.release(poll)
        self._mark_seen()

    def delivery_lost(self, command: Command) -> None:
        """The poll carrying ``command`` dropped before its answer was written.

        If no other delivery reached the camera, the response timeout starts
        again at the next one; should none come within the connect timeout,
        the callers get ``CameraOffline``.
        """
        pending = self._in_flight.get(command.request_id)
        if pending is None or pending.deliveries == 0:
            return
        pending.deliveries -= 1
        if pending.deliveries == 0:
            if pending.timer is not None:
                pending.timer.cancel()
            pending.timer = self._loop.call_later(
                self._config.connect_timeout_seconds, self._end_wait_for_redelivery, pending
            )

    def expects_result(self) -> bool:
        """A result from this camera could be accepted or recognised as a repeat now."""
        self._forget_old_accepted()
        return bool(self._in_flight or self._accepted)

    def awaits(self, request_id: str) -> bool:
        """``request_id`` names a command awaiting its result, or one accepted recently."""
        self._forget_old_accepted()
        return request_id in self._in_flight or request_id in (self._accepted or ())

    @property
    def uploads_in_flight(self) -> int:
        """``/send_logs`` bodies of this camera being read now."""
        return self._uploads

    @property
    def upload_limit(self) -> int:
        """How many uploads this camera may have in flight: one per unanswered command,
        plus one (a retry of a result whose first upload the server has not seen end)."""
        return len(self._in_flight) + 1

    def may_start_upload(self) -> bool:
        """Another upload stays within ``upload_limit``."""
        return self._uploads < self.upload_limit

    @reports_after
    def upload_started(self) -> int:
        """A ``/send_logs`` body is being read: the camera counts as seen until it ends.
        Returns the delivery serial to pass to ``upload_lost`` should the upload break off."""
        self._uploads += 1
        self._mark_seen()
        return self._deliveries_made

    @reports_after
    def upload_ended(self) -> None:
        self._uploads -= 1
        self._mark_seen()

    def upload_lost(self, request_id: str | None, started: int) -> None:
        """An upload broke off mid-body: its result is lost like a poll that dropped.

        The command (the one named, else the one unanswered) is redelivered on
        the next poll; should none come within the connect timeout (and before
        the result was due anyway), its callers get ``CameraOffline``. The camera
        had the command: its result stays due from the first delivery (504 then),
        however often it is delivered again. A command
        delivered again after the upload started (``started``, from
        ``upload_started``) was taken again by the camera: that delivery stands.
        """
        if request_id is None:
            pending = next(iter(self._in_flight.values()), None)
        else:
            pending = self._in_flight.get(request_id)
        if pending is None or pending.deliveries == 0 or pending.last_delivery > started:
            return
        pending.deliveries = 0
        pending.taken = True
        if pending.timer is not None:
            pending.timer.cancel()
        wait = min(
            self._config.connect_timeout_seconds, max(0.0, pending.result_due - self._loop.time())
        )
        pending.timer = self._loop.call_later(wait, self._end_wait_for_redelivery, pending)

    @reports_after
    def submit_result(self, request_id: str | None, result: LogResult) -> Receipt:
        """Hand a posted result to the callers of the command it answers (a hold each)."""
        if self._closed:
            raise ShuttingDown("the server is shutting down; its callers were answered 503")
        self._mark_seen()
        self._drop_departed()
        if request_id is None:
            pending = next(iter(self._in_flight.values()), None)
            if pending is None:
                self._observer.result_received(self.camera_id, ResultOutcome.LATE)
                raise UnknownRequest(
                    f"camera {self.camera_id!r} has no command awaiting a result "
                    "(a result without requestId answers only the one unanswered command)"
                )
        else:
            pending = self._in_flight.get(request_id)
            if pending is None:
                self._forget_old_accepted()
                if request_id in (self._accepted or ()):
                    self._observer.result_received(self.camera_id, ResultOutcome.DUPLICATE)
                    return Receipt(ResultOutcome.DUPLICATE, request_id, 0)
                self._observer.result_received(self.camera_id, ResultOutcome.LATE)
                raise UnknownRequest(
                    f"no command {shown(request_id)} is awaiting a result from camera "
                    f"{self.camera_id!r}: it is unknown, expired, or was issued to another camera"
                )
        accepted_id = pending.command.request_id
        self._finish(pending)
        self._remember_accepted(accepted_id)
        for caller in pending.callers:
            if not caller.future.done():
                result.hold()
                caller.future.set_result(result)
        self._observer.result_received(self.camera_id, ResultOutcome.ACCEPTED)
        self._dispatch()
        return Receipt(ResultOutcome.ACCEPTED, accepted_id, len(pending.callers))

    # ------------------------------------------------------------------ user side

    @reports_after
    def enqueue(
        self, time_range: TimeRange, *, ref: str | None = None, pickup_within: float | None = None
    ) -> Caller:
        """Queue a caller for the next command; it waits at most the connect timeout
        (or ``pickup_within`` seconds, what is left of it when it was queued elsewhere)."""
        if self._closed:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        if not self.is_online():
            raise CameraOffline(
                f"camera {self.camera_id!r} is offline: last seen "
                f"{self._seconds_since_seen():.0f} s ago; retry once it polls again"
            )
        if len(self._queue) >= self._config.max_waiting_per_camera:
            raise QueueFull(
                f"{len(self._queue)} callers are already waiting for camera "
                f"{self.camera_id!r}; retry shortly"
            )
        caller = Caller(time_range, self._loop.create_future(), ref)
        self._queue[caller] = None
        self._dispatch()
        if caller in self._queue:  # no held poll took it: its pick-up deadline runs
            wait = self._config.connect_timeout_seconds if pickup_within is None else pickup_within
            self._await_pickup(caller, self._loop.time() + max(wait, 0.0))
        return caller

    @reports_after
    def forget(self, caller: Caller) -> None:
        """Called once the caller's request ends, however it ended."""
        caller.deadline = None
        if caller in self._queue:
            del self._queue[caller]
            return
        pending = caller.command
        if pending is None:
            return
        caller.command = None
        pending.callers.pop(caller, None)
        if not pending.callers and self._in_flight.get(pending.command.request_id) is pending:
            self._finish(pending)
            self._observer.command_abandoned(self.camera_id, pending.command.request_id)

    # ------------------------------------------------------------------ handover

    @reports_after
    def export_work(self, *, superseded: bool) -> SessionWork:
        """Take the work out of this session, for another owner to ``import_work`` it.

        Held polls are answered (409 when ``superseded`` by a newer poll
        elsewhere, else noop). Callers keep their futures unresolved: the work
        names them by ``ref``, and the importer resolves them. A caller without
        a ref cannot be followed and gets ``CameraOffline``.
        """
        self._drop_departed()
        poll, self._poll = self._poll, None
        if poll is not None:
            self._holds.release(poll)
            if not poll.future.done():
                if superseded:
                    poll.future.set_exception(
                        PollSuperseded(
                            f"a newer poll for camera {self.camera_id!r} reached another server"
                        )
                    )
                else:
                    poll.future.set_result(None)
        now = self._loop.time()
        queued = self._export_callers(self._queue, now)
        self._queue.clear()
        self._clear_pickups()
        in_flight: list[InFlightWork] = []
        for pending in self._in_flight.values():
            due = now if pending.timer is None else pending.timer.when()
            if pending.timer is not None:
                pending.timer.cancel()
            callers = self._export_callers(pending.callers, now)
            if callers:
                in_flight.append(
                    InFlightWork(
                        pending.command.request_id,
                        pending.command.time_range,
                        callers,
                        max(due - now, 0.0),
                        offline_after=pending.deliveries == 0,
                        result_due_within=(
                            max(pending.result_due - now, 0.0) if pending.taken else None
                        ),
                    )
                )
        self._in_flight.clear()
        return SessionWork(
            queued=queued,
            in_flight=tuple(in_flight),
            accepted=tuple(self._accepted or ()),
            last_seen=self._last_seen_wall,
        )

    def _export_callers(self, callers: dict[Caller, None], now: float) -> tuple[QueuedWork, ...]:
        exported: list[QueuedWork] = []
        for caller in callers:
            due = now if caller.deadline is None else caller.deadline
            caller.deadline = None
            caller.command = None
            if caller.ref is not None:
                exported.append(QueuedWork(caller.ref, caller.time_range, max(due - now, 0.0)))
            elif not caller.future.done():
                caller.future.set_exception(
                    CameraOffline(f"camera {self.camera_id!r} moved to another server; retry")
                )
        return tuple(exported)

    @reports_after
    def import_work(self, work: SessionWork) -> list[Caller]:
        """Install work exported elsewhere; returns the callers created for it.

        Imported callers queue ahead of this session's own (they arrived
        first); imported commands are redelivered on the next poll, a command
        the camera already took keeping its result deadline.
        """
        if self._closed:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        created: list[Caller] = []
        queue: dict[Caller, None] = {}
        now = self._loop.time()
        for item in work.queued:
            caller = Caller(item.time_range, self._loop.create_future(), item.ref)
            self._await_pickup(caller, now + max(item.pickup_within, 0.0))
            queue[caller] = None
            created.append(caller)
        queue.update(self._queue)
        self._queue = queue
        for flight in work.in_flight:
            if flight.request_id in self._in_flight:
                continue
            callers: dict[Caller, None] = {}
            pending = PendingCommand(Command(flight.request_id, flight.time_range), callers)
            for item in flight.callers:
                caller = Caller(item.time_range, self._loop.create_future(), item.ref)
                caller.command = pending
                callers[caller] = None
                created.append(caller)
            if flight.result_due_within is not None:  # the camera took it: still due then
                pending.taken = True
                pending.result_due = now + flight.result_due_within
            if flight.offline_after:
                expire = self._end_wait_for_redelivery
            else:
                # It reached the camera elsewhere: its result stays due when it was
                # there, however often it is delivered again here.
                pending.deliveries = 1
                pending.result_due = now + flight.result_within
                expire = self._end_wait_for_result
            pending.timer = self._loop.call_later(flight.result_within, expire, pending)
            self._in_flight[flight.request_id] = pending
        for request_id in work.accepted:
            self._remember_accepted(request_id)
        if work.last_seen is not None and (
            self._last_seen_wall is None or work.last_seen > self._last_seen_wall
        ):
            self._last_seen_wall = work.last_seen
            self._last_seen_at = self._loop.time() - max(self._wall_clock() - work.last_seen, 0.0)
            self._tally.seen(self, in_order=False)
        self._dispatch()
        return created

    # ------------------------------------------------------------------ lifecycle

    @reports_after
    def close(self) -> None:
        """Answer everyone: held polls get noop, callers get ShuttingDown."""
        self._closed = True
        poll, self._poll = self._poll, None
        if poll is not None:
            self._holds.release(poll)
            if not poll.future.done():
                poll.future.set_result(None)
        callers = list(self._queue)
        self._queue.clear()
        self._clear_pickups()
        for pending in self._in_flight.values():
            if pending.timer is not None:
                pending.timer.cancel()
            callers.extend(pending.callers)
        self._in_flight.clear()
        for caller in callers:
            caller.deadline = None
            if not caller.future.done():
                caller.future.set_exception(
                    ShuttingDown("the server is shutting down; retry in a few seconds")
                )

    def mark_seen(self) -> None:
        """The camera made a request (say a ``/send_logs`` that was then rejected)."""
        self._mark_seen()

    def is_online(self) -> bool:
        """Polling or uploading now, or seen within the connect timeout."""
        if self._poll is not None or self._uploads:
            return True
        return self._seconds_since_seen() <= self._config.connect_timeout_seconds

    def note_if_went_offline(self) -> bool:
        """True once each time a camera announced online is found offline."""
        if self._announced_online and not self.is_online():
            self._announced_online = False
            return True
        return False

    def has_answered(self) -> bool:
        """True once a result of this camera's was accepted."""
        return bool(self._accepted)

    def is_idle(self) -> bool:
        return not (self._poll is not None or self._queue or self._in_flight or self._uploads)

    def seconds_since_seen(self) -> float:
        return self._seconds_since_seen()

    def status(self) -> CameraStatus:
        return CameraStatus(
            self.camera_id,
            self.is_online(),
            self._last_seen_wall,
            self._poll is not None,
            len(self._queue),
            len(self._in_flight),
        )

    @property
    def last_seen_at(self) -> float | None:
        """Loop time of the last request seen from the camera."""
        return self._last_seen_at

    def leave_tally(self) -> None:
        """This session leaves the registry: its numbers come off the totals."""
        self._sync(polling=False, waiting=0, in_flight=0, active=False)
        self._tally.forget(self)
        self._tally = FleetTally(self._config.connect_timeout_seconds, self._loop.time)

    def _sync(
        self,
        *,
        polling: bool | None = None,
        waiting: int | None = None,
        in_flight: int | None = None,
        active: bool | None = None,
    ) -> None:
        """Report this session's numbers that changed to the registry's totals."""
        polling = self._poll is not None if polling is None else polling
        self._counted.report(
            self._tally,
            self,
            polling=polling,
            waiting=len(self._queue) if waiting is None else waiting,
            in_flight=len(self._in_flight) if in_flight is None else in_flight,
            active=(polling or self._uploads > 0) if active is None else active,
        )

    # ------------------------------------------------------------------ internals

    def _dispatch(self) -> None:
        """Hand work to the held poll: an unanswered command first, else every queued caller."""
        poll = self._poll
        if poll is None or poll.future.done():
            return
        self._drop_departed()
        if self._in_flight:
            self._deliver(poll, next(iter(self._in_flight.values())), redelivery=True)
            return
        if not self._queue:
            return
        callers, self._queue = self._queue, {}
        self._clear_pickups()
        command = Command(new_request_id(), TimeRange.union(c.time_range for c in callers))
        pending = PendingCommand(command, callers)
        for caller in callers:
            caller.deadline = None
            caller.command = pending
        self._in_flight[command.request_id] = pending
        self._deliver(poll, pending, redelivery=False)

    def _deliver(self, poll: HeldPoll, pending: PendingCommand, *, redelivery: bool) -> None:
        self._mark_seen()  # the poll ends here, before its request task resumes
        if self._poll is poll:
            self._poll = None
        self._holds.release(poll)
        if pending.deliveries == 0:
            if pending.timer is not None:
                pending.timer.cancel()
            if not pending.taken:  # its first delivery: the result is due from now
                pending.result_due = self._loop.time() + self._config.response_timeout_seconds
            pending.timer = self._loop.call_at(
                pending.result_due, self._end_wait_for_result, pending
            )
        pending.deliveries += 1
        self._deliveries_made += 1
        pending.last_delivery = self._deliveries_made
        poll.future.set_result(pending.command)
        self._observer.command_delivered(
            self.camera_id, pending.command.request_id, len(pending.callers), redelivery
        )

    def _drop_departed(self) -> None:
        """Forget callers cancelled this loop turn, before their own ``forget`` ran."""
        for caller in [c for c in self._queue if c.future.cancelled()]:
            self.forget(caller)
        for pending in list(self._in_flight.values()):
            if all(caller.future.cancelled() for caller in pending.callers):
                for caller in list(pending.callers):
                    self.forget(caller)

    def _finish(self, pending: PendingCommand) -> None:
        del self._in_flight[pending.command.request_id]
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None

    @reports_after
    def end_hold(self, poll: HeldPoll) -> None:
        """The poll's hold is over (the ``HoldClock``'s call)."""
        self._holds.release(poll)
        if self._poll is poll:
            self._mark_seen()  # the poll ends here, before its request task resumes
            self._poll = None
        if not poll.future.done():
            poll.future.set_result(None)

    def _await_pickup(self, caller: Caller, deadline: float) -> None:
        """The caller gets ``CameraOffline`` at ``deadline`` unless a poll takes it first."""
        caller.deadline = deadline
        deadlines = self._deadlines = self._deadlines or []
        heapq.heappush(deadlines, (deadline, next(_caller_serials), caller))
        if self._pickup_timer is None or deadline < self._pickup_at:
            self._arm_pickup_timer(deadline)

    def _arm_pickup_timer(self, when: float) -> None:
        if self._pickup_timer is not None:
            self._pickup_timer.cancel()
        self._pickup_at = when
        self._pickup_timer = self._loop.call_at(when, self._end_waits_for_pickup)

    def _clear_pickups(self) -> None:
        """No caller is queued any more: nobody's deadline is watched."""
        self._deadlines = None
        if self._pickup_timer is not None:
            self._pickup_timer.cancel()
            self._pickup_timer = None

    @reports_after
    def _end_waits_for_pickup(self) -> None:
        """Every queued caller whose deadline came gets ``CameraOffline``."""
        self._pickup_timer = None
        # The timer may run a clock tick early: what it was set for is due.
        now = max(self._loop.time(), self._pickup_at)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, caller = heapq.heappop(deadlines)
            if caller.deadline == deadline and caller in self._queue:
                self._end_wait_for_pickup(caller)
        if deadlines:
            self._arm_pickup_timer(deadlines[0][0])

    def _end_wait_for_pickup(self, caller: Caller) -> None:
        caller.deadline = None
        del self._queue[caller]
        if not caller.future.done():
            caller.future.set_exception(
                CameraOffline(
                    f"camera {self.camera_id!r} did not pick up the request within "
                    f"{self._config.connect_timeout_seconds:g} s; retry when it polls again"
                )
            )

    def _end_wait_for_result(self, pending: PendingCommand) -> None:
        timeout = self._config.response_timeout_seconds
        self._fail_pending(
            pending,
            lambda: CameraTimeout(
                f"camera {self.camera_id!r} took the command but sent no result "
                f"within {timeout:g} s"
            ),
        )

    def _end_wait_for_redelivery(self, pending: PendingCommand) -> None:
        timeout = self._config.connect_timeout_seconds
        self._fail_pending(
            pending,
            lambda: CameraOffline(
                f"camera {self.camera_id!r} dropped the poll carrying the request, or its "
                f"upload of the result broke off, and it did not poll again within {timeout:g} s "
                "or before the result was due"
            ),
        )

    @reports_after
    def _fail_pending(self, pending: PendingCommand, error: Callable[[], RelayError]) -> None:
        """A pending command's timer ran out: its callers get ``error()``, it is dropped."""
        pending.timer = None
        if self._in_flight.get(pending.command.request_id) is not pending:
            return
        del self._in_flight[pending.command.request_id]
        for caller in pending.callers:
            if not caller.future.done():
                caller.future.set_exception(error())
        self._observer.command_timed_out(
            self.camera_id, pending.command.request_id, len(pending.callers)
        )
        self._dispatch()

    def _remember_accepted(self, request_id: str) -> None:
        accepted = self._accepted = self._accepted or {}
        accepted[request_id] = self._loop.time()
        while len(accepted) > self._config.remembered_results:
            del accepted[next(iter(accepted))]

    def _forget_old_accepted(self) -> None:
        """A repeat is recognised for as long as a ``/logs`` call can last."""
        oldest_kept = self._loop.time() - self._config.longest_logs_wait
        while self._accepted and next(iter(self._accepted.values())) < oldest_kept:
            del self._accepted[next(iter(self._accepted))]

    def _mark_seen(self) -> None:
        self._last_seen_at = self._loop.time()
        self._last_seen_wall = self._wall_clock()
        self._tally.seen(self)

    def _seconds_since_seen(self) -> float:
        if self._last_seen_at is None:
            return float("inf")
        return self._loop.time() - self._last_seen_at
