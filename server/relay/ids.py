"""Random hex ids at a small cost: one ``os.urandom`` call serves many ids.

Each id is cut from fresh random bytes that no other id uses, so ids are as
unguessable as ``secrets.token_hex`` makes them; a forked child starts its own pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["random_hex", "use_source"]

#: random bytes drawn at once (8,192 hex digits: 256 ids of 32)
POOL_BYTES = 4096


class _HexPool:
    __slots__ = ("_at", "_digits", "source")

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0
        self.source: Callable[[int], bytes] = os.urandom

    def take(self, count: int) -> str:
        at = self._at
        end = at + count
        if end > len(self._digits):
            self._digits = self.source(max(POOL_BYTES, (count + 1) // 2)).hex()
            at, end = 0, count
        self._at = end
        return self._digits[at:end]

    def reset(self) -> None:
        self._digits = ""
        self._at = 0


_POOL = _HexPool()
os.register_at_fork(after_in_child=_POOL.reset)


def random_hex(digits: int) -> str:
    """``digits`` random lowercase hex digits (``secrets.token_hex(digits // 2)``)."""
    return _POOL.take(digits)


def use_source(source: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Draw the random bytes from ``source`` from now on (``os.urandom`` by default; a
    seeded one replays a simulated run exactly); returns the source used until now."""
    previous = _POOL.source
    _POOL.reset()
    _POOL.source = source
    return previous
