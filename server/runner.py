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
import socket
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .listener import open_listeners, wait_drained
from .problems import problem_response
from .settings import Settings

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long a stopping server keeps accepting the connections already queued on its socket.
DRAIN_TIMEOUT_SECONDS = 1.0
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


async def serve(app: web.Application, settings: Settings, *, reuse_port: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully.

    ``reuse_port``: bind with SO_REUSEPORT, so that several processes share PORT (each
    with its own accept queue, drained before its socket closes: see ``server.listener``).
    """
    runner = make_runner(app, settings)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    listeners: list[socket.socket] = []
    try:
        try:
            listeners = open_listeners(
                settings.host, settings.port, settings.listen_backlog, reuse_port=reuse_port
            )
        except OSError as error:
            raise ListenError(
                f"cannot listen on {settings.host}:{settings.port} (HOST, PORT): "
                f"{error.strerror or error}"
            ) from None
        for sock in listeners:
            await web.SockSite(runner, sock, backlog=settings.listen_backlog).start()
        logger.info("listening on %s:%d", settings.host, settings.port)
        await stop.wait()
        left = await wait_drained(listeners, DRAIN_TIMEOUT_SECONDS)
        if left:
            logger.warning("closing the listening socket with %d connections still queued", left)
    finally:
        # The handlers stay until shutdown ends: a second signal (Ctrl-C in a terminal
        # reaches run.sh and the server alike) must not cut the graceful shutdown short.
        # cleanup() closes the listening socket before it first awaits anything.
        try:
            await runner.cleanup()
        finally:
            for sock in listeners:
                sock.close()  # closed already, unless its site never started
            for signum in SHUTDOWN_SIGNALS:
                loop.remove_signal_handler(signum)
                # Shut down already: a late signal must not turn exit status 0 into a kill.
                signal.signal(signum, signal.SIG_IGN)
