"""The relay's tunables, free of where they come from (environment, tests)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RelayConfig:
    poll_hold_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    response_timeout_seconds: float = 30.0
    max_waiting_per_camera: int = 10_000
    #: accepted request ids remembered per camera to recognise a repeated result
    remembered_results: int = 64
    #: an idle camera unseen for this long is dropped from the registry
    session_retention_seconds: float = 3600.0
    #: bytes of results held for callers or being read, their index included
    max_result_bytes_in_flight: int = 8 * 64 * 1024 * 1024

    @property
    def longest_logs_wait(self) -> float:
        """The most a ``/logs`` caller can wait: pick-up plus result, plus slack."""
        return self.connect_timeout_seconds + self.response_timeout_seconds + 1.0
