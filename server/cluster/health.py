"""Whether the shared store answers, as this node sees it: one warning line per change."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("camrelay.cluster")


class StoreHealth:
    """``up`` after a call succeeded, down after one failed; failures are counted and
    logged as one line at most once a second (never a traceback: the store being away
    is an expected fault)."""

    def __init__(self, on_error: Callable[[], None] = lambda: None) -> None:
        self._on_error = on_error
        self.up = True
        self._last_warning = float("-inf")

    def succeeded(self) -> None:
        if not self.up:
            logger.warning("Redis is reachable again")
        self.up = True

    def failed(self, error: BaseException) -> None:
        self._on_error()
        self.up = False
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            logger.warning("Redis unavailable: %s", str(error)[:300])
