"""An asyncio event loop whose clock is virtual: waiting costs no wall time.

``VirtualEventLoop`` is a ``SelectorEventLoop`` (public API only) whose ``time()`` is
a virtual clock and whose selector, ``VirtualSelector``, jumps that clock forward
whenever the loop would sleep: when nothing is ready, ``select(timeout)`` advances
the clock by ``timeout`` (the time to the next timer) and returns at once. A loop
with nothing ready and no timer would wait forever: that is a deadlock, and an error.

Runs are deterministic: the loop runs callbacks in a fixed order, and ``run_virtual``
also seeds the module ``random`` and ``secrets``' tokens (request ids, incarnations)
from the run's seed, so two runs of one seed do the very same things.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import selectors
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from server.relay import ids

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")

#: the wall-clock time at virtual time 0
EPOCH = 1_700_000_000.0


class Deadlock(RuntimeError):
    """Every task waits, and no timer is left that could wake one."""


class Livelock(RuntimeError):
    """The loop keeps running callbacks while its clock never moves (a busy loop)."""


#: loop iterations in a row without the clock moving that make a livelock
LIVELOCK_ITERATIONS = 2_000_000


class VirtualTimeLimit(TimeoutError):
    """The run would go on past its limit of virtual time (something waits forever while
    timers keep the clock moving)."""


class VirtualClock:
    def __init__(self, limit: float = float("inf")) -> None:
        self.now = 0.0
        #: the clock does not move past this
        self.limit = limit

    def wall(self) -> float:
        """The wall-clock time: ``EPOCH`` plus the virtual time."""
        return EPOCH + self.now


class VirtualSelector(selectors.BaseSelector):
    """A real selector (sockets, the loop's self-pipe) that never blocks: it advances the
    virtual clock instead."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._real = selectors.DefaultSelector()
        self._still = 0

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            self._still += 1
            if self._still > LIVELOCK_ITERATIONS:
                raise Livelock(
                    f"livelock at virtual time {self._clock.now:.3f}: {self._still} loop "
                    "iterations without the clock moving"
                )
            return ready
        self._still = 0
        if timeout is None:
            raise Deadlock(
                f"deadlock at virtual time {self._clock.now:.3f}: every task waits "
                "and no timer is left to wake one"
            )
        if self._clock.now + timeout > self._clock.limit:
            raise VirtualTimeLimit(
                f"still running at the limit of {self._clock.limit:g} virtual seconds"
            )
        self._clock.now += timeout
        return []

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = VirtualClock()
        super().__init__(selector=VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now

    def wall_clock(self) -> float:
        return self.clock.wall()


def wall_clock() -> float:
    """The running virtual loop's wall-clock time."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualEventLoop):
        raise RuntimeError("wall_clock() needs a running VirtualEventLoop")
    return loop.wall_clock()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Module ``random``, ``secrets.token_hex`` and the relay's ids (``server.relay.ids``)
    draw from ``seed`` for the duration."""
    tokens = random.Random(f"tokens-{seed}")
    saved_state = random.getstate()
    saved_token_hex = secrets.token_hex

    def token_hex(nbytes: int | None = None) -> str:
        return tokens.randbytes(32 if nbytes is None else nbytes).hex()

    random.seed(seed)
    secrets.token_hex = token_hex
    saved_source = ids.use_source(tokens.randbytes)
    try:
        yield
    finally:
        ids.use_source(saved_source)
        secrets.token_hex = saved_token_hex
        random.setstate(saved_state)


def run_virtual(
    coro_factory: Callable[[], Awaitable[T]], seed: int = 0, limit: float = 3600.0
) -> T:
    """Run ``coro_factory()`` to completion on a new virtual loop, then close the loop
    (tasks still running are cancelled and awaited first). ``VirtualTimeLimit`` if it
    would run past ``limit`` virtual seconds (a task that waits forever while timers keep
    the clock moving), ``Deadlock`` if every task waits and no timer is left."""
    loop = VirtualEventLoop()
    loop.clock.limit = limit
    try:
        with seeded(seed):
            return loop.run_until_complete(_main(coro_factory))
    finally:
        loop.clock.limit = float("inf")
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _main(coro_factory: Callable[[], Awaitable[T]]) -> T:
    return await coro_factory()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
