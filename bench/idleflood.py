"""``python -m bench.idleflood HOST PORT COUNT HOLD``: COUNT idle half-requests, then a report.

Opens COUNT connections as fast as it can, writes half a request line and
headers on each (never the blank line that ends them) and then waits, at most
HOLD seconds, for the server to close each one. Prints one JSON line: how many connected,
how many the server closed, how many were still open or never connected when
HOLD ran out, and the median seconds from connecting to the server's close.
Plain non-blocking sockets and one ``selectors`` loop, so that the flood costs
its process little CPU (the server shares the machine).
"""

from __future__ import annotations

import errno
import selectors
import socket
import statistics
import sys
import time
from typing import Final

import orjson

OPEN_BETWEEN_EVENTS: Final = 500
HALF_REQUEST: Final = b"GET /poll_for_command?cameraId=idle HTTP/1.1\r\nHost: relay\r\n"


class Flood:
    """The connections of one flood process and what happened to them."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.selector = selectors.DefaultSelector()
        self.connected_at: dict[socket.socket, float] = {}
        self.closes: list[float] = []
        self.refused = 0

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if sock.connect_ex(self.address) not in (0, errno.EINPROGRESS):
            sock.close()
            self.refused += 1
            return
        self.selector.register(sock, selectors.EVENT_WRITE)

    def serve_events(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock not in self.connected_at:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    self.selector.unregister(sock)
                    sock.close()
                    self.refused += 1
                    continue
                self.connected_at[sock] = time.monotonic()
                sock.send(HALF_REQUEST)
                self.selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # the server closed it (it answers nothing else to half a request)
                self.closes.append(time.monotonic() - self.connected_at[sock])
                self.selector.unregister(sock)
                sock.close()


def flood(host: str, port: int, count: int, hold: float) -> dict[str, object]:
    started = time.monotonic()
    connections = Flood(host, port)
    for opened in range(1, count + 1):
        connections.open()
        if opened % OPEN_BETWEEN_EVENTS == 0:
            connections.serve_events(0)
    deadline = time.monotonic() + hold
    while connections.selector.get_map() and (now := time.monotonic()) < deadline:
        connections.serve_events(min(1.0, deadline - now))
    left = [key.fileobj for key in connections.selector.get_map().values()]
    still_open = sum(1 for sock in left if sock in connections.connected_at)
    for sock in left:
        sock.close()  # type: ignore[union-attr]
    closes = connections.closes
    return {
        "connected": len(connections.connected_at),
        "closed_by_server": len(closes),
        "still_open": still_open,
        "unconnected": count - len(connections.connected_at),
        "median_open_to_close_s": round(statistics.median(closes), 3) if closes else None,
        "seconds": round(time.monotonic() - started, 3),
    }


def main(argv: list[str]) -> int:
    host, port, count, hold = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    sys.stdout.write(orjson.dumps(flood(host, port, count, hold)).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
