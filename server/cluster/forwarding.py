"""Results posted at a node that is not the camera's home: read and checked there, then
forwarded to the home (``Posted``), whose ``ResultReceipt`` is the camera's answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn

from ..relay import (
    FIRST_RESERVATION_BYTES,
    LogResult,
    Receipt,
    RelayError,
    RelayObserver,
    Reservation,
    ResultOutcome,
    ShuttingDown,
    TooManyUploads,
    UnknownRequest,
    Upload,
)
from ..relay.upload import request_id_too_long
from . import messages as m
from .backend import BackendError, Body
from .context import NodeContext
from .courier import SEND_TIMEOUT_SECONDS
from .identity import Refs
from .payload import result_bytes, take_result
from .unavailable import ClusterUnavailable

logger = logging.getLogger("camrelay.cluster")

#: how long a node waits for the camera's home to answer a forwarded result
RECEIPT_WAIT_SECONDS = 2.0

Forward = Callable[[str | None, bytes], Awaitable[Receipt]]
#: makes this node the home of a camera whose home stopped and parked its work; True once
#: its session is here
AdoptParked = Callable[[str], Awaitable[bool]]


class AdoptedHere(Exception):
    """Raised by ``ResultForwarding.receive`` before its upload starts: the camera's home
    stopped and parked its work, and this node took it over; the result is taken here."""


class ForwardedUpload(Upload):
    """An upload for a camera homed elsewhere (the home checks the request id)."""

    def __init__(
        self, forward: Forward, reservation: Reservation, camera_id: str, observer: RelayObserver
    ) -> None:
        self._forward = forward
        self._camera_id = camera_id
        self._observer = observer
        self._reservation = reservation
        self._result: LogResult | None = None

    def check_request_id(self, request_id: str) -> None:
        """Nothing to check here: the home knows which ids it awaits."""

    def refuse_long_request_id(self) -> NoReturn:
        self._observer.upload_refused(self._camera_id, body_read=True)
        self._observer.result_received(self._camera_id, ResultOutcome.LATE)
        raise request_id_too_long(self._camera_id)

    async def reserve(self, size: int) -> None:
        await self._reservation.grow_to(size)

    def release_budget(self) -> None:
        self._reservation.release()

    def lost(self, request_id: str | None = None) -> None:
        """Nothing to do here: the home redelivers the command on the camera's next poll."""

    async def submit(self, request_id: str | None, result: LogResult) -> Receipt:
        self._result = result
        self._reservation.done_reading()
        return await self._forward(request_id, result_bytes(result))

    def close(self) -> None:
        if self._result is None:
            self._reservation.release()
        else:
            self._result.release()


class ResultForwarding:
    def __init__(self, ctx: NodeContext, refs: Refs, adopt_parked: AdoptParked) -> None:
        self._ctx = ctx
        self._refs = refs
        self._adopt_parked = adopt_parked
        #: results forwarded to other homes, waiting for their receipt, by ref
        self._receipts: dict[str, asyncio.Future[m.ResultReceipt]] = {}
        #: uploads being read here, by camera
        self._uploads: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._receipts) + len(self._uploads)

    @contextlib.asynccontextmanager
    async def receive(self, camera_id: str, declared_bytes: int | None) -> AsyncIterator[Upload]:
        """An upload for a camera homed elsewhere: 404 before the body is read when its
        home expects no result from it. ``AdoptedHere`` when it has no home because its
        home stopped, with a command unanswered: its work is parked, and this node takes
        the camera over (as its next poll would) to take the result."""
        ctx = self._ctx
        entry = await ctx.entry(camera_id)
        if entry is not None and not entry.home and entry.expect:
            if await self._adopt_parked(camera_id):
                raise AdoptedHere
            entry = await ctx.entry(camera_id)  # it has a home again: the result goes there
        # ``polling``: a command just delivered may not be in the store yet; the home decides.
        expected = entry is not None and (entry.expect or entry.polling)
        if entry is None or not expected or not await ctx.membership.confirm_alive(entry.home):
            ctx.relay.observer.upload_refused(camera_id, body_read=False)
            ctx.relay.observer.result_received(camera_id, ResultOutcome.LATE)
            raise UnknownRequest(
                f"camera {camera_id!r} has no command awaiting a result; poll first"
            )
        home = entry.home
        # The home's count of unanswered commands may lag a delivery by a flush: one more.
        unanswered = max(entry.in_flight, 1)
        in_flight = self._uploads.get(camera_id, 0)
        if in_flight >= unanswered + 1:
            raise TooManyUploads(
                f"camera {camera_id!r} already has {in_flight} results being uploaded here, "
                f"the most it may have with {unanswered} unanswered command(s) (one per "
                "command, plus one): let an upload finish or close its connection, then retry"
            )
        self._uploads[camera_id] = in_flight + 1
        try:
            reservation = await ctx.relay.budget.reserve(declared_bytes or FIRST_RESERVATION_BYTES)

            async def forward(request_id: str | None, body: bytes) -> Receipt:
                return await self._forward(camera_id, home, request_id, body)

            upload = ForwardedUpload(forward, reservation, camera_id, ctx.relay.observer)
            try:
                yield upload
            finally:
                upload.close()
        finally:
            left = self._uploads.pop(camera_id) - 1
            if left:
                self._uploads[camera_id] = left

    async def _forward(
        self, camera_id: str, home: str, request_id: str | None, body: bytes
    ) -> Receipt:
        ref = self._refs.next()
        done: asyncio.Future[m.ResultReceipt] = asyncio.get_running_loop().create_future()
        self._receipts[ref] = done
        try:
            self._ctx.events.forwarded("posted")
            await self._ctx.courier.send(
                home, m.Posted(camera=camera_id, ref=ref, request_id=request_id), body
            )
            async with asyncio.timeout(RECEIPT_WAIT_SECONDS):
                receipt = await done
        except TimeoutError:
            raise ClusterUnavailable(
                f"the server holding camera {camera_id!r} did not confirm the result; post it again"
            ) from None
        finally:
            self._receipts.pop(ref, None)
        if receipt.error:
            raise m.error_of(receipt.error, receipt.detail)
        return Receipt(ResultOutcome(receipt.outcome), receipt.request_id, receipt.callers)

    # ------------------------------------------------------------------ messages

    def on_receipt(self, message: m.ResultReceipt, body: Body | None) -> None:
        done = self._receipts.get(message.ref)
        if done is not None and not done.done():
            done.set_result(message)

    def on_posted(self, message: m.Posted, body: Body | None) -> None:
        # Off the inbox's reader: the result may wait for room in the budget.
        self._ctx.spawn(self._take_posted(message, body))

    async def _take_posted(self, message: m.Posted, body: Body | None) -> None:
        ctx = self._ctx
        age = ctx.wall_clock() - message.sent_ms / 1000
        if message.sent_ms and age > SEND_TIMEOUT_SECONDS + RECEIPT_WAIT_SECONDS:
            # Its sender stopped waiting and told the camera to post again: taking it now
            # could answer a later command with an older result.
            logger.warning("dropped a result forwarded %.1f s ago, past its sender's wait", age)
            return
        reply: m.ResultReceipt
        try:
            if ctx.closing:
                # Its work is being parked for the camera's next home: posted again
                # in a moment, the result reaches it there.
                raise ShuttingDown(
                    f"the server holding camera {message.camera!r} is stopping; post the "
                    "result again in a moment"
                )
            if not ctx.relay.has_session(message.camera):
                raise UnknownRequest(
                    f"camera {message.camera!r} has no command awaiting a result; poll first"
                )
            result = await take_result(ctx.relay.budget, body)
            if result is None:
                return  # the body is gone: the node that forwarded it tells the camera
            try:
                receipt = ctx.relay.submit_result(message.camera, message.request_id, result)
            finally:
                result.release()
            reply = m.ResultReceipt(
                camera=message.camera,
                ref=message.ref,
                outcome=receipt.outcome.value,
                request_id=receipt.request_id,
                callers=receipt.callers,
            )
        except RelayError as error:
            reply = m.ResultReceipt(
                camera=message.camera,
                ref=message.ref,
                error=type(error).__name__,
                detail=error.detail,
            )
        except BackendError as error:
            ctx.health.failed(error)
            return
        ctx.courier.post(message.sender, reply)
