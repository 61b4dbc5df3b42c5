"""HTTP handlers: parse, call the relay, render. Relay errors become problems in middleware."""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Final

from aiohttp import web

from common.version import version

from ..observe.metrics import METRICS_CONTENT_TYPE
from ..relay import Command, ResultOutcome
from ..state import get_metrics, get_relay, get_settings, get_started_at
from .answers import stream_logs
from .auth import require_camera, require_user
from .body_reader import receive_result
from .camera_list import camera_json, every_camera
from .params import (
    HINT_HEADER,
    camera_id_param,
    camera_query_params,
    declared_body_size,
    query_of,
    require_json_body,
    time_range_params,
    unit_hint,
)
from .problems import json_bytes, json_response

#: one body for every noop: a keep-alive connection holds its last response until the
#: camera's next poll ends
NOOP_BODY: Final = json_bytes({"command": "noop"})


def command_body(command: Command) -> dict[str, object]:
    return {
        "command": "send_logs",
        "requestId": command.request_id,
        "startTimestamp": command.time_range.wire_start,
        "endTimestamp": command.time_range.wire_end,
    }


async def poll_for_command(request: web.Request) -> web.Response:
    camera_id = camera_id_param(query_of(request))
    require_camera(request, get_settings(request.app).camera_secret, camera_id)
    command = await get_relay(request.app).poll(camera_id)
    if command is None:
        return web.Response(body=NOOP_BODY, content_type="application/json")
    return json_response(command_body(command))


async def send_logs(request: web.Request) -> web.Response:
    settings = get_settings(request.app)
    relay = get_relay(request.app)
    camera_id = camera_id_param(query_of(request))
    require_camera(request, settings.camera_secret, camera_id)
    relay.camera_seen(camera_id)
    require_json_body(request)
    declared = declared_body_size(request, settings.max_upload_bytes)
    receipt, count = await receive_result(request, relay, camera_id, declared, settings)
    if receipt.callers:
        # Let the callers just served write their answers first: users wait for
        # theirs, the camera only needs this one to poll again.
        await asyncio.sleep(0)
    return json_response(
        {
            "status": receipt.outcome.value,
            "requestId": receipt.request_id,
            "duplicate": receipt.outcome is ResultOutcome.DUPLICATE,
            "count": count,
        }
    )


async def get_logs(request: web.Request) -> web.StreamResponse:
    app = request.app
    require_user(request, get_settings(app).api_token)
    query = query_of(request)
    camera_id = camera_id_param(query)
    time_range = time_range_params(query)
    hint = unit_hint(time_range)
    headers = None if hint is None else {HINT_HEADER: hint}
    selection = await get_relay(app).fetch_logs(camera_id, time_range)
    try:
        return await stream_logs(request, camera_id, time_range, selection, headers)
    finally:
        selection.release()


async def list_cameras(request: web.Request) -> web.StreamResponse:
    require_user(request, get_settings(request.app).api_token)
    query = camera_query_params(query_of(request))
    relay = get_relay(request.app)
    if query is None:
        return await every_camera(request, relay)
    # One more than asked for tells whether another page follows.
    limit = None if query.limit is None else query.limit + 1
    found = await relay.list_cameras(query.prefix, query.online, query.after, limit)
    next_after = None
    if query.limit is not None and len(found) > query.limit:
        del found[query.limit :]
        next_after = found[-1].camera_id
    stats = await relay.fleet_stats()
    return json_response(
        {
            "cameras": [camera_json(status) for status in found],
            "next": next_after,
            "totals": {
                "known": stats.cameras,
                "online": stats.online,
                "polling": stats.polls_held,
                "waiting": stats.callers_waiting,
                "inFlight": stats.commands_in_flight,
            },
        }
    )


async def healthz(request: web.Request) -> web.Response:
    relay = get_relay(request.app)
    return json_response(
        {
            "status": "stopping" if relay.closed else "ok",
            "uptimeSeconds": round(time.monotonic() - get_started_at(request.app), 3),
            "node": get_settings(request.app).node_name,
            "redis": relay.store_state(),
            "version": version(),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=get_metrics(request.app).exposition(),
        headers={"Content-Type": METRICS_CONTENT_TYPE},
    )


async def openapi(request: web.Request) -> web.Response:
    document = resources.files("server.http").joinpath("openapi.json").read_bytes()
    return web.Response(body=document, content_type="application/json")
