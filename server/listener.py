"""The listening socket: out of file descriptors, accepting pauses, then resumes.

asyncio's accept loop handles EMFILE (and ENFILE, ENOBUFS, ENOMEM) by removing
the listening socket from the selector and retrying after a second, but it
does not stop the batch it is in: it calls ``accept()`` up to ``backlog`` times
per readiness event (4096 here, the listen backlog), and every failure reports
the error (a traceback by default) and schedules one more retry. Those retries
land in different loop turns, each re-arming the socket for another batch:
thousands of tracebacks a second and a loop too busy to answer anyone.

``PausingListenSocket.accept`` ends the batch at the first failure: it raises
that error once (so asyncio pauses accepting and retries a second later) and
then reports an empty queue for the rest of the loop turn. ``AcceptPauseLog``,
the loop's exception handler while serving, turns each pause into a metric and
at most one log line a second, without traceback; other errors go to the
default handler. Both use public APIs only (a ``socket.socket`` subclass handed
to ``loop.create_server`` through ``web.SockSite``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from .throttledlog import ThrottledLog

#: errors after which asyncio pauses accepting (selector_events._accept_connection)
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

logger = logging.getLogger("camrelay.http")


class PausingListenSocket(socket.socket):
    """A listening socket whose ``accept`` fails at most once per loop turn."""

    _batch_over = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._batch_over:
            raise BlockingIOError(errno.EAGAIN, "accepting is paused")
        try:
            return super().accept()
        except OSError as error:
            if error.errno in OUT_OF_RESOURCES:
                self._batch_over = True
                asyncio.get_running_loop().call_soon(self._end_batch)
            raise

    def _end_batch(self) -> None:
        self._batch_over = False


def open_listen_socket(host: str, port: int, backlog: int) -> PausingListenSocket:
    """Bind and listen on ``host``:``port`` (the first address it resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    plain = socket.create_server(address, family=family, backlog=backlog)
    return PausingListenSocket(family, kind, proto, fileno=plain.detach())


class AcceptPauseLog:
    """An event loop exception handler: accept pauses become one line a second and a count."""

    def __init__(self, on_pause: Callable[[], None] = lambda: None) -> None:
        self._on_pause = on_pause
        self._log = ThrottledLog(logger)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if "socket" in context and isinstance(error, OSError) and error.errno in OUT_OF_RESOURCES:
            self._on_pause()
            self._log.log(
                "accepting paused for a second: %s (the open-file limit, see Operations)",
                error.strerror or error,
            )
            return
        loop.default_exception_handler(context)
