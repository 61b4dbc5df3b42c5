"""The framework-free relay core: no HTTP, no metrics, no logging framework."""

from .budget import Reservation, ResultBudget
from .config import RelayConfig
from .errors import (
    CameraOffline,
    CameraTimeout,
    PollSuperseded,
    QueueFull,
    RelayError,
    ShuttingDown,
    UnknownRequest,
)
from .logresult import INDEX_BYTES_PER_ENTRY, LogResult, LogSelection
from .observer import FanOutObserver, NullObserver, RelayObserver, ResultOutcome
from .relay import Relay, RelayStats
from .session import CameraSession, CameraStatus, Command, Receipt, shown
from .timerange import WIRE_MAX, LogEntry, TimeRange

__all__ = [
    "INDEX_BYTES_PER_ENTRY",
    "LogResult",
    "LogSelection",
    "Reservation",
    "ResultBudget",
    "WIRE_MAX",
    "CameraOffline",
    "CameraSession",
    "CameraStatus",
    "CameraTimeout",
    "Command",
    "FanOutObserver",
    "LogEntry",
    "NullObserver",
    "PollSuperseded",
    "QueueFull",
    "Receipt",
    "Relay",
    "RelayConfig",
    "RelayError",
    "RelayObserver",
    "RelayStats",
    "ResultOutcome",
    "ShuttingDown",
    "TimeRange",
    "UnknownRequest",
    "shown",
]
