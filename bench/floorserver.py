"""The least an aiohttp server can do for camrelay's exchanges: a yardstick, not a relay.

``python -m bench.floorserver --port N`` serves the protocol's happy path and
nothing else: ``GET /logs`` queues a future and hands a held ``GET
/poll_for_command`` a command; ``POST /send_logs`` reads the body, parses it once
with ``orjson`` (the check no relay can skip) and checks its ``requestId``, then
answers every queued caller the camera's ``logs`` as sent, in one answer built
once. No auth, limits, time ranges, deadlines, metrics or error bodies; one
camera at a time. The ``floor`` scenario measures it beside the relay, so a
ratio the relay misses can be read against what aiohttp and the protocol allow.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from collections.abc import Sequence
from typing import Final

import orjson
from aiohttp import web

__all__ = ["FloorRelay", "create_app", "main"]

JSON: Final = "application/json"
HEALTHY: Final = orjson.dumps({"status": "ok"})
ACCEPTED: Final = orjson.dumps({"status": "accepted"})
#: every command asks for the whole log
ALL_TIME_END: Final = 2**53


class FloorRelay:
    """Held polls, queued callers and the callers of each command in flight."""

    def __init__(self) -> None:
        #: the camera that polled last
        self.camera_id = ""
        self.polls: list[asyncio.Future[str]] = []
        self.queued: list[asyncio.Future[bytes]] = []
        self.in_flight: dict[str, list[asyncio.Future[bytes]]] = {}

    def dispatch(self) -> None:
        if self.polls and self.queued:
            request_id = os.urandom(8).hex()
            self.in_flight[request_id], self.queued = self.queued, []
            self.polls.pop().set_result(request_id)

    def answer(self, body: bytes) -> None:
        """Hand the callers of the command ``body`` answers their logs (as sent)."""
        posted = orjson.loads(body)
        callers = self.in_flight.pop(posted["requestId"], [])
        logs = body[body.index(b"[", body.index(b'"logs"')) : body.rindex(b"]") + 1]
        answer = b'{"count":%d,"logs":%s}' % (len(posted["logs"]), logs)
        for caller in callers:
            if not caller.done():
                caller.set_result(answer)


FLOOR: Final = web.AppKey("floor", FloorRelay)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=HEALTHY, content_type=JSON)


async def poll_for_command(request: web.Request) -> web.Response:
    relay = request.app[FLOOR]
    relay.camera_id = request.query.get("cameraId", "")
    poll = asyncio.get_running_loop().create_future()
    relay.polls.append(poll)
    relay.dispatch()
    command = {
        "command": "send_logs",
        "requestId": await poll,
        "startTimestamp": 0,
        "endTimestamp": ALL_TIME_END,
    }
    return web.Response(body=orjson.dumps(command), content_type=JSON)


async def send_logs(request: web.Request) -> web.Response:
    request.app[FLOOR].answer(await request.read())
    await asyncio.sleep(0)  # the callers write their answers first, as the relay's do
    return web.Response(body=ACCEPTED, content_type=JSON)


async def get_logs(request: web.Request) -> web.Response:
    relay = request.app[FLOOR]
    caller = asyncio.get_running_loop().create_future()
    relay.queued.append(caller)
    relay.dispatch()
    return web.Response(body=await caller, content_type=JSON)


async def list_cameras(request: web.Request) -> web.Response:
    """Enough of ``/cameras`` for the bench to see its camera polling."""
    relay = request.app[FLOOR]
    camera = {"cameraId": relay.camera_id, "polling": any(not p.done() for p in relay.polls)}
    return web.Response(body=orjson.dumps({"cameras": [camera]}), content_type=JSON)


def create_app() -> web.Application:
    app = web.Application()
    app[FLOOR] = FloorRelay()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/poll_for_command", poll_for_command)
    app.router.add_post("/send_logs", send_logs)
    app.router.add_get("/logs", get_logs)
    app.router.add_get("/cameras", list_cameras)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floorserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_app()
    gc.freeze()  # as the relay does once it listens: start-up's objects out of the collector's way
    # A held poll is not waited for at the end: the yardstick has no graceful stop.
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=0.1,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
