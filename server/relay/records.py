"""The plain records the relay hands out: a command for a camera, a camera's status, and
what became of a posted result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .observer import ResultOutcome
from .timerange import TimeRange


@dataclass(frozen=True, slots=True)
class Command:
    """``send_logs`` for ``time_range``; the camera echoes ``request_id`` with its result."""

    request_id: str
    time_range: TimeRange


class CameraStatus(NamedTuple):
    """A snapshot of one camera (a tuple: ``/cameras`` builds one per camera)."""

    camera_id: str
    online: bool
    last_seen: float | None
    polling: bool
    waiting: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of a result the camera posted."""

    outcome: ResultOutcome
    request_id: str
    callers: int
