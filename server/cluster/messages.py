"""The messages nodes send each other, and how their format may change.

A message is a small JSON header (``{"v": VERSION, "t": "<type>", ...}``) plus, for
a result, the camera's body as bytes beside it. One dataclass per type; its
fields are the header's keys. Every message says what it is for: the
incarnation it is addressed to (``dest``), the camera, and the callers
(refs) or request it concerns; the receiver drops what is not its own
(``server.cluster.node``).

The compatibility rule (so that a rolling deploy loses nothing):

- A new release may only **add** fields, each with a default, and bump ``v``.
  It never renames, removes or changes the meaning of a field.
- A node reads a message of its own version and of any earlier one: a field
  the sender did not know takes its default. The previous format (``v`` 0,
  the header without ``v`` nor ``pickup``) is read that way; a message without
  ``dest`` (``v`` 2 and before) is taken as addressed to the node reading it.
- A node reads a message of a later version too: fields it does not know are
  ignored.
- A message that is not a JSON object, has an unknown type, or lacks a field
  without a default is logged (one line) and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from ..relay import (
    CameraOffline,
    CameraTimeout,
    CameraUnknown,
    InFlightWork,
    QueuedWork,
    QueueFull,
    RelayError,
    SessionWork,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from ..relay.logscan import json_type
from .unavailable import ClusterUnavailable

VERSION = 4
logger = logging.getLogger("camrelay.cluster")


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[str] = ""
    #: the sending incarnation, filled in by the bus
    sender: str = ""
    #: the incarnation it is for, filled in by the bus ("": a sender of v2 or before)
    dest: str = ""
    #: when it was sent, epoch milliseconds (for the forward latency)
    sent_ms: int = 0


@dataclass(frozen=True, slots=True)
class Enqueue(Message):
    """Queue a caller (``ref``, owned by the node in the ref) at the camera's home."""

    TYPE: ClassVar[str] = "enqueue"
    camera: str = ""
    ref: str = ""
    start: float | None = None
    end: float | None = None
    #: seconds left for a poll to take the caller's work (v0 senders: the connect timeout)
    pickup: float | None = None
    #: how many nodes passed it on already (a stale home forwards to the current one)
    hops: int = 0


@dataclass(frozen=True, slots=True)
class Forget(Message):
    """The caller ``ref`` left: drop its work."""

    TYPE: ClassVar[str] = "forget"
    camera: str = ""
    ref: str = ""
    hops: int = 0


@dataclass(frozen=True, slots=True)
class Outcome(Message):
    """What became of callers: the result (the body beside the header) or an error."""

    TYPE: ClassVar[str] = "outcome"
    #: the camera whose callers these are (each ref must be a caller of it)
    camera: str = ""
    #: the request the result answers ("" for an error)
    request: str = ""
    refs: tuple[str, ...] = ()
    #: a relay error's name (``CameraOffline``...), or "" with a body for a result
    error: str = ""
    detail: str = ""
    #: a small result's entries' timestamps (``payload.timestamps_field``), so that the
    #: receiving node need not parse its body again ("": parse it)
    timestamps: str = ""


@dataclass(frozen=True, slots=True)
class Moved(Message):
    """The callers ``refs`` now wait at node ``home`` (their camera's session moved)."""

    TYPE: ClassVar[str] = "moved"
    camera: str = ""
    refs: tuple[str, ...] = ()
    home: str = ""


@dataclass(frozen=True, slots=True)
class Takeover(Message):
    """A newer poll reached node ``to`` (the new home, an incarnation): answer yours 409
    and hand the session over."""

    TYPE: ClassVar[str] = "takeover"
    camera: str = ""
    to: str = ""
    #: the claim's sequence (``registry``): a node whose own claim of the camera is later
    #: ignores it; 0 (v1 senders) is always obeyed
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Handover(Message):
    """A camera session's work, for its new home."""

    TYPE: ClassVar[str] = "handover"
    camera: str = ""
    work: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the claim of the new home it answers (0: v2 senders): a node that claimed the
    #: camera since, or gave it up to a later claim, passes the work on to the home
    seq: int = 0
    hops: int = 0


@dataclass(frozen=True, slots=True)
class Posted(Message):
    """A result a camera posted at another node (the body beside the header)."""

    TYPE: ClassVar[str] = "posted"
    camera: str = ""
    ref: str = ""
    request_id: str | None = None
    hops: int = 0


@dataclass(frozen=True, slots=True)
class ResultReceipt(Message):
    """The home's answer to ``Posted``: an outcome, or an error name and detail."""

    TYPE: ClassVar[str] = "receipt"
    camera: str = ""
    ref: str = ""
    outcome: str = ""
    request_id: str = ""
    callers: int = 0
    error: str = ""
    detail: str = ""


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Enqueue,
        Forget,
        Outcome,
        Moved,
        Takeover,
        Handover,
        Posted,
        ResultReceipt,
    )
}
#: header keys that differ from the field names
_WIRE_NAMES = {"sender": "from", "sent_ms": "sent", "request_id": "requestId"}
_FIELD_NAMES = {wire: name for name, wire in _WIRE_NAMES.items()}

ERRORS: dict[str, type[RelayError]] = {
    cls.__name__: cls
    for cls in (
        CameraOffline,
        CameraUnknown,
        CameraTimeout,
        QueueFull,
        ShuttingDown,
        UnknownRequest,
        ClusterUnavailable,
    )
}


def encode(message: Message) -> bytes:
    header: dict[str, Any] = {"v": VERSION, "t": message.TYPE}
    for field in dataclasses.fields(message):
        header[_WIRE_NAMES.get(field.name, field.name)] = getattr(message, field.name)
    return orjson.dumps(header)


def decode(raw: bytes) -> Message | None:
    """The message in ``raw``, or ``None`` (logged) when it cannot be read."""
    try:
        header = orjson.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
        cls = MESSAGE_TYPES.get(header.get("t"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"unknown type {header.get('t')!r}")
        known = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in header.items():
            name = _FIELD_NAMES.get(key, key)
            if name not in known:  # a later version's fields are ignored
                continue
            if not _fits(_default(known[name]), value):
                raise ValueError(f"{key} of a {cls.TYPE} message is {json_type(value)}")
            values[name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)
    except (ValueError, TypeError) as error:
        logger.warning("dropped a cluster message that does not parse: %s", str(error)[:200])
        return None


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[operator]


def _fits(default: Any, value: Any) -> bool:
    """``value`` has the JSON type of the field whose default is ``default``."""
    if isinstance(default, tuple):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    # optional numbers (a range bound, seconds left) and the optional request id
    return value is None or (isinstance(value, int | float | str) and not isinstance(value, bool))


def error_of(name: str, detail: str) -> RelayError:
    return ERRORS.get(name, CameraOffline)(detail)


# ---------------------------------------------------------------- session work


def _range_json(time_range: TimeRange) -> list[float | None]:
    return [time_range.start, time_range.end]


def _queued_json(item: QueuedWork) -> dict[str, Any]:
    return {"ref": item.ref, "range": _range_json(item.time_range), "pickup": item.pickup_within}


def _queued_from(data: dict[str, Any]) -> QueuedWork:
    start, end = data["range"]
    return QueuedWork(data["ref"], TimeRange(start, end), float(data["pickup"]))


def work_json(work: SessionWork) -> dict[str, Any]:
    return {
        "queued": [_queued_json(item) for item in work.queued],
        "inFlight": [
            {
                "requestId": flight.request_id,
                "range": _range_json(flight.time_range),
                "callers": [_queued_json(item) for item in flight.callers],
                "resultWithin": flight.result_within,
                "offlineAfter": flight.offline_after,
                "resultDueWithin": flight.result_due_within,
            }
            for flight in work.in_flight
        ],
        "accepted": list(work.accepted),
        "lastSeen": work.last_seen,
    }


def _seconds_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def work_from(data: dict[str, Any]) -> SessionWork:
    """``SessionWork`` from ``work_json``; raises ``ValueError`` when it does not fit."""
    try:
        return SessionWork(
            queued=tuple(_queued_from(item) for item in data.get("queued", ())),
            in_flight=tuple(
                InFlightWork(
                    flight["requestId"],
                    TimeRange(*flight["range"]),
                    tuple(_queued_from(item) for item in flight["callers"]),
                    float(flight["resultWithin"]),
                    offline_after=bool(flight.get("offlineAfter", False)),
                    result_due_within=_seconds_or_none(flight.get("resultDueWithin")),
                )
                for flight in data.get("inFlight", ())
            ),
            accepted=tuple(data.get("accepted", ())),
            last_seen=data.get("lastSeen"),
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"session work does not fit: {error}") from None
