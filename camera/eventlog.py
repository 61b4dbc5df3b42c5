"""The camera's append-only event log."""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict

__all__ = ["EventLog", "LogEntry", "random_description"]


class LogEntry(TypedDict):
    """One event, exactly as it goes on the wire."""

    timestamp: float
    description: str


def random_description(rng: random.Random) -> str:
    """One of the exercise's three kinds of event, picked at random."""
    kind = rng.randrange(3)
    if kind == 0:
        return f"motion detected at ({rng.randint(0, 100)}, {rng.randint(0, 100)})"
    if kind == 1:
        return "user started viewing live video"
    return f"brightness adjusted {rng.randint(0, 100)}"


class EventLog:
    """Entries in the order they were recorded (never re-sorted).

    ``clock`` (default :func:`time.time`) and ``rng`` are injectable so tests
    get deterministic entries.  Entries are shared, not copied: callers must
    not mutate what :meth:`slice` returns.
    """

    __slots__ = ("_clock", "_entries", "_rng", "_sorted", "_timestamps")

    def __init__(
        self,
        entries: Iterable[LogEntry] = (),
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._entries: list[LogEntry] = []
        self._timestamps: list[float] = []
        # While timestamps never decrease, slice() can bisect instead of scan.
        self._sorted = True
        for entry in entries:
            self.append(entry)

    def record(self, now: float | None = None) -> LogEntry:
        """Create, append and return a random entry stamped ``now`` (default: the clock)."""
        timestamp = self._clock() if now is None else now
        entry: LogEntry = {
            "timestamp": timestamp,
            "description": random_description(self._rng),
        }
        self.append(entry)
        return entry

    def append(self, entry: LogEntry) -> None:
        timestamp = entry["timestamp"]
        if (
            isinstance(timestamp, bool)
            or not isinstance(timestamp, (int, float))
            or not math.isfinite(timestamp)
        ):
            raise ValueError(f"timestamp must be a finite number, got {timestamp!r}")
        if self._timestamps and timestamp < self._timestamps[-1]:
            self._sorted = False
        self._entries.append(entry)
        self._timestamps.append(timestamp)

    def slice(self, start: float, end: float) -> list[LogEntry]:
        """Entries with ``start <= timestamp <= end`` (both inclusive), in log order."""
        if not start <= end:  # also catches NaN
            return []
        if self._sorted:
            lo = bisect.bisect_left(self._timestamps, start)
            hi = bisect.bisect_right(self._timestamps, end, lo=lo)
            return self._entries[lo:hi]
        return [
            e for e, t in zip(self._entries, self._timestamps, strict=True) if start <= t <= end
        ]

    @property
    def entries(self) -> tuple[LogEntry, ...]:
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[LogEntry]:
        return iter(self._entries)
