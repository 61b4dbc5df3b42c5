"""The streamed answers being written, so that a graceful stop ends within its timeout.

A reader that stops reading keeps its answer's handler waiting on the socket until a
write deadline passes (``WRITE_TIMEOUT_SECONDS`` a piece). aiohttp's graceful stop
waits ``SHUTDOWN_TIMEOUT_SECONDS`` for handlers to finish, then cancels them and waits
as long again: such a reader would stretch the stop to twice its timeout. Once the
stop begins, ``stop_by`` brings every answer's deadline, and that of any answer begun
later, to the end of the stop's wait: a reader still behind then is cut, as any slow
reader is, and the stop ends on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class AnswersBeingWritten:
    def __init__(self) -> None:
        self._deadlines: set[asyncio.Timeout] = set()
        #: loop time by which every answer must be written (once a stop began)
        self._stop_at: float | None = None

    def __len__(self) -> int:
        return len(self._deadlines)

    @contextlib.asynccontextmanager
    async def within(self, seconds: float) -> AsyncIterator[None]:
        """``asyncio.timeout(seconds)``, brought forward by a stop (``stop_by``)."""
        when = asyncio.get_running_loop().time() + seconds
        if self._stop_at is not None:
            when = min(when, self._stop_at)
        async with asyncio.timeout_at(when) as deadline:
            self._deadlines.add(deadline)
            try:
                yield
            finally:
                self._deadlines.discard(deadline)

    def stop_by(self, when: float) -> None:
        """Every answer, being written now or begun later, ends by loop time ``when``."""
        self._stop_at = when
        for deadline in self._deadlines:
            if deadline.expired():  # passed already: its answer is being cut
                continue
            current = deadline.when()
            if current is None or current > when:
                deadline.reschedule(when)
