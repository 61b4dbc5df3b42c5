"""The registry of camera sessions, bounded and swept, and the operations the HTTP layer calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NoReturn

from sortedcontainers import SortedList

from .budget import ResultBudget
from .config import RelayConfig
from .errors import (
    CameraOffline,
    CameraTimeout,
    CameraUnknown,
    RegistryFull,
    ShuttingDown,
    TooManyUploads,
    UnknownRequest,
)
from .handover import SessionWork
from .holds import HoldClock
from .logresult import LogResult, LogSelection
from .observer import RelayObserver, ResultOutcome
from .records import CameraStatus, Command, Receipt
from .service import RelayService, RelayStats
from .session import CameraSession
from .tally import FleetTally
from .timerange import TimeRange
from .upload import Receiving
from .waiting import Caller


class Relay(RelayService):
    """Relays ``/logs`` work to cameras that only poll: the single-process ``RelayService``.

    The HTTP layer calls ``poll``, ``receive_result``, ``submit_result`` and
    ``camera_seen`` for cameras, ``fetch_logs``, ``list_cameras`` and
    ``fleet_stats`` for users, and reads ``closed``; cluster mode
    (``server.cluster``) moves a camera's work between relays with
    ``hand_over`` and ``take_over``; the application runs ``sweep``
    periodically, reads ``stats`` for metrics and calls ``close`` on shutdown.
    A camera exists from its first poll, up to ``config.max_cameras`` of them.
    """

    def __init__(
        self,
        config: RelayConfig,
        observer: RelayObserver | None = None,
        wall_clock: Callable[[], float] = time.time,
        poll_ended: Callable[[str, Command | None], None] | None = None,
    ) -> None:
        self.config = config
        self._observer: RelayObserver = observer or RelayObserver()
        self._wall_clock = wall_clock
        #: called with the camera and the command a poll returned (``None``: a noop or an
        #: error) once it is no longer held: a composing node learns of each poll's end
        #: without a coroutine of its own around it
        self._poll_ended = poll_ended
        self._sessions: dict[str, CameraSession] = {}
        #: the ids of ``_sessions`` in ``cameras()`` order, kept as cameras join and leave
        #: (O(log n) each), so that a page costs O(page) however the fleet churns
        self._ids: SortedList[str] = SortedList()
        self._closed = False
        self.budget = ResultBudget(config.max_result_bytes_in_flight)
        #: ``fetch_logs`` callers with the loop time past which they get ``CameraTimeout``
        self._watched: dict[Caller, tuple[float, str]] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        self._tally: FleetTally | None = None
        self._holds: HoldClock | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Nothing to connect to: the state is this process's."""

    async def stop(self) -> None:
        """Nothing to let go of: ``close`` answered everyone."""

    @property
    def observer(self) -> RelayObserver:
        return self._observer

    def has_session(self, camera_id: str) -> bool:
        return camera_id in self._sessions

    def camera_ids(self) -> list[str]:
        """The ids of the cameras held here, in the order they were added."""
        return list(self._sessions)

    def enqueue(
        self,
        camera_id: str,
        time_range: TimeRange,
        *,
        ref: str,
        pickup_within: float | None = None,
    ) -> Caller:
        """Queue a caller whose owner resolves it elsewhere (named by ``ref``) at the
        camera's session; raises ``CameraOffline`` when there is none."""
        session = self._sessions.get(camera_id)
        if session is None:
            raise CameraOffline(f"camera {camera_id!r} has not connected; retry once it polls")
        return session.enqueue(time_range, ref=ref, pickup_within=pickup_within)

    def forget(self, camera_id: str, caller: Caller) -> None:
        """The caller's request ended: drop its work where it sits (if the session is here)."""
        session = self._sessions.get(camera_id)
        if session is not None:
            session.forget(caller)

    async def poll(self, camera_id: str, hold_seconds: float | None = None) -> Command | None:
        """Wait for work for this camera: a command, or ``None`` (noop) after the hold
        (``hold_seconds``: what is left of it, when the request already waited)."""
        if self._closed:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        session = self._sessions.get(camera_id)
        if session is None:
            if len(self._sessions) >= self.config.max_cameras:
                await self._refuse(camera_id)
            session = self._new_session(camera_id)
        poll = session.open_poll(hold_seconds)
        command: Command | None = None
        try:
            command = await poll.future
            return command
        except asyncio.CancelledError:
            # Cancelled with a command already set: the request ended before its answer
            # was written, so the camera cannot have seen it.
            future = poll.future
            if future.done() and not future.cancelled() and future.exception() is None:
                command = future.result()
                if command is not None:
                    session.delivery_lost(command)
                command = None
            raise
        finally:
            session.close_poll(poll)
            if self._poll_ended is not None:
                self._poll_ended(camera_id, command)

    def _new_session(self, camera_id: str) -> CameraSession:
        if self._tally is None or self._holds is None:  # made here: they read the loop's clock
            loop = asyncio.get_running_loop()
            self._tally = FleetTally(self.config.connect_timeout_seconds, loop.time)
            self._holds = HoldClock(loop)
        session = CameraSession(
            camera_id, self.config, self._observer, self._wall_clock, self._tally, self._holds
        )
        self._sessions[camera_id] = session
        self._ids.add(camera_id)
        return session

    async def _refuse(self, camera_id: str) -> NoReturn:
        """A new id past ``max_cameras``: refused, after a delay (a camera retries at once)."""
        known = len(self._sessions)
        self._observer.camera_refused(camera_id, known)
        await asyncio.sleep(self.config.refusal_delay_seconds)
        if self._closed:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        raise RegistryFull(
            f"the server already tracks {known} cameras, its limit (MAX_CAMERAS), and "
            f"camera {camera_id!r} is new: retry later; idle cameras are forgotten over time"
        )

    async def fetch_logs(self, camera_id: str, time_range: TimeRange) -> LogSelection:
        """Have the camera send its logs; the entries inside ``time_range``.

        The selection holds the shared result: release it once written.
        """
        if self._closed:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        session = self._sessions.get(camera_id)
        if session is None:
            raise CameraUnknown.of(camera_id)
        caller = session.enqueue(time_range)
        result: LogResult | None = None
        # The session's timers end every wait; this ceiling only guards against a bug.
        self._watch(caller, camera_id)
        try:
            result = await caller.future
        finally:
            self._watched.pop(caller, None)
            session.forget(caller)
            future = caller.future
            if (
                result is None  # cancelled (or timed out) as the result came: let go of it
                and future.done()
                and not future.cancelled()
                and future.exception() is None
            ):
                future.result().release()
        try:
            return result.select(time_range)
        finally:
            result.release()

    def _watch(self, caller: Caller, camera_id: str) -> None:
        """``CameraTimeout`` for ``caller`` past ``config.longest_logs_wait``, should no
        session timer end its wait (a bug). One timer for every caller: the ceiling is the
        same for all, so the callers' deadlines come in the order they arrived."""
        deadline = asyncio.get_running_loop().time() + self.config.longest_logs_wait
        self._watched[caller] = (deadline, camera_id)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_at(deadline, self._end_overdue)

    def _end_overdue(self) -> None:
        self._watchdog = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        watched = self._watched
        while watched:
            caller = next(iter(watched))
            deadline, camera_id = watched[caller]
            if deadline > now:
                self._watchdog = loop.call_at(deadline, self._end_overdue)
                return
            del watched[caller]
            if not caller.future.done():
                caller.future.set_exception(
                    CameraTimeout(f"camera {camera_id!r} sent no result in time")
                )

    def receive_result(self, camera_id: str, declared_bytes: int | None) -> Receiving:
        """An upload of a result: 404 (``UnknownRequest``) before it is read if nobody
        awaits one from this camera, 429 (``TooManyUploads``) if the camera already has
        as many uploads in flight as it may (one per unanswered command, plus one),
        else the camera counts as seen while it streams, and its bytes are reserved
        from the budget (waiting their turn) before it is read.
        """
        if self._closed:
            raise ShuttingDown("the server is shutting down; its callers were answered 503")
        session = self._sessions.get(camera_id)
        if session is None or not session.expects_result():
            self._observer.upload_refused(camera_id, body_read=False)
            self._observer.result_received(camera_id, ResultOutcome.LATE)
            raise UnknownRequest(
                f"camera {camera_id!r} has no command awaiting a result; poll first"
            )
        if not session.may_start_upload():
            in_flight = session.uploads_in_flight
            unanswered = session.upload_limit - 1
            raise TooManyUploads(
                f"camera {camera_id!r} already has {in_flight} results being uploaded, the "
                f"most it may have with {unanswered} unanswered command(s) (one per command, "
                "plus one): let an upload finish or close its connection, then retry"
            )
        return Receiving(session, self._observer, self.budget, declared_bytes)

    def submit_result(self, camera_id: str, request_id: str | None, result: LogResult) -> Receipt:
        """Accept a camera's result; raises ``UnknownRequest`` when nothing awaits it."""
        session = self._sessions.get(camera_id)
        if session is None:
            self._observer.result_received(camera_id, ResultOutcome.LATE)
            raise UnknownRequest(
                f"camera {camera_id!r} has no command awaiting a result; poll first"
            )
        return session.submit_result(request_id, result)

    def hand_over(self, camera_id: str, *, superseded: bool) -> SessionWork | None:
        """Drop this camera's session and return its work, for another owner to take over.

        Its held polls are answered (409 when ``superseded``, else noop); its
        callers stay unresolved (see ``CameraSession.export_work``).
        """
        session = self._sessions.pop(camera_id, None)
        if session is None:
            return None
        self._ids.remove(camera_id)
        work = session.export_work(superseded=superseded)
        session.leave_tally()
        return work

    def take_over(self, camera_id: str, work: SessionWork) -> list[Caller]:
        """Install work handed over from elsewhere; returns the callers created for it."""
        if self._closed:
            raise ShuttingDown("the server is shutting down; retry in a few seconds")
        session = self._sessions.get(camera_id)
        if session is None:
            session = self._new_session(camera_id)
        return session.import_work(work)

    async def list_cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        """``cameras`` for the HTTP layer (a cluster reads the whole fleet, hence async)."""
        return self.cameras(prefix, online, after, limit)

    async def fleet_stats(self) -> RelayStats:
        """``stats`` for the HTTP layer: every camera this relay can reach."""
        return self.stats()

    def camera_seen(self, camera_id: str) -> None:
        """Note a request from a camera already known (polls create cameras; this does not)."""
        session = self._sessions.get(camera_id)
        if session is not None:
            session.mark_seen()

    def cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        """Cameras sorted by id: every one, or those whose id starts with ``prefix``,
        in the ``online`` state when given, with ids after ``after``, at most ``limit``."""
        ids = self._ids
        sessions = self._sessions
        if not prefix and online is None and after is None and limit is None:
            return [sessions[camera_id].status() for camera_id in ids]
        start = ids.bisect_left(prefix)
        if after is not None:
            start = max(start, ids.bisect_right(after))
        found: list[CameraStatus] = []
        for camera_id in ids.islice(start):
            if limit is not None and len(found) >= limit:
                break
            if not camera_id.startswith(prefix):
                break
            status = sessions[camera_id].status()
            if online is None or status.online is online:
                found.append(status)
        return found

    def session(self, camera_id: str) -> CameraSession | None:
        return self._sessions.get(camera_id)

    def stats(self) -> RelayStats:
        """Fleet totals in O(1) (amortised): kept as the sessions change (``FleetTally``)."""
        tally = self._tally
        if tally is None:
            return RelayStats(0, 0, 0, 0, 0, self.budget.in_use, self.budget.waiting)
        return RelayStats(
            len(self._sessions),
            tally.online(),
            tally.polls,
            tally.waiting,
            tally.in_flight,
            self.budget.in_use,
            self.budget.waiting,
        )

    def walked_stats(self) -> RelayStats:
        """``stats`` counted by walking every session (O(fleet)): for tests to compare."""
        online = polls = waiting = in_flight = 0
        for session in self._sessions.values():
            status = session.status()
            online += status.online
            polls += status.polling
            waiting += status.waiting
            in_flight += status.in_flight
        return RelayStats(
            len(self._sessions),
            online,
            polls,
            waiting,
            in_flight,
            self.budget.in_use,
            self.budget.waiting,
        )

    async def sweep(self) -> int:
        """Report cameras that went offline; forget idle ones unseen past their retention.

        A camera that never answered a command is forgotten after
        ``config.unanswered_retention_seconds``, one that did after
        ``config.session_retention_seconds``. The sweep looks at
        ``config.sweep_slice`` sessions at a time and yields to the event loop
        between slices, so a large registry never stalls the loop. Returns how
        many sessions were forgotten. Call it periodically.
        """
        camera_ids = list(self._sessions)
        step = self.config.sweep_slice
        forgotten = 0
        for start in range(0, len(camera_ids), step):
            if start:
                await asyncio.sleep(0)
            forgotten += self._sweep_slice(camera_ids[start : start + step])
        return forgotten

    def _sweep_slice(self, camera_ids: list[str]) -> int:
        answered_retention = self.config.session_retention_seconds
        unanswered_retention = self.config.unanswered_retention_seconds
        sessions = self._sessions
        forgotten = 0
        for camera_id in camera_ids:
            session = sessions.get(camera_id)
            if session is None:  # forgotten while the sweep yielded
                continue
            if session.note_if_went_offline():
                self._observer.camera_disconnected(camera_id)
            if not session.is_idle():
                continue
            retention = answered_retention if session.has_answered() else unanswered_retention
            if session.seconds_since_seen() > retention:
                del sessions[camera_id]
                self._ids.remove(camera_id)
                session.leave_tally()
                forgotten += 1
        return forgotten

    def close(self) -> None:
        """Answer every held poll (noop) and every waiting caller (ShuttingDown)."""
        self._closed = True
        for session in self._sessions.values():
            session.close()
