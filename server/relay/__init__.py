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
from .observer import FanOutObserver, RelayObserver, ResultOutcome
from .relay import Relay, RelayStats
from .session import CameraSession, CameraStatus, Command, Receipt, shown
from .timerange import WIRE_MAX, LogEntry, TimeRange

__all__ = [
    "WIRE_MAX",
    "CameraOffline",
    "CameraSession",
    "CameraStatus",
    "CameraTimeout",
    "Command",
    "FanOutObserver",
    "LogEntry",
    "PollSuperseded",
    "QueueFull",
    "Receipt",
    "RegistryFull",
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
