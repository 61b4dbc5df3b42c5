"""The listening socket: opened here (optionally with SO_REUSEPORT) and drained before closing.

A listening socket's accept queue holds connections whose handshake the kernel has
completed but that the process has not accepted yet. Closing the socket resets every
one of them. With SO_REUSEPORT each worker has its own socket and queue, so a worker
that stops while the others keep serving would reset the clients the kernel had
already routed to it. ``wait_drained`` avoids that: the stopping process keeps accepting
(and answering) until its queue stays empty, then closes the socket in the same step of
the event loop, leaving only the instant between the last look and the close.
On Linux >= 5.14, ``sysctl net.ipv4.tcp_migrate_req=1`` closes that gap too: the kernel
moves a closing listener's queued connections to another socket of its group.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from typing import Final

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
            sock = socket.socket(family, kind, proto)
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
        for sock in listeners:
            sock.close()
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
