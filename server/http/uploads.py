"""The bodies of the ``/send_logs`` uploads being read, so that a graceful stop can end
the reads that cannot finish.

Once a graceful stop begins, aiohttp reads nothing more from any connection (its
``pre_shutdown`` closes them for reading). A body not all received by then never
will be, and its handler would wait until the stop's timeout cancelled it, the
camera getting no answer at all. ``stop_unfinished`` ends each such read with an
error instead, which the upload's handler answers at once.
"""

from __future__ import annotations

from aiohttp import StreamReader


class BodiesBeingRead:
    def __init__(self) -> None:
        self._bodies: set[StreamReader] = set()

    def __len__(self) -> int:
        return len(self._bodies)

    def add(self, body: StreamReader) -> None:
        self._bodies.add(body)

    def discard(self, body: StreamReader) -> None:
        self._bodies.discard(body)

    def stop_unfinished(self, error: Exception) -> None:
        """Every body still being received raises ``error`` at its next read (what was
        received whole is read as usual)."""
        for body in self._bodies:
            if not body.is_eof():
                body.set_exception(error)
