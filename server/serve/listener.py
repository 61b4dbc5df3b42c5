"""The listening sockets: opened here, paused when file descriptors run out, drained before closing.

**Out of file descriptors.** asyncio's accept loop handles EMFILE (and ENFILE,
ENOBUFS, ENOMEM) by removing the listening socket from the selector and
retrying after a second, but it does not stop the batch it is in: it calls
``accept()`` up to ``backlog`` times per readiness event (4096 here, the listen
backlog), and every failure reports the error (a traceback by default) and
schedules one more retry. Those retries land in different loop turns, each
re-arming the socket for another batch: thousands of tracebacks a second and a
loop too busy to answer anyone. ``PausingListenSocket.accept`` ends the batch
at the first failure: it raises that error once (so asyncio pauses accepting
and retries a second later) and then reports an empty queue for the rest of the
loop turn. ``AcceptPauseLog``, the loop's exception handler while serving,
turns each pause into a metric and at most one log line a second, without
traceback; other errors go to the default handler. Both use public APIs only (a
``socket.socket`` subclass handed to ``loop.create_server`` through
``web.SockSite``).

**Draining.** A listening socket's accept queue holds connections whose
handshake the kernel has completed but that the process has not accepted yet.
Closing the socket resets every one of them. With SO_REUSEPORT each worker has
its own socket and queue, so a worker that stops while the others keep serving
would reset the clients the kernel had already routed to it. ``wait_drained``
avoids that: the stopping process keeps accepting (and answering) until its
queue stays empty, then closes the socket in the same step of the event loop,
leaving only the instant between the last look and the close. On Linux >= 5.14,
``sysctl net.ipv4.tcp_migrate_req=1`` closes that gap too: the kernel moves a
closing listener's queued connections to another socket of its group.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from ..observe.throttledlog import ThrottledLog

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


#: struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked...
#: On a listening socket the kernel reports its accept queue's length as tcpi_unacked.
_TCP_INFO_UNACKED_OFFSET: Final = 24
_TCP_INFO_SIZE: Final = 104
DRAIN_POLL_SECONDS: Final = 0.005
SETTLE_SECONDS: Final = 0.02


def open_listeners(host: str, port: int, backlog: int, *, reuse_port: bool) -> list[socket.socket]:
    """Bound, listening TCP sockets, one per address ``host`` resolves to (as asyncio binds);
    ``reuse_port`` lets other processes bind the same port.

    Raises OSError when the address cannot be resolved or bound.
    """
    listeners: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = PausingListenSocket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for opened in listeners:
            opened.close()
        raise
    return listeners


def accept_queue_length(sock: socket.socket) -> int:
    """Connections waiting in ``sock``'s accept queue (Linux; 0 where it cannot be read)."""
    if not sys.platform.startswith("linux") or sock.fileno() < 0:
        return 0
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    (queued,) = struct.unpack_from("I", info, _TCP_INFO_UNACKED_OFFSET)
    return int(queued)


async def wait_drained(listeners: list[socket.socket], limit_seconds: float) -> int:
    """Let the event loop accept until the sockets' queues stay empty; the number left at the limit.

    Once the queues are found empty, the loop runs on for ``SETTLE_SECONDS`` so that the
    connections just accepted get their first request read and started (a server
    shutting down closes connections with no request in progress), and the queues are
    looked at again. The caller closes the sockets right after, awaiting nothing between.
    """
    deadline = time.monotonic() + limit_seconds
    settled = False
    while True:
        queued = sum(accept_queue_length(sock) for sock in listeners)
        if (settled and not queued) or time.monotonic() >= deadline:
            return queued
        settled = not queued
        await asyncio.sleep(SETTLE_SECONDS if settled else DRAIN_POLL_SECONDS)
