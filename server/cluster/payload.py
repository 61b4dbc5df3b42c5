"""A result as bytes between nodes: the camera's entries, byte for byte, in a small body.

The home sends a result as ``{"logs":[...]}`` holding the camera's own entry
bytes; the receiving node indexes it with the same scanner that reads a
camera's upload, so its callers get the entries exactly as the camera sent them.
A body of at most ``INDEXED_BODY_BYTES`` whose entries are flat (one pair of
braces each) comes with its entries' timestamps in its message's header
(``timestamps_field``): the receiver checks that they fit the body (their
count, its braces) and takes it without parsing it again; anything else is
parsed.
"""

from __future__ import annotations

import base64
import binascii
import enum
import itertools
import logging
import math
import operator
import sys
from array import array
from collections.abc import Callable

from ..relay import FIRST_RESERVATION_BYTES, LogResult, Reservation, ResultBudget, TimeRange
from ..relay.logscan import ResultBodyError, ResultScanner, flat_offsets
from .backend import Body

logger = logging.getLogger("camrelay.cluster")

HEAD = b'{"logs":['
TAIL = b"]}"
#: a body up to this long travels with its entries' timestamps in its message's header
INDEXED_BODY_BYTES = 64 * 1024
_LBRACE = ord("{")
_RBRACE = ord("}")


def result_bytes(result: LogResult) -> bytes:
    selection = result.select(TimeRange())
    try:
        return b"".join(selection.chunks(HEAD, TAIL))
    finally:
        selection.release()


def timestamps_field(result: LogResult, body: bytes) -> str:
    """The timestamps of ``result``'s entries for the header of the message whose body
    is ``body`` (``result_bytes``): base64 of little-endian doubles; "" (the receiver
    parses the body) for a body over ``INDEXED_BODY_BYTES``, no entries, entries that
    are not flat, or an integer timestamp a double does not hold exactly."""
    doubles = result.doubles()
    if not doubles or len(body) > INDEXED_BODY_BYTES:
        return ""
    if not (result.flat or _flat(body, len(doubles))):
        return ""
    if sys.byteorder != "little":
        doubles = array("d", doubles)
        doubles.byteswap()
    return base64.b64encode(doubles).decode("ascii")


def result_from(
    body: bytes, on_release: Callable[[], None] | None = None, timestamps: str = ""
) -> LogResult:
    """The result in ``body`` (one hold, for the caller to release; ``on_release`` runs
    when the last hold ends), indexed by ``timestamps`` (``timestamps_field``) if they fit
    it, else parsed; raises ``ResultBodyError`` when it does not parse."""
    if timestamps:
        indexed = _indexed(body, timestamps, on_release)
        if indexed is not None:
            return indexed
    scanner = ResultScanner(expected_size=len(body))
    scanner.feed(body)
    return scanner.finish(on_release).result


def _indexed(
    body: bytes, timestamps: str, on_release: Callable[[], None] | None
) -> LogResult | None:
    """``body`` indexed by the timestamps its message carried, or ``None`` if they do not
    fit it: they must be finite and as many as its entries, which must be flat
    (``_flat``). Each entry's place is then found from the braces when a range first
    needs it, as for a camera's flat upload."""
    try:
        raw = base64.b64decode(timestamps, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % 8:
        return None
    doubles = array("d")
    doubles.frombytes(raw)
    if sys.byteorder != "little":
        doubles.byteswap()
    if not _flat(body, len(doubles)) or not all(map(math.isfinite, doubles)):
        return None
    ordered = all(map(operator.le, doubles, itertools.islice(doubles, 1, None)))
    return LogResult(
        body,
        None,
        None,
        doubles,
        {},
        ordered=ordered,
        on_release=on_release,
        whole=(len(HEAD), len(body) - len(TAIL)),
        indexer=flat_offsets,
        flat=True,
    )


def _flat(body: bytes, count: int) -> bool:
    """``body`` (``result_bytes`` of ``count`` entries, at least one) holds one ``{`` and
    one ``}`` per entry, the entry's own, besides its own pair: a JSON object holds at
    least those, so its entries are flat exactly when the braces number ``count`` + 1 of
    each kind."""
    first, last = len(HEAD), len(body) - len(TAIL) - 1
    return (
        count > 0
        and body.startswith(HEAD)
        and body.endswith(TAIL)
        and first < last
        and body[first] == _LBRACE
        and body[last] == _RBRACE
        and body.count(b"{") == count + 1
        and body.count(b"}") == count + 1
    )


async def take_result(
    budget: ResultBudget, body: Body | None, timestamps: str = ""
) -> LogResult | None:
    """The result in a message's body (``timestamps``: the message's, if any), read once
    ``budget`` has room for it and counted there (with its timestamps) until its last hold
    ends; ``None`` if the body is gone or does not parse (logged); raises
    ``BackendError`` when the body cannot be read."""
    size = FIRST_RESERVATION_BYTES if body is None or not body.size else body.size
    reservation = await budget.reserve(size + len(timestamps))
    try:
        data = b"" if body is None else await body.read()
        if data is None:
            reservation.release()
            return None
        await reservation.grow_to(len(data) + len(timestamps))
    except BaseException:
        reservation.release()
        raise
    return _result_in(data, reservation, timestamps)


class NotTaken(enum.Enum):
    """Why ``take_result_here`` took no result."""

    #: its bytes are not here, or the budget has no room for them now: ``take_result``
    LATER = "later"
    #: its bytes do not parse (logged)
    DROPPED = "dropped"


def take_result_here(
    budget: ResultBudget, body: Body, timestamps: str = ""
) -> LogResult | NotTaken:
    """The result in a body that came inside its message (``timestamps``: the message's,
    if any), taken at once if ``budget`` has room for it and its timestamps now (nobody
    waiting ahead)."""
    if not body.inline or not body.size:
        return NotTaken.LATER
    reservation = budget.reserve_now(body.size + len(timestamps))
    if reservation is None:
        return NotTaken.LATER
    data = body.take_here()
    if data is None or len(data) != body.size:
        reservation.release()
        return NotTaken.LATER
    result = _result_in(data, reservation, timestamps)
    return NotTaken.DROPPED if result is None else result


def _result_in(data: bytes, reservation: Reservation, timestamps: str) -> LogResult | None:
    """The result in ``data``, counted in ``reservation`` until its last hold ends."""
    try:
        result = result_from(data, reservation.release, timestamps)
    except ResultBodyError as error:
        reservation.release()
        logger.warning("dropped a result message whose body does not parse: %s", error)
        return None
    except BaseException:
        reservation.release()
        raise
    reservation.done_reading()
    return result
