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
    #: camera ids the registry holds; a poll from one more new id is refused
    max_cameras: int = 100_000
    #: a refused poll is answered this late, so that a camera retrying at once does not spin
    refusal_delay_seconds: float = 1.0
    #: an idle camera that has answered a command is forgotten once unseen this long
    session_retention_seconds: float = 3600.0
    #: bytes of results held for callers or being read, their index included
    max_result_bytes_in_flight: int = 8 * 64 * 1024 * 1024
    #: sessions one sweep slice looks at before it yields to the event loop
    sweep_slice: int = 1000

    @property
    def unanswered_retention_seconds(self) -> float:
        """How long an idle camera that never answered a command is kept once unseen.

        Long enough that a camera between two polls is never dropped (a hold, then
        the connect timeout), and never longer than ``session_retention_seconds``.
        """
        return min(
            self.session_retention_seconds, self.poll_hold_seconds + self.connect_timeout_seconds
        )

    @property
    def longest_logs_wait(self) -> float:
        """The most a ``/logs`` caller can wait: pick-up plus result, plus slack."""
        return self.connect_timeout_seconds + self.response_timeout_seconds + 1.0
