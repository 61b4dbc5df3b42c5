"""Serving the app: aiohttp's ``AppRunner`` and ``SockSite``, guarded against abusive clients.

``server/serve/httpguard.py`` holds the one extension of aiohttp (parser errors
answered without echoing the request, the header deadline);
``server/serve/listener.py`` the listening sockets: they pause accepting when file
descriptors run out, may share the port with other workers (SO_REUSEPORT), and
are drained before they close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from common.collector import settle_collector

from ..settings import Settings
from ..state import get_metrics
from .httpguard import ConnectionGuard, GuardedAppRunner
from .listener import AcceptPauseLog, open_listeners, wait_drained

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long a stopping server keeps accepting the connections already queued on its socket.
DRAIN_TIMEOUT_SECONDS = 1.0
logger = logging.getLogger("camrelay")


class ListenError(Exception):
    """The server could not bind its address; the message is one line."""


def make_runner(app: web.Application, settings: Settings) -> GuardedAppRunner:
    """The runner ``python -m server`` serves with (and the tests' live servers)."""
    metrics = get_metrics(app)
    return GuardedAppRunner(
        app,
        guard=ConnectionGuard(
            header_timeout_seconds=settings.header_timeout_seconds,
            on_header_timeout=metrics.header_timeouts.inc,
            on_rejected=metrics.requests_rejected.inc,
        ),
        # A caller who hangs up must be forgotten at once, not at its timeout.
        handler_cancellation=True,
        # Between requests only: aiohttp never applies it while a handler runs.
        keepalive_timeout=settings.keepalive_timeout_seconds,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        handle_signals=False,
        # Access lines show at DEBUG only (``configure_logging``); below that, no
        # connection carries an access logger (some 110 bytes each).
        access_log=(
            logging.getLogger("aiohttp.access")
            if settings.log_level_number <= logging.DEBUG
            else None
        ),
    )


async def serve(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool = False,
    startup_log_level: int = logging.INFO,
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully.

    ``reuse_port``: bind with SO_REUSEPORT, so that several processes share PORT (each
    with its own accept queue, drained before its socket closes: see ``server.serve.listener``).
    """
    runner = make_runner(app, settings)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous_exception_handler = loop.get_exception_handler()
    loop.set_exception_handler(AcceptPauseLog(get_metrics(app).accept_pauses.inc))
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
        logger.log(startup_log_level, "listening on %s:%d", settings.host, settings.port)
        settle_collector()
        await stop.wait()
        left = await wait_drained(listeners, DRAIN_TIMEOUT_SECONDS)
        if left:
            logger.warning("closing the listening socket with %d connections still queued", left)
    finally:
        # The handlers stay until shutdown ends: a second signal (Ctrl-C in a terminal
        # reaches run.sh and the server alike) must not cut the graceful shutdown short.
        try:
            await runner.cleanup()
        finally:
            loop.set_exception_handler(previous_exception_handler)
            for sock in listeners:
                sock.close()  # closed already, unless its site never started
            for signum in SHUTDOWN_SIGNALS:
                loop.remove_signal_handler(signum)
                # Shut down already: a late signal must not turn exit status 0 into a kill.
                signal.signal(signum, signal.SIG_IGN)
