"""A result as bytes between nodes: the camera's entries, byte for byte, in a small body.

The home sends a result as ``{"logs":[...]}`` holding the camera's own entry
bytes; the receiving node indexes it with the same scanner that reads a
camera's upload, so its callers get the entries exactly as the camera sent them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from ..relay import FIRST_RESERVATION_BYTES, LogResult, Reservation, ResultBudget, TimeRange
from ..relay.logscan import ResultBodyError, ResultScanner
from .backend import Body

logger = logging.getLogger("camrelay.cluster")

HEAD = b'{"logs":['
TAIL = b"]}"


def result_bytes(result: LogResult) -> bytes:
    selection = result.select(TimeRange())
    try:
        return b"".join(selection.chunks(HEAD, TAIL))
    finally:
        selection.release()


def result_from(body: bytes, on_release: Callable[[], None] | None = None) -> LogResult:
    """The result in ``body`` (one hold, for the caller to release; ``on_release`` runs
    when the last hold ends); raises ``ResultBodyError`` when it does not parse."""
    scanner = ResultScanner(expected_size=len(body))
    scanner.feed(body)
    return scanner.finish(on_release).result


async def take_result(budget: ResultBudget, body: Body | None) -> LogResult | None:
    """The result in a message's body, read once ``budget`` has room for it and counted
    there until its last hold ends; ``None`` if the body is gone or does not parse
    (logged); raises ``BackendError`` when the body cannot be read."""
    size = FIRST_RESERVATION_BYTES if body is None or not body.size else body.size
    reservation = await budget.reserve(size)
    try:
        data = b"" if body is None else await body.read()
        if data is None:
            reservation.release()
            return None
        await reservation.grow_to(len(data))
    except BaseException:
        reservation.release()
        raise
    return _result_in(data, reservation)


class NotTaken(enum.Enum):
    """Why ``take_result_here`` took no result."""

    #: its bytes are not here, or the budget has no room for them now: ``take_result``
    LATER = "later"
    #: its bytes do not parse (logged)
    DROPPED = "dropped"


def take_result_here(budget: ResultBudget, body: Body) -> LogResult | NotTaken:
    """The result in a body that came inside its message, taken at once if ``budget`` has
    room for it now (nobody waiting ahead)."""
    if not body.inline or not body.size:
        return NotTaken.LATER
    reservation = budget.reserve_now(body.size)
    if reservation is None:
        return NotTaken.LATER
    data = body.take_here()
    if data is None or len(data) != body.size:
        reservation.release()
        return NotTaken.LATER
    result = _result_in(data, reservation)
    return NotTaken.DROPPED if result is None else result


def _result_in(data: bytes, reservation: Reservation) -> LogResult | None:
    """The result in ``data``, counted in ``reservation`` until its last hold ends."""
    try:
        result = result_from(data, reservation.release)
    except ResultBodyError as error:
        reservation.release()
        logger.warning("dropped a result message whose body does not parse: %s", error)
        return None
    except BaseException:
        reservation.release()
        raise
    reservation.done_reading()
    return result
