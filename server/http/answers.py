"""Writing a ``/logs`` answer from the entries' own bytes, in pieces, with a write deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping

import orjson
from aiohttp import web

from ..observe.logging_setup import REQUEST_ID
from ..relay import LogSelection, TimeRange
from ..state import get_answers, get_metrics, get_settings
from .middlewares import REQUEST_ID_HEADER

TAIL = b"]}"

logger = logging.getLogger("camrelay")


def answer_head(camera_id: str, time_range: TimeRange, count: int) -> bytes:
    """``{"cameraId":..,"startTimestamp":..,"endTimestamp":..,"count":N,"logs":[``"""
    head = orjson.dumps(
        {
            "cameraId": camera_id,
            "startTimestamp": time_range.start,
            "endTimestamp": time_range.end,
            "count": count,
        }
    )
    return head[:-1] + b',"logs":['


async def stream_logs(
    request: web.Request,
    camera_id: str,
    time_range: TimeRange,
    selection: LogSelection,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Stream the answer. A caller is cut if a piece waits longer than
    ``WRITE_TIMEOUT_SECONDS``, or the whole answer longer than that plus its size at
    ``MIN_TRANSFER_BYTES_PER_SECOND``: a slow reader must not pin the result."""
    head = answer_head(camera_id, time_range, selection.count)
    body = selection.render_small(head, TAIL)
    if body is not None:
        return web.Response(body=body, content_type="application/json", headers=headers)
    size = selection.size(head, TAIL)
    response = web.StreamResponse(
        headers={
            **(headers or {}),
            "Content-Type": "application/json",
            REQUEST_ID_HEADER: REQUEST_ID.get(),
        }
    )
    response.content_length = size
    settings = get_settings(request.app)
    piece_deadline = settings.write_timeout_seconds
    with cut_short_on_failure(request, "the answer"):
        async with get_answers(request.app).within(settings.transfer_seconds(piece_deadline, size)):
            await response.prepare(request)
            for chunk in selection.chunks(head, TAIL):
                async with asyncio.timeout(piece_deadline):
                    await response.write(chunk)
    return response


@contextlib.contextmanager
def cut_short_on_failure(request: web.Request, what: str) -> Iterator[None]:
    """Around writing an answer whose status may be sent already, so that no error's
    problem lands inside its body: a reader past a write deadline (``TimeoutError``) is
    cut and counted, a client that left is let go, and any other failure is logged and
    cut."""
    try:
        yield
    except TimeoutError:
        get_metrics(request.app).slow_readers_cut.inc()
        cut(request)
    except ConnectionError:
        pass  # the client left; aiohttp ends the connection
    except Exception:
        logger.exception("%s was cut short", what)
        cut(request)


def cut(request: web.Request) -> None:
    """End the connection at once (what was written so far is all the client gets)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
