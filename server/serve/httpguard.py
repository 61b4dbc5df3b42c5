"""Where camrelay extends aiohttp's connection handling (the one place it does).

Two things aiohttp's public API cannot do:

1. **Answer a request its HTTP parser rejects without echoing it.** aiohttp
   answers such a request (a request line or header over 8190 bytes, a header
   line ending in a bare LF, bytes that are not HTTP, a bad Content-Length)
   before routing, so no middleware or ``on_response_prepare`` signal sees it:
   ``RequestHandler.handle_error`` builds a text/plain 400 quoting the parser's
   message, which quotes the offending line (an ``Authorization`` header
   included), and logs it with a traceback. The only hook is that method. The
   handler overrides it: a problem+json 400 whose detail names the kind of
   fault and nothing the client sent, one log line without traceback or client
   bytes (``ThrottledLog``: at most one a second), and a metric. (A
   ``logging.Filter`` on aiohttp's server logger, public API, could drop the
   traceback but not change the body; once the method is overridden for the
   body, it writes the log line too, and aiohttp logs nothing for these.)
2. **A deadline for a new connection's request head.** aiohttp's public
   ``keepalive_timeout`` closes a connection that has waited that long for a
   request's head, counted from the connection's opening or from the end of the
   previous response, and never while a handler runs (a held poll, a waiting
   ``/logs`` caller): camrelay passes ``KEEPALIVE_TIMEOUT_SECONDS`` there. A
   shorter deadline for the first head (``HEADER_TIMEOUT_SECONDS``; Settings
   refuses a longer one, which could never fire) starts for each connection in
   ``web.Server.connection_made``; every connection's deadline is as far off,
   so they wait in opening order under one loop timer (a timer per connection
   would cost some 300 bytes for as long as the deadline runs). When a deadline
   passes on a connection whose parser has not yet produced a request, that
   connection is closed. On a kept-alive connection the next head is bounded by
   aiohttp's timer (``KEEPALIVE_TIMEOUT_SECONDS`` from the end of the previous response):
   restarting the header deadline there too would need a hook inside aiohttp's
   request loop, for no bound an idle client could not already get by sending
   one quick request first.

What this relies on, each checked by tests/test_httpguard.py:

- ``keepalive_timeout`` runs from a connection's opening, so it bounds the
  first request head too.
- ``web.Server.__call__`` is the protocol factory and returns a
  ``RequestHandler``; ``Server.connection_made``/``connection_lost`` are called
  with that handler as connections open and close.
- ``RequestHandler.handle_error(request, status, exc, message)`` makes the
  response for a parser error (status 400, ``exc`` the parser's exception) and
  for a handler's unhandled exception (500) or timeout (504).
- ``RequestHandler`` declares ``__slots__`` (so a subclass with empty slots can
  take over an instance), has ``_request_count`` (messages parsed so far) and
  ``_manager`` (its ``Server``).

The server is switched over by assigning ``__class__`` after aiohttp built it
(``GuardedAppRunner.setup``, then each connection's handler), so aiohttp's own
construction (its arguments, its fallbacks) stays untouched.

These are internals: an aiohttp outside ``SUPPORTED_AIOHTTP`` (the range these
tests passed on; setup.cfg pins the same range) makes start-up refuse with one
line rather than risk echoing secrets. To widen it, run tests/test_httpguard.py
and tests/test_malformed_http.py on the new version and move both bounds.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from ..http.problems import problem_response
from ..observe.throttledlog import ThrottledLog

#: aiohttp versions (inclusive lower, exclusive upper bound) this module is verified on
SUPPORTED_AIOHTTP = ((3, 14), (3, 15))

logger = logging.getLogger("camrelay.http")


class UnsupportedAiohttp(RuntimeError):
    """The installed aiohttp is outside ``SUPPORTED_AIOHTTP``; the message is one line."""


def check_aiohttp_version(version: str = aiohttp.__version__) -> None:
    match = re.match(r"(\d+)\.(\d+)", version)
    low, high = SUPPORTED_AIOHTTP
    if match is None or not low <= (int(match[1]), int(match[2])) < high:
        raise UnsupportedAiohttp(
            f"aiohttp {version} is outside the range server/serve/httpguard.py is verified on "
            f"(>={low[0]}.{low[1]},<{high[0]}.{high[1]}): parser errors could echo client "
            "bytes; install a version in that range (pip install -e .)"
        )


def _parser_fault(exc: BaseException | None) -> str:
    """What was wrong, in words that quote nothing of the request."""
    if isinstance(exc, LineTooLong):
        return "its request line or a header is longer than 8190 bytes"
    if isinstance(exc, BadHttpMethod):
        return "it does not start with an HTTP method (TLS or another protocol on an HTTP port?)"
    return (
        "its request line or headers are malformed (each line must end in CRLF, "
        "a header needs a name and a colon, Content-Length must be a whole number)"
    )


class GuardedRequestHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status != HTTPStatus.BAD_REQUEST:
            # A fault of the server's own (500, 504): aiohttp logs it with its traceback,
            # and refuses when part of a response went out already.
            super().handle_error(request, status, exc, message)
            detail = f"the server could not handle this request ({HTTPStatus(status).phrase})"
        else:
            if request.writer.output_size > 0:
                raise ConnectionError("a response has started; cannot answer a parser error")
            fault = _parser_fault(exc)
            manager = self._manager
            if isinstance(manager, GuardedServer):
                manager.guard.request_rejected(type(exc).__name__)
            detail = f"the request could not be parsed as HTTP/1.1: {fault}"
        response = problem_response(status, detail, kind="malformed-request")
        response.force_close()
        return response


class ConnectionGuard:
    """The limits and reports of one server: the header deadline and parser rejections."""

    def __init__(
        self,
        *,
        header_timeout_seconds: float,
        on_header_timeout: Callable[[], None] = lambda: None,
        on_rejected: Callable[[], None] = lambda: None,
    ) -> None:
        self.header_timeout_seconds = header_timeout_seconds
        self._on_header_timeout = on_header_timeout
        self._on_rejected = on_rejected
        self._rejections_log = ThrottledLog(logger)
        self._header_timeouts_log = ThrottledLog(logger)

    def request_rejected(self, fault: str) -> None:
        self._on_rejected()
        self._rejections_log.log("answered 400 to a request the HTTP parser rejected (%s)", fault)

    def header_timed_out(self) -> None:
        self._on_header_timeout()
        self._header_timeouts_log.log(
            "closed a connection that sent no complete request head within %g s "
            "(HEADER_TIMEOUT_SECONDS)",
            self.header_timeout_seconds,
        )


class GuardedServer(web.Server):
    """A ``web.Server`` taken over by ``guard_server``; only these methods differ."""

    guard: ConnectionGuard
    #: each open connection's header deadline (loop time), earliest first: every
    #: connection's is ``header_timeout_seconds`` from its opening
    header_deadlines: dict[RequestHandler, float]
    #: the one timer, armed at the earliest deadline while there is one
    header_timer: asyncio.TimerHandle | None

    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        handler.__class__ = GuardedRequestHandler
        return handler

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        loop = asyncio.get_running_loop()
        self.header_deadlines[handler] = loop.time() + self.guard.header_timeout_seconds
        if self.header_timer is None:
            self._arm_header_timer(loop)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.header_deadlines.pop(handler, None)
        super().connection_lost(handler, exc)

    def _arm_header_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        earliest = next(iter(self.header_deadlines.values()))
        self.header_timer = loop.call_at(earliest, self._header_deadlines_passed)

    def _header_deadlines_passed(self) -> None:
        loop = asyncio.get_running_loop()
        # The timer may run a clock tick early: what it was armed for is due.
        now = max(loop.time(), self.header_timer.when() if self.header_timer else 0.0)
        self.header_timer = None
        deadlines = self.header_deadlines
        try:
            while deadlines:
                handler, deadline = next(iter(deadlines.items()))
                if deadline > now:
                    break
                del deadlines[handler]
                if handler._request_count == 0 and handler.transport is not None:
                    handler.force_close()
                    self.guard.header_timed_out()
        finally:
            # Armed again whatever happened: one failure does not end the deadlines.
            if deadlines and self.header_timer is None:
                self._arm_header_timer(loop)


def guard_server(server: web.Server, guard: ConnectionGuard) -> None:
    """Switch ``server`` (built by aiohttp, not serving yet) to ``GuardedServer``."""
    server.__class__ = GuardedServer
    assert isinstance(server, GuardedServer)
    server.guard = guard
    server.header_deadlines = {}
    server.header_timer = None


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose server is guarded; other arguments as ``web.AppRunner``."""

    def __init__(self, app: web.Application, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        check_aiohttp_version()
        super().__init__(app, **kwargs)
        self._guard = guard

    async def setup(self) -> None:
        await super().setup()
        assert self.server is not None
        guard_server(self.server, self._guard)
