"""The listening sockets: SO_REUSEPORT sharing, and the accept-queue length the drain reads."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import pytest

from server.serve.listener import accept_queue_length, open_listeners, wait_drained
from tests.helpers import wait_until


@contextlib.contextmanager
def listening(port: int = 0, *, reuse_port: bool) -> Iterator[socket.socket]:
    (sock,) = open_listeners("127.0.0.1", port, 16, reuse_port=reuse_port)
    try:
        yield sock
    finally:
        sock.close()


def test_reuse_port_lets_a_second_process_bind_the_port_and_only_then() -> None:
    with listening(reuse_port=True) as first:
        port = first.getsockname()[1]
        with listening(port, reuse_port=True) as second:
            assert second.getsockname() == ("127.0.0.1", port)
        with pytest.raises(OSError, match="in use") as refused:
            open_listeners("127.0.0.1", port, 16, reuse_port=False)
        assert refused.value.errno == errno.EADDRINUSE


async def test_the_accept_queue_length_counts_connections_not_yet_accepted() -> None:
    with listening(reuse_port=False) as listener:
        port = listener.getsockname()[1]
        assert accept_queue_length(listener) == 0
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            # The kernel queues each connection once the client's ACK is processed.
            await wait_until(lambda: accept_queue_length(listener) == 3)
            listener.setblocking(True)
            accepted, _ = listener.accept()
            accepted.close()
            assert accept_queue_length(listener) == 2
        finally:
            for client in clients:
                client.close()


async def test_wait_drained_gives_up_at_its_limit_with_what_is_still_queued() -> None:
    with listening(reuse_port=False) as listener:
        port = listener.getsockname()[1]
        # Nothing accepts here: the queue stays at 2 until the limit.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            await wait_until(lambda: accept_queue_length(listener) == 2)
            assert await wait_drained([listener], 0.05) == 2
        finally:
            for client in clients:
                client.close()
        with listening(reuse_port=False) as idle:
            assert await wait_drained([idle], 5.0) == 0
