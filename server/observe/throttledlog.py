"""A log line that repeats at most once per interval, however often its event happens."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ThrottledLog:
    """Writes at most one line per ``interval`` seconds; the next line counts the ones held back.

    For events a client can cause at will (parser rejections, connections cut at
    the header deadline, accept pauses): a flood must not turn into a flood of log.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._clock = clock
        self._next_line_at = float("-inf")
        self._held_back = 0

    def log(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next_line_at:
            self._held_back += 1
            return
        self._next_line_at = now + self._interval
        if self._held_back:
            message += " (and %d more like this since the last such line)"
            args = (*args, self._held_back)
            self._held_back = 0
        self._logger.log(self._level, message, *args)
