"""Hooks the relay calls on events worth counting or logging.

The relay stays free of any metrics or logging framework: the application
plugs in an observer (see ``server.observe.metrics`` and ``server.observe.events``), a
subclass of ``RelayObserver`` that overrides the events it cares about.
"""

from __future__ import annotations

from enum import StrEnum


class ResultOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"


class RelayObserver:
    """Observes nothing: every hook is a no-op, subclasses override what they need."""

    def camera_connected(self, camera_id: str) -> None:
        """A poll arrived from a camera that was offline or never seen."""

    def camera_disconnected(self, camera_id: str) -> None:
        """A camera has not been seen for longer than the connect timeout."""

    def camera_refused(self, camera_id: str, known: int) -> None:
        """A poll from a new id was refused: the registry already holds ``known`` cameras."""

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        """A command was handed to a poll (again, when ``redelivery``)."""

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        """No result came within the response timeout."""

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        """Every caller of an unanswered command left; it will not be redelivered."""

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        """A camera posted a result; ``LATE`` covers unknown and expired ids."""

    def upload_refused(self, camera_id: str, *, body_read: bool) -> None:
        """A result nobody awaits got 404 before (or while) its body was read."""

    def upload_died(self, camera_id: str) -> None:
        """An upload broke off mid-body (connection lost or a body deadline passed)."""


class FanOutObserver(RelayObserver):
    """Forwards every event to several observers."""

    def __init__(self, *observers: RelayObserver) -> None:
        self._observers = observers

    def camera_connected(self, camera_id: str) -> None:
        for observer in self._observers:
            observer.camera_connected(camera_id)

    def camera_disconnected(self, camera_id: str) -> None:
        for observer in self._observers:
            observer.camera_disconnected(camera_id)

    def camera_refused(self, camera_id: str, known: int) -> None:
        for observer in self._observers:
            observer.camera_refused(camera_id, known)

    def command_delivered(
        self, camera_id: str, request_id: str, callers: int, redelivery: bool
    ) -> None:
        for observer in self._observers:
            observer.command_delivered(camera_id, request_id, callers, redelivery)

    def command_timed_out(self, camera_id: str, request_id: str, callers: int) -> None:
        for observer in self._observers:
            observer.command_timed_out(camera_id, request_id, callers)

    def command_abandoned(self, camera_id: str, request_id: str) -> None:
        for observer in self._observers:
            observer.command_abandoned(camera_id, request_id)

    def result_received(self, camera_id: str, outcome: ResultOutcome) -> None:
        for observer in self._observers:
            observer.result_received(camera_id, outcome)

    def upload_refused(self, camera_id: str, *, body_read: bool) -> None:
        for observer in self._observers:
            observer.upload_refused(camera_id, body_read=body_read)

    def upload_died(self, camera_id: str) -> None:
        for observer in self._observers:
            observer.upload_died(camera_id)
