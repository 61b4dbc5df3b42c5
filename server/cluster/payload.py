"""A result as bytes between nodes: the camera's entries, byte for byte, in a small body.

The home sends a result as ``{"logs":[...]}`` holding the camera's own entry
bytes; the receiving node indexes it with the same scanner that reads a
camera's upload, so its callers get the entries exactly as the camera sent them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..logscan import ResultScanner
from ..relay import LogResult, TimeRange

HEAD = b'{"logs":['
TAIL = b"]}"


def result_bytes(result: LogResult) -> bytes:
    selection = result.select(TimeRange())
    try:
        return b"".join(selection.chunks(HEAD, TAIL))
    finally:
        selection.release()


def result_from(body: bytes, on_release: Callable[[], None] | None = None) -> LogResult:
    """The result in ``body`` (one hold, for the caller to release; ``on_release`` runs
    when the last hold ends); raises ``ResultBodyError`` when it does not parse."""
    scanner = ResultScanner(expected_size=len(body))
    scanner.feed(body)
    return scanner.finish(on_release).result
