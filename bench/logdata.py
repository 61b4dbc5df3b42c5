"""The deterministic log the bench camera serves, and the exact answer to any range.

Entry ``i`` has ``timestamp = BASE + i * STEP`` and a description of a fixed
length, so the harness knows every ``/logs`` answer without asking the camera.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any, Final

__all__ = ["BASE", "STEP", "Entry", "expected", "make_log"]

BASE: Final = 1_700_000_000.0
STEP: Final = 0.5
#: With this description an entry is about 100 bytes of JSON.
DESCRIPTION_CHARS: Final = 60

Entry = dict[str, Any]


def make_log(count: int, description_chars: int = DESCRIPTION_CHARS) -> list[Entry]:
    """``count`` entries in timestamp order; each also carries its index ``seq``."""
    entries: list[Entry] = []
    for i in range(count):
        text = f"motion detected at ({i % 101}, {i % 37}) #{i}"
        entries.append(
            {
                "timestamp": BASE + i * STEP,
                "description": text.ljust(description_chars, "."),
                "seq": i,
            }
        )
    return entries


def expected(
    entries: Sequence[Entry],
    timestamps: Sequence[float],
    start: float | None,
    end: float | None,
) -> Sequence[Entry]:
    """The entries with ``start <= timestamp <= end`` (``timestamps`` sorted, parallel)."""
    low = bisect.bisect_left(timestamps, -math.inf if start is None else start)
    high = bisect.bisect_right(timestamps, math.inf if end is None else end)
    return entries[low:high]
