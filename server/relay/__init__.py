"""The framework-free relay core: no HTTP, no metrics, no logging framework."""

from .budget import Reservation, ResultBudget
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
from .logresult import CHUNK_BYTES, LogResult, LogSelection
from .observer import FanOutObserver, RelayObserver, ResultOutcome
from .relay import Relay, RelayStats
from .session import CameraSession, CameraStatus, Command, Receipt, shown
from .timerange import WIRE_MAX, TimeRange
from .upload import ResultUpload

__all__ = [
    "CHUNK_BYTES",
    "WIRE_MAX",
    "CameraOffline",
    "CameraSession",
    "CameraStatus",
    "CameraTimeout",
    "Command",
    "FanOutObserver",
    "LogResult",
    "LogSelection",
    "PollSuperseded",
    "QueueFull",
    "Receipt",
    "RegistryFull",
    "Relay",
    "RelayConfig",
    "RelayError",
    "RelayObserver",
    "RelayStats",
    "Reservation",
    "ResultBudget",
    "ResultOutcome",
    "ResultUpload",
    "ShuttingDown",
    "TimeRange",
    "UnknownRequest",
    "shown",
]
