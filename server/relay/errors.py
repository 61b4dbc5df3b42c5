"""Domain errors raised by the relay; the HTTP layer maps each one to a status."""

from __future__ import annotations


class RelayError(Exception):
    """Base class: ``detail`` is a sentence a person can act on."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CameraOffline(RelayError):
    """The camera has not been seen recently, or did not pick up the work in time."""


class CameraUnknown(CameraOffline):
    """No camera with this id has polled recently (a typo, or one not started yet):
    a ``CameraOffline`` a client can tell apart from a camera that went away."""

    @classmethod
    def of(cls, camera_id: str) -> CameraUnknown:
        return cls(
            f"camera {camera_id!r} has not connected: no camera with that id has polled this "
            "server recently; check the id against GET /cameras (ids are case-sensitive)"
        )


class QueueFull(RelayError):
    """Too many callers are already waiting for this camera."""


class ShuttingDown(RelayError):
    """The relay is closing and takes no new work."""


class CameraTimeout(RelayError):
    """The camera took the command but no result came back in time."""


class PollSuperseded(RelayError):
    """A newer poll for the same camera replaced this one."""


class UnknownRequest(RelayError):
    """A result names no command awaiting a result from this camera."""


class RegistryFull(RelayError):
    """A poll from a new camera id while the registry already holds ``max_cameras``."""


class TooManyUploads(RelayError):
    """A camera posts another result while as many as it may have are being read:
    one per unanswered command, plus one."""
