"""Serving the app: problem+json even for requests the HTTP parser rejects.

aiohttp answers a request it cannot parse (a request line or header too long,
bytes that are not HTTP) before routing, so middlewares never see it; its
plain-text answer is replaced here by the same problem+json every other error
gets.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .problems import problem_response
from .settings import Settings

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
logger = logging.getLogger("camrelay")


class ListenError(Exception):
    """The server could not bind its address; the message is one line."""


class ProblemRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The parent logs the error and refuses when a response has started.
        super().handle_error(request, status, exc, message)
        if status == HTTPStatus.BAD_REQUEST:
            detail = f"the request could not be parsed as HTTP: {message or 'malformed request'}"
        else:
            detail = f"the server could not handle this request ({HTTPStatus(status).phrase})"
        response = problem_response(status, detail, kind="malformed-request")
        response.force_close()
        return response


class ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class RelayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections answer parser errors with problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = ProblemServer  # same state; only the handler factory differs
        return server


def make_runner(app: web.Application, settings: Settings) -> RelayRunner:
    """The runner ``python -m server`` serves with (and the tests' live servers)."""
    return RelayRunner(
        app,
        # A caller who hangs up must be forgotten at once, not at its timeout.
        handler_cancellation=True,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        handle_signals=False,
    )


async def serve(app: web.Application, settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""
    runner = make_runner(app, settings)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=settings.listen_backlog)
        try:
            await site.start()
        except OSError as error:
            raise ListenError(
                f"cannot listen on {settings.host}:{settings.port} (HOST, PORT): "
                f"{error.strerror or error}"
            ) from None
        logger.info("listening on %s:%d", settings.host, settings.port)
        await stop.wait()
    finally:
        # The handlers stay until shutdown ends: a second signal (Ctrl-C in a terminal
        # reaches run.sh and the server alike) must not cut the graceful shutdown short.
        try:
            await runner.cleanup()
        finally:
            for signum in SHUTDOWN_SIGNALS:
                loop.remove_signal_handler(signum)
                # Shut down already: a late signal must not turn exit status 0 into a kill.
                signal.signal(signum, signal.SIG_IGN)
