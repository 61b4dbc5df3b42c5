"""A result posted at a node that is not its camera's home: read and checked here,
then forwarded to the home, whose receipt is the camera's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..relay import LogResult, Receipt, Reservation, ResultUpload
from .payload import result_bytes

Forward = Callable[[str | None, bytes], Awaitable[Receipt]]


class ForwardedUpload(ResultUpload):
    """``ResultUpload`` for a camera homed elsewhere (the home checks the request id)."""

    def __init__(self, forward: Forward, reservation: Reservation) -> None:
        # No local session: everything the base class needs of one, the home does.
        self._forward = forward
        self._reservation = reservation
        self._result: LogResult | None = None
        self.request_id: str | None = None

    def check_request_id(self, request_id: str) -> None:
        self.request_id = request_id

    def lost(self) -> None:
        """Nothing to do here: the home redelivers the command on the camera's next poll."""

    async def submit(self, request_id: str | None, result: LogResult) -> Receipt:
        self._result = result
        self._reservation.done_reading()
        return await self._forward(request_id, result_bytes(result))
