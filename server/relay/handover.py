"""A camera session's work as plain data, to hand it from one owner to another.

``CameraSession.export_work`` takes the work out of a session without failing
anyone; ``CameraSession.import_work`` installs it in another session (in
another process, once the cluster layer has carried it there). Callers are
named by an opaque ``ref`` that their owner gave them: the session resolves a
caller's future, and whoever owns the ref carries the outcome to the caller.
Times are seconds left, so a snapshot means the same on any clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .timerange import TimeRange


@dataclass(frozen=True, slots=True)
class QueuedWork:
    """A caller not yet handed to a command, with the seconds left for a poll to take it."""

    ref: str
    time_range: TimeRange
    pickup_within: float


@dataclass(frozen=True, slots=True)
class InFlightWork:
    """A command delivered and not yet answered.

    It is redelivered (same ``request_id``) on the next poll; its callers get
    ``CameraTimeout`` in ``result_within`` seconds unless a result or a
    redelivery comes first (``offline_after``: ``CameraOffline`` instead, the
    command having been lost before the camera saw it). ``result_due_within``:
    the camera took it (an upload of its result broke off), so its result stays
    due that many seconds from now, however it is delivered again.
    """

    request_id: str
    time_range: TimeRange
    callers: tuple[QueuedWork, ...]
    result_within: float
    offline_after: bool = False
    result_due_within: float | None = None


@dataclass(frozen=True, slots=True)
class SessionWork:
    queued: tuple[QueuedWork, ...] = ()
    in_flight: tuple[InFlightWork, ...] = ()
    #: request ids accepted recently (a repeat of one is a duplicate), oldest first
    accepted: tuple[str, ...] = field(default=())
    #: the camera's last-seen time, epoch seconds
    last_seen: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.queued or self.in_flight or self.accepted)
