"""Capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from typing import Protocol

__all__ = ["Backoff", "UniformSource"]


class UniformSource(Protocol):
    """What the backoff needs from a random generator (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...


class Backoff:
    """Delay ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]``.

    ``next_delay()`` returns a delay and advances; ``reset()`` goes back to the
    first step after a success.  It never sleeps itself.
    """

    __slots__ = ("_attempts", "_rng", "base", "cap")

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, *, rng: UniformSource | None = None
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, got base={base!r} cap={cap!r}")
        self.base = base
        self.cap = cap
        self._rng: UniformSource = rng if rng is not None else random.Random()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last reset."""
        return self._attempts

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        if self._attempts >= 64:  # 2**64 * base is past any sane cap
            return self.cap
        return min(self.cap, self.base * 2.0**self._attempts)

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self._attempts += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self._attempts = 0
