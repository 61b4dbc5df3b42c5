"""Inclusive time ranges: what a caller asks for and what a command carries."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass

#: An unbounded side goes on the wire as the extreme finite double: the original
#: camera needs both bounds present and finite.
WIRE_MAX = sys.float_info.max


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``start <= timestamp <= end``; ``None`` leaves a side unbounded.

    A bound is a double, or an integer a double does not hold exactly (as ``/logs``
    reads an integer bound, and the camera's integer timestamps are read); it is
    compared exactly.
    """

    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        for bound in (self.start, self.end):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"bounds must be finite, got {bound!r}")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start!r} is after end {self.end!r}")

    @property
    def wire_start(self) -> float:
        """The start sent to the camera: a double, at or below the exact start."""
        if self.start is None:
            return -WIRE_MAX
        rounded = float(self.start)
        return math.nextafter(rounded, -math.inf) if rounded > self.start else rounded

    @property
    def wire_end(self) -> float:
        """The end sent to the camera: a double, at or above the exact end."""
        if self.end is None:
            return WIRE_MAX
        rounded = float(self.end)
        return math.nextafter(rounded, math.inf) if rounded < self.end else rounded

    @classmethod
    def union(cls, ranges: Iterable[TimeRange]) -> TimeRange:
        """The smallest range covering all of ``ranges`` (unbounded if any side is)."""
        starts: list[float] = []
        ends: list[float] = []
        start_unbounded = end_unbounded = False
        for time_range in ranges:
            if time_range.start is None:
                start_unbounded = True
            else:
                starts.append(time_range.start)
            if time_range.end is None:
                end_unbounded = True
            else:
                ends.append(time_range.end)
        return cls(
            start=None if start_unbounded or not starts else min(starts),
            end=None if end_unbounded or not ends else max(ends),
        )
