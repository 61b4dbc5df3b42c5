"""The framework-free relay core: no HTTP, no metrics, no logging framework."""

from .budget import FIRST_RESERVATION_BYTES, Reservation, ResultBudget
from .config import RelayConfig
from .errors import (
    CameraOffline,
    CameraTimeout,
    CameraUnknown,
    PollSuperseded,
    QueueFull,
    RegistryFull,
    RelayError,
    ShuttingDown,
    TooManyUploads,
    UnknownRequest,
)
from .handover import InFlightWork, QueuedWork, SessionWork
from .local import Relay
from .logresult import CHUNK_BYTES, LogResult, LogSelection
from .observer import FanOutObserver, RelayObserver, ResultOutcome
from .records import CameraStatus, Command, Receipt
from .service import RelayService, RelayStats, Upload
from .session import CameraSession
from .timerange import WIRE_MAX, TimeRange
from .upload import ResultUpload
from .waiting import Caller, shown

__all__ = [
    "CHUNK_BYTES",
    "FIRST_RESERVATION_BYTES",
    "WIRE_MAX",
    "Caller",
    "CameraOffline",
    "CameraSession",
    "CameraStatus",
    "CameraTimeout",
    "CameraUnknown",
    "Command",
    "FanOutObserver",
    "InFlightWork",
    "LogResult",
    "LogSelection",
    "PollSuperseded",
    "QueueFull",
    "QueuedWork",
    "Receipt",
    "RegistryFull",
    "Relay",
    "RelayConfig",
    "RelayError",
    "RelayObserver",
    "RelayService",
    "RelayStats",
    "Reservation",
    "ResultBudget",
    "ResultOutcome",
    "ResultUpload",
    "SessionWork",
    "ShuttingDown",
    "TimeRange",
    "TooManyUploads",
    "UnknownRequest",
    "Upload",
    "shown",
]
