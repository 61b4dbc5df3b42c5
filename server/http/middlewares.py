"""The one middleware every request passes: a request id, problem+json for every error,
and the ``/logs`` outcomes counted by status.

One middleware rather than one per concern: aiohttp wraps each middleware in a
coroutine of its own, so every request paid for each one it passed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from ..observe.logging_setup import REQUEST_ID
from ..relay import RelayError
from ..relay.ids import random_hex
from ..state import get_metrics
from .error_map import problem_for
from .problems import ProblemError, problem_response

logger = logging.getLogger("camrelay.http")
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
LOGS_ROUTE = "logs"


@web.middleware
async def serve_request(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag the request's log lines and response with a request id (the client's, if
    sane); every error, ours or the framework's, leaves as application/problem+json;
    ``/logs`` outcomes are counted by status and the successful ones timed."""
    given = request.headers.get(REQUEST_ID_HEADER)
    request_id = given if given and REQUEST_ID_PATTERN.fullmatch(given) else random_hex(16)
    token = REQUEST_ID.set(request_id)
    logs = request.match_info.route.name == LOGS_ROUTE
    started = time.perf_counter() if logs else 0.0
    try:
        try:
            response = await handler(request)
        except (ProblemError, RelayError) as error:
            response = problem_for(request, error).to_response()
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = problem_for(request, error).to_response()
        except asyncio.CancelledError:
            if logs:
                get_metrics(request.app).logs_cancelled()
            raise
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            response = problem_response(
                500,
                f"the server failed on this request; report request id {request_id}",
                kind="internal-error",
            )
    finally:
        REQUEST_ID.reset(token)
    if logs:
        get_metrics(request.app).logs_answered(response.status, time.perf_counter() - started)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response
