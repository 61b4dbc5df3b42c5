"""Request id, /logs outcome metrics, and problem+json for every error."""

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
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag the request's log lines and response with a request id (the client's, if sane)."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if REQUEST_ID_PATTERN.fullmatch(given) else random_hex(16)
    token = REQUEST_ID.set(request_id)
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def logs_outcomes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count /logs outcomes by status and time the successful ones."""
    if request.match_info.route.name != LOGS_ROUTE:
        return await handler(request)
    metrics = get_metrics(request.app)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        metrics.logs_requests.labels("cancelled").inc()
        raise
    metrics.logs_requests.labels(str(response.status)).inc()
    if response.status == 200:
        metrics.relay_latency.observe(time.perf_counter() - started)
    return response


@web.middleware
async def problem_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error, ours or the framework's, leaves as application/problem+json."""
    try:
        return await handler(request)
    except (ProblemError, RelayError) as error:
        return problem_for(request, error).to_response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return problem_for(request, error).to_response()
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(
            500,
            f"the server failed on this request; report request id {REQUEST_ID.get()}",
            kind="internal-error",
        )
