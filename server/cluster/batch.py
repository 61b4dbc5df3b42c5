"""Redis calls made per request, gathered: those asked for in one loop turn go out as one
pipeline, and the callers asking about one key share one call.

A burst of requests (a fan-out's thousands of ``/logs``, a fleet's polls after a
restart) would otherwise queue one command each for the node's few pooled
connections, and wait there past the pool's timeout as if Redis were down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

__all__ = ["TurnBatch"]


class TurnBatch(Generic[K, V]):
    """``await batch.get(key)``: the value ``run`` gives for ``key``, ``run`` taking the keys
    of one loop turn at once. A failure of ``run`` is raised to each of that turn's callers."""

    def __init__(
        self,
        run: Callable[[list[K]], Awaitable[list[V]]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._run = run
        self._spawn = spawn
        #: calls under way (asked for or sent), by key
        self._pending: dict[K, asyncio.Future[V]] = {}
        #: keys asked for in this turn, not yet sent
        self._next: list[K] = []

    async def get(self, key: K) -> V:
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            pending.add_done_callback(_retrieved)
            self._pending[key] = pending
            if not self._next:
                self._spawn(self._send())
            self._next.append(key)
        # Shielded: a caller that leaves does not cancel the others' answer.
        return await asyncio.shield(pending)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the calls asked for in this loop turn join
        keys, self._next = self._next, []
        pending = [self._pending[key] for key in keys]
        try:
            values = await self._run(keys)
        except asyncio.CancelledError:  # the node detaches
            for future in pending:
                future.cancel()
            raise
        except Exception as error:  # each caller decides what it means
            for future in pending:
                future.set_exception(error)
            return
        finally:
            for key, future in zip(keys, pending, strict=True):
                if self._pending.get(key) is future:
                    del self._pending[key]
        for future, value in zip(pending, values, strict=True):
            future.set_result(value)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A shared call's failure counts as seen even when every caller of it has left."""
    if not future.cancelled():
        future.exception()
