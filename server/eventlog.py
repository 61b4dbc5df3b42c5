"""One log line per relay event worth knowing; never a payload, never a secret."""

from __future__ import annotations

import logging

from .relay import ResultOutcome

logger = logging.getLogger("camrelay.relay")


class EventLogger:
    """A ``RelayObserver`` that writes relay events to the log."""

    def camera_connected(self, camera_id: str) -> None:
        logger.info("camera %s online", camera_id)

    def camera_disconnected(self, camera_id: str) -> None:
        logger.info("camera %s offline", camera_id)

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        if redelivery:
            logger.info("command %s redelivered to camera %s", request_id, camera_id)
        else:
            logger.info(
                "command %s delivered to camera %s for %d caller(s)", request_id, camera_id, callers
            )

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        logger.warning(
            "command %s to camera %s expired unanswered; its %d caller(s) were answered",
            request_id,
            camera_id,
            callers,
        )

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        logger.info("command %s to camera %s abandoned: every caller left", request_id, camera_id)

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        level = logging.INFO if outcome is ResultOutcome.ACCEPTED else logging.WARNING
        logger.log(level, "result from camera %s: %s", camera_id, outcome.value)

    def upload_refused(self, camera_id: str, *, body_read: bool) -> None:
        logger.info(
            "result from camera %s refused with 404 %s its body was read",
            camera_id,
            "before all of" if body_read else "before any of",
        )

    def upload_died(self, camera_id: str) -> None:
        logger.warning("upload from camera %s broke off mid-body: its result is lost", camera_id)
