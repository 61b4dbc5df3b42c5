"""How each relay error reads over HTTP: status, problem type, Retry-After."""

from __future__ import annotations

from .problems import ProblemError
from .relay import (
    CameraOffline,
    CameraTimeout,
    PollSuperseded,
    QueueFull,
    RelayError,
    ShuttingDown,
    UnknownRequest,
)

RETRY_AFTER_OFFLINE = "5"
RETRY_AFTER_QUEUE_FULL = "1"
RETRY_AFTER_SHUTDOWN = "5"


def problem_for(error: RelayError) -> ProblemError:
    if isinstance(error, CameraOffline):
        return ProblemError(
            503, error.detail, kind="camera-offline", headers={"Retry-After": RETRY_AFTER_OFFLINE}
        )
    if isinstance(error, QueueFull):
        return ProblemError(
            503, error.detail, kind="queue-full", headers={"Retry-After": RETRY_AFTER_QUEUE_FULL}
        )
    if isinstance(error, ShuttingDown):
        return ProblemError(
            503, error.detail, kind="shutting-down", headers={"Retry-After": RETRY_AFTER_SHUTDOWN}
        )
    if isinstance(error, CameraTimeout):
        return ProblemError(504, error.detail, kind="camera-timeout")
    if isinstance(error, PollSuperseded):
        return ProblemError(409, error.detail, kind="poll-superseded")
    if isinstance(error, UnknownRequest):
        return ProblemError(404, error.detail, kind="unknown-request")
    raise TypeError(f"no HTTP mapping for {type(error).__name__}")
