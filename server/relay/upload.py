"""One result being read from a camera: checked as its ``requestId`` arrives, budgeted,
and a lost delivery if it breaks off."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import NoReturn

from .budget import FIRST_RESERVATION_BYTES, Reservation, ResultBudget
from .errors import UnknownRequest
from .logresult import LogResult
from .logscan import MAX_REQUEST_ID_BYTES
from .observer import RelayObserver, ResultOutcome
from .records import Receipt
from .service import Upload
from .session import CameraSession
from .waiting import shown


def lose_upload(
    session: CameraSession, observer: RelayObserver, request_id: str | None, started: int
) -> None:
    """An upload broke off: the command it answered goes to the camera's next poll
    (``started``: the delivery serial ``CameraSession.upload_started`` returned)."""
    observer.upload_died(session.camera_id)
    session.upload_lost(request_id, started)


def request_id_too_long(camera_id: str) -> UnknownRequest:
    """The 404 for a ``requestId`` found, as it streams in, to be longer than any the
    server issues; raise it to stop reading."""
    return UnknownRequest(
        f"the requestId is longer than {MAX_REQUEST_ID_BYTES} bytes, so no command has it "
        f"(the server's ids are 32 characters): answer a command camera {camera_id!r} "
        "received, with its requestId as given"
    )


class ResultUpload(Upload):
    """Made by ``Relay.receive_result``; the HTTP layer feeds it what it reads."""

    def __init__(
        self,
        session: CameraSession,
        observer: RelayObserver,
        reservation: Reservation,
        started: int,
    ) -> None:
        self._session = session
        self._observer = observer
        self._reservation = reservation
        self._started = started
        self._result: LogResult | None = None
        self.request_id: str | None = None

    def check_request_id(self, request_id: str) -> None:
        """Raises ``UnknownRequest`` at once if nothing awaits ``request_id``."""
        self.request_id = request_id
        if not self._session.awaits(request_id):
            camera_id = self._session.camera_id
            self._observer.upload_refused(camera_id, body_read=True)
            self._observer.result_received(camera_id, ResultOutcome.LATE)
            raise UnknownRequest(
                f"no command {shown(request_id)} is awaiting a result from camera "
                f"{camera_id!r}: it is unknown, expired, or was issued to another camera"
            )

    def refuse_long_request_id(self) -> NoReturn:
        camera_id = self._session.camera_id
        self._observer.upload_refused(camera_id, body_read=True)
        self._observer.result_received(camera_id, ResultOutcome.LATE)
        raise request_id_too_long(camera_id)

    async def reserve(self, size: int) -> None:
        """Hold ``size`` bytes of the budget (body and index so far), waiting for room."""
        await self._reservation.grow_to(size)

    def release_budget(self) -> None:
        """Called once nobody needs the result any more."""
        self._reservation.release()

    def lost(self, request_id: str | None = None) -> None:
        """The body broke off: the command it answered is handed to the next poll."""
        named = self.request_id if self.request_id is not None else request_id
        lose_upload(self._session, self._observer, named, self._started)

    async def submit(self, request_id: str | None, result: LogResult) -> Receipt:
        """Hand the result read whole to its callers (``UnknownRequest`` if none)."""
        self._result = result
        self._reservation.done_reading()
        return self._session.submit_result(request_id, result)

    def close(self) -> None:
        """The upload's request ends: its own hold on the bytes ends with it."""
        if self._result is None:
            self._reservation.release()
        else:
            self._result.release()


class Receiving(AbstractAsyncContextManager[ResultUpload]):
    """``Relay.receive_result``'s context: the camera counts as seen while it streams
    and has its bytes reserved from the budget (waiting their turn) before it is read."""

    def __init__(
        self,
        session: CameraSession,
        observer: RelayObserver,
        budget: ResultBudget,
        declared_bytes: int | None,
    ) -> None:
        self._session = session
        self._observer = observer
        self._budget = budget
        self._declared_bytes = declared_bytes
        self._upload: ResultUpload | None = None

    async def __aenter__(self) -> ResultUpload:
        session = self._session
        started = session.upload_started()
        try:
            reservation = await self._budget.reserve(
                self._declared_bytes or FIRST_RESERVATION_BYTES
            )
        except asyncio.CancelledError:
            # The camera hung up while its upload waited for room: its result is lost.
            try:
                lose_upload(session, self._observer, None, started)
            finally:
                session.upload_ended()
            raise
        except BaseException:
            session.upload_ended()
            raise
        self._upload = ResultUpload(session, self._observer, reservation, started)
        return self._upload

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._upload is not None:
                self._upload.close()
        finally:
            self._session.upload_ended()
