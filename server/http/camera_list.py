"""``/cameras`` without parameters: every camera, written a slice at a time.

The relay is asked for one slice of the fleet at a time (the cameras after the
last one written), and each slice is encoded and written before the next is
read, with the event loop free in between. Built whole, 100,000 cameras held it
for a few hundred milliseconds (every other request waited) and made a 10 MB
body. A camera that joins or leaves while the list is written may or may not be
in it; none is in it twice, and the ids are in order. A fleet smaller than one
slice is one plain answer, as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import orjson
from aiohttp import hdrs, web

from ..observe.logging_setup import REQUEST_ID
from ..relay import CameraStatus, RelayError, RelayService
from ..state import get_answers, get_settings
from .answers import cut, cut_short_on_failure
from .middlewares import REQUEST_ID_HEADER
from .problems import json_response

#: cameras read, encoded and written at a time
SLICE: Final = 1000

logger = logging.getLogger("camrelay")


def camera_json(status: CameraStatus) -> dict[str, object]:
    return {
        "cameraId": status.camera_id,
        "online": status.online,
        "lastSeen": status.last_seen,
        "polling": status.polling,
        "waiting": status.waiting,
        "inFlight": status.in_flight,
    }


async def every_camera(request: web.Request, relay: RelayService) -> web.StreamResponse:
    """``{"cameras": [...]}``, every camera sorted by id. A reader that takes a slice
    slower than ``WRITE_TIMEOUT_SECONDS`` is cut; so is the answer if the relay fails
    once it has begun (the status is sent already): the client sees it cut short."""
    found = await relay.list_cameras(limit=SLICE)
    if len(found) < SLICE:
        return json_response({"cameras": [camera_json(status) for status in found]})
    response = web.StreamResponse(
        headers={"Content-Type": "application/json", REQUEST_ID_HEADER: REQUEST_ID.get()}
    )
    if request.method == hdrs.METH_HEAD:
        return response  # the headers a GET gets; aiohttp sends no body for a HEAD
    with cut_short_on_failure(request, "the camera list"):
        try:
            await _write_every_slice(request, response, relay, found)
        except RelayError as error:  # the relay's own: no traceback
            logger.warning("the camera list was cut short: %s", error.detail)
            cut(request)
    return response


async def _write_every_slice(
    request: web.Request,
    response: web.StreamResponse,
    relay: RelayService,
    found: list[CameraStatus],
) -> None:
    deadline = get_settings(request.app).write_timeout_seconds
    answers = get_answers(request.app)
    separator = b'{"cameras":['
    await response.prepare(request)
    while found:
        piece = orjson.dumps([camera_json(status) for status in found])
        async with answers.within(deadline):
            await response.write(separator + piece[1:-1])
        separator = b","
        if len(found) < SLICE:
            break
        await asyncio.sleep(0)  # other requests run between two slices
        found = await relay.list_cameras(after=found[-1].camera_id, limit=SLICE)
    async with answers.within(deadline):
        await response.write(b"]}")
