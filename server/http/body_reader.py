"""Reading a ``/send_logs`` body as it streams in: budgeted, with an idle deadline
between chunks and a minimum average rate.

The body is scanned chunk by chunk (``server.relay.logscan``), yielding to the event
loop between chunks; a ``requestId`` nobody awaits stops the reading with a
404, and an upload that breaks off mid-body is reported to the relay as a
lost delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from aiohttp import hdrs, web

from ..relay import Receipt, RelayError, RelayService, Upload
from ..relay.logscan import ResultBodyError, ResultScanner
from ..settings import Settings
from ..state import get_uploads
from .error_map import relay_problem
from .params import body_too_large, invalid_body
from .problems import ProblemError

#: the most one read takes from the socket, and so the most scanned between two yields
READ_CHUNK_BYTES = 64 * 1024


async def receive_result(
    request: web.Request,
    relay: RelayService,
    camera_id: str,
    declared: int | None,
    settings: Settings,
) -> tuple[Receipt, int]:
    """Read, check and hand over the result: its receipt and its number of entries."""
    uploads = get_uploads(request.app)
    uploads.add(request.content)
    try:
        return await _receive(request, relay, camera_id, declared, settings)
    except RelayError as error:
        if request.content.is_eof():
            raise
        # Refused before the body was all read (404, 429, 503): the rest is not read,
        # so the connection cannot carry another request.
        problem = relay_problem(error)
        problem.headers["Connection"] = "close"
        raise problem from None
    finally:
        uploads.discard(request.content)


async def _receive(
    request: web.Request,
    relay: RelayService,
    camera_id: str,
    declared: int | None,
    settings: Settings,
) -> tuple[Receipt, int]:
    async with relay.receive_result(camera_id, declared) as upload:
        length = _decoded_length(request, declared)

        scanner = ResultScanner(
            on_request_id=upload.check_request_id,
            expected_size=length,
            on_request_id_too_long=upload.refuse_long_request_id,
        )
        try:
            await _read_body(request, scanner, upload, length, settings)
            scanned = scanner.finish(on_release=upload.release_budget)
        except ResultBodyError as error:
            raise invalid_body(error.detail) from None
        receipt = await upload.submit(scanned.request_id, scanned.result)
        return receipt, len(scanned.result)


def _decoded_length(request: web.Request, declared: int | None) -> int | None:
    """How long the body is as it is read: its Content-Length, unless it has a
    Content-Encoding (aiohttp decodes it, and the length is of the encoded bytes)."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    return declared if encoding in ("", "identity") else None


class _ReadingClock:
    """Time spent waiting for the camera's bytes (waiting for room in the budget is
    not counted), against ``BODY_TIMEOUT_SECONDS`` plus the bytes received so far at
    ``MIN_TRANSFER_BYTES_PER_SECOND``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self.seconds = 0.0

    def seconds_left(self, received: int) -> float:
        allowed = self._settings.transfer_seconds(self._settings.body_timeout_seconds, received)
        return allowed - self.seconds

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        started = self._loop.time()
        try:
            yield
        finally:
            self.seconds += self._loop.time() - started


async def _read_body(
    request: web.Request,
    scanner: ResultScanner,
    upload: Upload,
    declared: int | None,
    settings: Settings,
) -> None:
    clock = _ReadingClock(settings)
    try:
        while chunk := await _next_chunk(request, upload, settings, clock, scanner.received):
            if scanner.received + len(chunk) > settings.max_upload_bytes:
                raise body_too_large(settings.max_upload_bytes, scanner.received + len(chunk))
            scanner.feed(chunk, last=request.content.at_eof())
            await upload.reserve(scanner.received + scanner.index_bytes)
            if scanner.received == declared:
                return  # all of it: no need to wait for the end to be signalled
            await asyncio.sleep(0)  # other requests run between two chunks of work
    except (ConnectionError, asyncio.CancelledError):
        # the camera hung up mid-body (or the server is stopping)
        upload.lost(scanner.request_id)
        raise


async def _next_chunk(
    request: web.Request,
    upload: Upload,
    settings: Settings,
    clock: _ReadingClock,
    received: int,
) -> bytes:
    """The next piece of the body (empty at its end), within the body's deadlines."""
    content = request.content
    idle = settings.body_timeout_seconds
    seconds_left = clock.seconds_left(received)
    try:
        chunk = content.read_nowait(READ_CHUNK_BYTES)
        if chunk or content.at_eof():
            return chunk  # already received: nothing to wait for, so no deadline to set
        with clock.counting():
            async with asyncio.timeout(min(idle, seconds_left)):
                return await content.read(READ_CHUNK_BYTES)
    except TimeoutError:
        upload.lost()
        if seconds_left < idle:
            reason = (
                f"the body came too slowly: {received} bytes in {clock.seconds:.1f} s, "
                f"below MIN_TRANSFER_BYTES_PER_SECOND ({settings.min_transfer_bytes_per_second}) "
                f"once BODY_TIMEOUT_SECONDS ({idle:g} s) had passed"
            )
        else:
            reason = f"the body stalled: no bytes came for {idle:g} s (BODY_TIMEOUT_SECONDS)"
        raise ProblemError(
            408,
            f"{reason}; its command will be handed to the camera's next poll",
            kind="body-timeout",
            headers={"Connection": "close"},
        ) from None
    except web.RequestPayloadError as error:
        if _connection_lost(request):
            raise ConnectionResetError("the connection was lost mid-body") from error
        # e.g. a Content-Encoding that does not decode
        raise ProblemError(
            400,
            f"the body could not be read: {error}",
            kind="invalid-body",
            headers={"Connection": "close"},  # the rest of it cannot be read either
        ) from None


def _connection_lost(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
