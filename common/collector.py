"""The garbage collector's schedule for a process that holds many polls for a long time:
the server, and a camera fleet (``python -m camera --fleet N``), on the other end.

Every held poll (its connection, request, task and coroutines: about 50 objects on
the server) lives for up to ``POLL_HOLD_SECONDS``, long enough to be moved to the
oldest generation, and a fleet renews its polls all the time. CPython (up to 3.13)
walks every object in a full collection once the oldest generation has grown by
a quarter since the last one, so at 19,000 held polls it made a full collection
every 9 s, each stopping the event loop for about 0.9 s (8 s in 90), and a fleet
of as many cameras one every few seconds of 1.6-2.3 s, after which its polls came
in bursts (see docs/BENCHMARKS.md). Held polls rarely leave reference cycles for a
full collection to find, so both make one at most every
``GEN1_COLLECTIONS_PER_FULL`` middle-generation collections instead of every 10:
minutes apart rather than seconds. Python 3.14 collects the old generation
incrementally, in small steps, and keeps its own schedule.
"""

from __future__ import annotations

import gc
import sys
from typing import Final

__all__ = ["GEN1_COLLECTIONS_PER_FULL", "settle_collector"]

#: the third threshold of ``gc.set_threshold`` (CPython's default is 10)
GEN1_COLLECTIONS_PER_FULL: Final = 1000


def settle_collector() -> None:
    """Once started: what start-up built (modules, the app, its routes) lives as long
    as the process, so it leaves the collector's sight; full collections become rare."""
    gc.freeze()
    if sys.version_info < (3, 14):
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, GEN1_COLLECTIONS_PER_FULL)
