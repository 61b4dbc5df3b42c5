"""The end of every held poll, on one loop timer.

A loop timer per held poll costs about 300 bytes (the handle, its arguments and a
copy of the context), and an idle fleet holds one poll per camera for the whole
hold. Here the polls wait in one heap ordered by the end of their hold, under one
timer armed at or before the earliest (it is not cancelled when the heap empties).
A poll released before its end (answered, superseded, its request gone) leaves an
emptied entry in the heap until that end, or until emptied entries are half the
heap, whichever comes first; the entry lets go of the poll at once, so a released
poll's future (and what its outcome holds on to) is not kept alive.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Final, Protocol

from .waiting import HeldPoll

__all__ = ["Hold", "HoldClock", "HoldOwner"]

#: released polls the heap keeps beyond the held ones before it is rebuilt
SLACK: Final = 64


class HoldOwner(Protocol):
    def end_hold(self, poll: HeldPoll) -> None:
        """The poll's hold is over (it was not released first)."""


class Hold:
    """A heap entry: the poll whose hold ends at ``until``, and whom to tell (both
    ``None`` once the poll was released or its hold ended)."""

    __slots__ = ("owner", "poll", "until")

    def __init__(self, until: float, poll: HeldPoll, owner: HoldOwner) -> None:
        self.until = until
        self.poll: HeldPoll | None = poll
        self.owner: HoldOwner | None = owner

    def __lt__(self, other: Hold) -> bool:
        return self.until < other.until


class HoldClock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[Hold] = []
        #: polls in the heap not released yet
        self._held = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def __len__(self) -> int:
        """Polls whose hold is running."""
        return self._held

    @property
    def entries(self) -> int:
        """Polls in the heap, released ones included (bounded: see ``SLACK``)."""
        return len(self._heap)

    def start(self, poll: HeldPoll, seconds: float, owner: HoldOwner) -> None:
        """``owner.end_hold(poll)`` once ``seconds`` have passed, unless released first."""
        hold = Hold(self._loop.time() + max(seconds, 0.0), poll, owner)
        poll.hold = hold
        heapq.heappush(self._heap, hold)
        self._held += 1
        if hold.until < self._armed_for:
            self._arm(hold.until)

    def release(self, poll: HeldPoll) -> None:
        """The poll ended before its hold did (idempotent)."""
        hold = poll.hold
        if hold is None:
            return
        poll.hold = None
        hold.poll = hold.owner = None
        self._held -= 1
        if self._held == 0:
            # The timer stays armed: a camera's next poll, moments later, holds until
            # later than this one did, so it finds the timer early enough; when it
            # fires, it re-arms for what is held then (one timer per hold, not per poll).
            self._heap.clear()
        elif len(self._heap) > 2 * self._held + SLACK:
            self._heap[:] = [entry for entry in self._heap if entry.owner is not None]
            heapq.heapify(self._heap)

    def _arm(self, when: float) -> None:
        self._disarm()
        self._armed_for = when
        self._timer = self._loop.call_at(when, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_for = math.inf

    def _fire(self) -> None:
        # The timer may run a clock tick early: what it was armed for is due.
        now = max(self._loop.time(), self._armed_for)
        self._timer = None
        self._armed_for = math.inf
        heap = self._heap
        while heap and heap[0].until <= now:
            hold = heapq.heappop(heap)
            owner, poll = hold.owner, hold.poll
            if owner is None or poll is None:
                continue
            hold.poll = hold.owner = None
            poll.hold = None
            self._held -= 1
            try:
                owner.end_hold(poll)
            except Exception as error:  # one owner's failure does not stall the others
                self._loop.call_exception_handler(
                    {"message": "ending a poll's hold failed", "exception": error}
                )
        if self._held == 0:
            heap.clear()
        elif heap:
            self._arm(heap[0].until)
