"""The framework-free relay core: no HTTP, no metrics, no logging framework."""

from .config import RelayConfig
from .errors import (
    CameraOffline,
    CameraTimeout,
    PollSuperseded,
    QueueFull,
    RegistryFull,
    RelayError,
    ShuttingDown,
    UnknownRequest,
)
from .handover import InFlightWork, QueuedWork, SessionWork
from .observer import FanOutObserver, RelayObserver, ResultOutcome
from .relay import Relay, RelayStats
from .session import Caller, CameraSession, CameraStatus, Command, Receipt, shown
from .timerange import WIRE_MAX, LogEntry, TimeRange

__all__ = [
    "WIRE_MAX",
    "Caller",
    "CameraOffline",
    "CameraSession",
    "CameraStatus",
    "CameraTimeout",
    "Command",
    "FanOutObserver",
    "InFlightWork",
    "LogEntry",
    "PollSuperseded",
    "QueueFull",
    "QueuedWork",
    "Receipt",
    "RegistryFull",
    "Relay",
    "RelayConfig",
    "RelayError",
    "RelayObserver",
    "RelayStats",
    "ResultOutcome",
    "SessionWork",
    "ShuttingDown",
    "TimeRange",
    "UnknownRequest",
    "shown",
]
