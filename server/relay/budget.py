"""The memory budget for results: bytes held for callers or being read from cameras.

An upload reserves what it declares (``Content-Length``) before its body is
read, and grows its reservation as the body and its index grow. Past the
limit, uploads wait their turn (first come, first served) instead of being
refused. The oldest upload still reading never waits to grow, so uploads that
each hold part of the budget cannot wait on one another for ever; the budget
can then be exceeded by that one upload's growth beyond its reservation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

#: what an upload without ``Content-Length`` reserves at first; it grows as it is read
FIRST_RESERVATION_BYTES = 64 * 1024


class Reservation:
    """Bytes of the budget taken by one upload and then by the result it became."""

    __slots__ = ("_budget", "bytes", "reading")

    def __init__(self, budget: ResultBudget, size: int) -> None:
        self._budget = budget
        self.bytes = size
        #: the body is still being read (only such a reservation can be the oldest upload)
        self.reading = True

    async def grow_to(self, size: int) -> None:
        """Hold at least ``size`` bytes, waiting while the budget has no room."""
        if size > self.bytes:
            await self._budget._grow(self, size - self.bytes)

    def done_reading(self) -> None:
        if self.reading:
            self.reading = False
            self._budget._done_reading(self)

    def release(self) -> None:
        """Give the bytes back (once; later calls do nothing)."""
        self.done_reading()
        if self.bytes:
            self._budget._give_back(self.bytes)
            self.bytes = 0


class ResultBudget:
    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the budget must be positive, got {limit}")
        self.limit = limit
        self.in_use = 0
        #: uploads reading now, oldest first
        self._reading: dict[Reservation, None] = {}
        #: (bytes wanted, reservation growing or None for a new one, future), in arrival order
        self._waiters: deque[tuple[int, Reservation | None, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def reserve(self, size: int) -> Reservation:
        """A reservation of ``size`` bytes (at most the limit), once the budget has room."""
        reservation = self.reserve_now(size)
        if reservation is None:
            size = min(size, self.limit)
            await self._wait(size, None)
            reservation = self._reading_one(size)
        return reservation

    def reserve_now(self, size: int) -> Reservation | None:
        """A reservation of ``size`` bytes (at most the limit) if the budget has room now
        and nobody waits ahead; ``None`` otherwise (``reserve`` waits its turn)."""
        size = min(size, self.limit)
        if self._waiters or self.in_use + size > self.limit:
            return None
        self.in_use += size
        return self._reading_one(size)

    def _reading_one(self, size: int) -> Reservation:
        reservation = Reservation(self, size)
        self._reading[reservation] = None
        return reservation

    async def _grow(self, reservation: Reservation, more: int) -> None:
        if self.in_use + more <= self.limit or self._is_oldest(reservation):
            self.in_use += more
        else:
            await self._wait(more, reservation)
        reservation.bytes += more

    def _is_oldest(self, reservation: Reservation) -> bool:
        return next(iter(self._reading), None) is reservation

    async def _wait(self, size: int, reservation: Reservation | None) -> None:
        """Wait until ``_wake`` grants ``size`` (already counted in ``in_use`` then).

        A granted waiter leaves the queue as it is granted, and one that gives up
        leaves it at once and wakes those it held back: a waiter in the queue is
        always one still waiting, and the fast path of ``reserve`` sees no stale one.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (size, reservation, future)
        self._waiters.append(waiter)
        self._wake()  # those ahead may have left without a wake, or it fits already
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._give_back(size)  # granted as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # _wake dropped it already
                    self._waiters.remove(waiter)
                self._wake()  # it may have held back the waiters behind it
            raise

    def _done_reading(self, reservation: Reservation) -> None:
        self._reading.pop(reservation, None)
        self._wake()

    def _give_back(self, size: int) -> None:
        self.in_use -= size
        self._wake()

    def _wake(self) -> None:
        """Grant waiters in order while they fit (growing uploads first: they hold bytes);
        the granted and the cancelled leave the queue."""
        if not self._waiters:
            return
        for size, reservation, future in self._waiters:
            if reservation is None or future.done():
                continue
            if self.in_use + size <= self.limit or self._is_oldest(reservation):
                self.in_use += size
                future.set_result(None)
        for size, reservation, future in self._waiters:
            if reservation is not None or future.done():
                continue
            if self.in_use + size > self.limit:
                break
            self.in_use += size
            future.set_result(None)
        self._waiters = deque(waiter for waiter in self._waiters if not waiter[2].done())
