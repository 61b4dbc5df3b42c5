"""One log line per relay event worth knowing; never a payload, never a secret.

Events a client can cause in bulk (new camera ids coming and going, polls
refused past ``MAX_CAMERAS``, results refused, a command redelivered, expired,
abandoned, an upload broken off) have a budget of lines per second each; the
lines held back are counted in the next line let through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from ..relay import RelayObserver, ResultOutcome

logger = logging.getLogger("camrelay.relay")

#: lines a second for each kind of bulk event
CAMERA_LINES_PER_SECOND: Final = 20
REFUSAL_LINES_PER_SECOND: Final = 1


class LineBudget:
    """Lets ``per_second`` lines through each second and counts the ones it holds back."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_second = per_second
        self._clock = clock
        self._window_started = -float("inf")
        self._used = 0
        self._held_back = 0

    def take(self) -> int | None:
        """``None``: hold this line back. Else log it, noting the lines held back before it."""
        now = self._clock()
        if now - self._window_started >= 1.0:
            self._window_started = now
            self._used = 0
        if self._used >= self._per_second:
            self._held_back += 1
            return None
        self._used += 1
        held_back, self._held_back = self._held_back, 0
        return held_back


def _info_after_this_turn(message: str, *args: Any) -> None:
    """``logger.info`` once the event loop's ready callbacks have run (at once without a
    loop): the line of a round trip's step is written after the answers that step woke,
    not before (the request id it was logged under goes with it)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        logger.info(message, *args)
    else:
        loop.call_soon(logger.info, message, *args)


def _more(held_back: int, what: str) -> str:
    return f" (and {held_back} more {what} not logged)" if held_back else ""


def _capped(
    budget: LineBudget, write: Callable[..., None], message: str, *args: Any, held: str
) -> None:
    """``write(message, *args)`` if ``budget`` lets the line through; it then ends by
    counting the lines (of what ``held`` names) held back before it."""
    held_back = budget.take()
    if held_back is not None:
        write(message + "%s", *args, _more(held_back, held))


class EventLogger(RelayObserver):
    """A ``RelayObserver`` that writes relay events to the log."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._online = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._offline = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._refused = LineBudget(REFUSAL_LINES_PER_SECOND, clock)
        # a client without credentials (CAMERA_SECRET off) posts these as fast as it likes
        self._uploads_refused = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._results_not_accepted = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        # so can a camera that polls again and again without answering, or hangs up
        # mid-body, and a caller that leaves as soon as its command went out
        self._redelivered = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._timed_out = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._abandoned = LineBudget(CAMERA_LINES_PER_SECOND, clock)
        self._uploads_died = LineBudget(CAMERA_LINES_PER_SECOND, clock)

    def camera_connected(self, camera_id: str) -> None:
        _capped(self._online, logger.info, "camera %s online", camera_id, held="cameras online")

    def camera_disconnected(self, camera_id: str) -> None:
        _capped(self._offline, logger.info, "camera %s offline", camera_id, held="cameras offline")

    def camera_refused(self, camera_id: str, known: int) -> None:
        held_back = self._refused.take()
        if held_back is not None:
            logger.warning(
                "refused a poll from new camera %s%s: the registry holds %d cameras (MAX_CAMERAS)",
                camera_id,
                _more(held_back, "refused"),
                known,
            )

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        if redelivery:
            _capped(
                self._redelivered,
                _info_after_this_turn,
                "command %s redelivered to camera %s",
                request_id,
                camera_id,
                held="redeliveries",
            )
        else:
            _info_after_this_turn(
                "command %s delivered to camera %s for %d caller(s)", request_id, camera_id, callers
            )

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        _capped(
            self._timed_out,
            logger.warning,
            "command %s to camera %s expired unanswered; its %d caller(s) were answered",
            request_id,
            camera_id,
            callers,
            held="commands expired",
        )

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        _capped(
            self._abandoned,
            logger.info,
            "command %s to camera %s abandoned: every caller left",
            request_id,
            camera_id,
            held="abandoned",
        )

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        if outcome is ResultOutcome.ACCEPTED:
            _info_after_this_turn("result from camera %s: %s", camera_id, outcome.value)
            return
        _capped(
            self._results_not_accepted,
            logger.warning,
            "result from camera %s: %s",
            camera_id,
            outcome.value,
            held="results not accepted",
        )

    def upload_refused(self, camera_id: str, *, body_read: bool) -> None:
        _capped(
            self._uploads_refused,
            logger.info,
            "result from camera %s refused with 404 %s its body was read",
            camera_id,
            "before all of" if body_read else "before any of",
            held="refused",
        )

    def upload_died(self, camera_id: str) -> None:
        _capped(
            self._uploads_died,
            logger.warning,
            "upload from camera %s broke off mid-body: its result is lost",
            camera_id,
            held="uploads broken off",
        )
