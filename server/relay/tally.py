"""Fleet totals kept as sessions change, so that reading them costs O(1), not O(fleet).

Polls held, callers waiting and commands in flight are exact counts that each
session adjusts when its own numbers change. Online is time-based (polling or
uploading now, or seen within the connect timeout): the tally keeps the sessions
seen, oldest first, and at each read lets go of those seen too long ago; each
session is let go at most once per time it is seen, so a read costs O(1) amortised.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar


class Counted(Protocol):
    """What the tally reads of a session: when it was last seen (loop time)."""

    @property
    def last_seen_at(self) -> float | None: ...


class FleetTally:
    """Totals of the sessions that report to it (see ``CameraSession._sync``)."""

    __slots__ = (
        "_both",
        "_clock",
        "_recent",
        "_stray",
        "active",
        "in_flight",
        "polls",
        "timeout",
        "waiting",
    )

    def __init__(self, connect_timeout: float, clock: Callable[[], float]) -> None:
        self.timeout = connect_timeout
        self._clock = clock
        self.polls = 0
        self.waiting = 0
        self.in_flight = 0
        #: sessions polling or uploading now
        self.active: set[Counted] = set()
        #: sessions seen within the timeout (maybe), in the order they were last seen
        self._recent: OrderedDict[Counted, None] = OrderedDict()
        #: sessions whose last-seen time was set out of order (taken over from elsewhere)
        self._stray: set[Counted] = set()
        #: sessions both active and in ``_recent`` or ``_stray``
        self._both = 0

    def seen(self, session: Counted, *, in_order: bool = True) -> None:
        """``session`` was seen just now (``in_order``), or at a time set from elsewhere."""
        fresh = session not in self._recent and session not in self._stray
        if in_order:
            self._stray.discard(session)
            self._recent[session] = None
            self._recent.move_to_end(session)
        else:
            self._recent.pop(session, None)
            self._stray.add(session)
        if fresh and session in self.active:
            self._both += 1

    def set_active(self, session: Counted, active: bool) -> None:
        if active:
            self.active.add(session)
        else:
            self.active.discard(session)
        if session in self._recent or session in self._stray:
            self._both += 1 if active else -1

    def forget(self, session: Counted) -> None:
        """``session`` left the registry (its counts are taken off by the session)."""
        tracked = session in self._recent or session in self._stray
        self._recent.pop(session, None)
        self._stray.discard(session)
        if tracked and session in self.active:
            self._both -= 1
        self.active.discard(session)

    def online(self) -> int:
        """Sessions polling or uploading now, or seen within the timeout."""
        now, timeout = self._clock(), self.timeout
        recent = self._recent
        while recent:
            session = next(iter(recent))
            seen = session.last_seen_at
            if seen is not None and now - seen <= timeout:  # as CameraSession.is_online
                break
            self._let_go(session)
        for session in [s for s in self._stray if not self._fresh(s, now)]:
            self._let_go(session)
        return len(self.active) + len(recent) + len(self._stray) - self._both

    def _fresh(self, session: Counted, now: float) -> bool:
        seen = session.last_seen_at
        return seen is not None and now - seen <= self.timeout

    def _let_go(self, session: Counted) -> None:
        self._recent.pop(session, None)
        self._stray.discard(session)
        if session in self.active:
            self._both -= 1


class Reported:
    """What one session last reported to the totals, so that it reports only changes."""

    __slots__ = ("active", "in_flight", "polling", "waiting")

    def __init__(self) -> None:
        self.polling = False
        self.waiting = 0
        self.in_flight = 0
        self.active = False

    def report(
        self,
        tally: FleetTally,
        session: Counted,
        *,
        polling: bool,
        waiting: int,
        in_flight: int,
        active: bool,
    ) -> None:
        if polling is not self.polling:
            tally.polls += 1 if polling else -1
            self.polling = polling
        if waiting != self.waiting:
            tally.waiting += waiting - self.waiting
            self.waiting = waiting
        if in_flight != self.in_flight:
            tally.in_flight += in_flight - self.in_flight
            self.in_flight = in_flight
        if active is not self.active:
            tally.set_active(session, active)
            self.active = active


class Reporting(Protocol):
    def _sync(self) -> None: ...


S = TypeVar("S", bound=Reporting)
P = ParamSpec("P")
R = TypeVar("R")


def reports_after(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A session's method after which it reports its numbers that changed to the totals."""

    @functools.wraps(method)
    def reported(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._sync()

    return reported
