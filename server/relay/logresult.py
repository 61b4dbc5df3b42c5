"""A camera's result kept as the camera's own bytes, indexed entry by entry.

Callers coalesced on one command share one ``LogResult``; each takes its own
``LogSelection`` (the entries inside its range) and streams it as the entries'
own bytes, so every entry reaches the user byte for byte as the camera sent it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import mmap
from array import array
from collections.abc import Callable, Iterator
from typing import TypeAlias

from .timerange import TimeRange

#: what one write of an answer carries at most
CHUNK_BYTES = 64 * 1024
#: distinct answers (head and range) of a result kept rendered, each at most CHUNK_BYTES
RENDERED_KEPT = 16
#: a piece size no answer rendered whole reaches
_NO_CUT = 2**63

Run = tuple[int, int]
Body: TypeAlias = bytes | bytearray | mmap.mmap
#: where each of a body's ``count`` entries starts and ends, found when first needed
Indexer: TypeAlias = Callable[[Body, int], tuple["array[int]", "array[int]"]]


class LogResult:
    """The body a camera posted, the offsets of each log entry in it, and their timestamps.

    ``timestamps`` holds each entry's timestamp as a double; ``exact`` keeps the
    integer ones a double cannot represent (beyond 2**53), so that a range
    compares exactly as Python compares the value the camera sent.
    ``holds`` counts who still needs the bytes (the upload, each caller);
    ``on_release`` runs once when the last lets go.

    Without ``starts`` and ``ends``, the entries' offsets are found by ``indexer``
    when a selection first needs them; ``whole`` (the first entry's start, the last
    one's end) is all that the whole log needs, which is what most callers ask.
    """

    __slots__ = (
        "_body",
        "_ends",
        "_exact",
        "_holds",
        "_indexer",
        "_on_release",
        "_rendered",
        "_starts",
        "_timestamps",
        "_whole",
        "flat",
        "ordered",
    )

    def __init__(
        self,
        body: Body,
        starts: array[int] | None,
        ends: array[int] | None,
        timestamps: array[float],
        exact: dict[int, int],
        *,
        ordered: bool,
        on_release: Callable[[], None] | None = None,
        whole: Run | None = None,
        indexer: Indexer | None = None,
        flat: bool = False,
    ) -> None:
        if (starts is None or ends is None) and (indexer is None or (timestamps and not whole)):
            raise ValueError("a result without offsets needs an indexer and its whole span")
        self._body = body
        self._starts = starts
        self._ends = ends
        self._whole = whole
        self._indexer = indexer
        self._timestamps = timestamps
        self._exact = exact
        #: timestamps are non-decreasing in the camera's order: ranges slice by bisection
        self.ordered = ordered
        #: known to hold no brace but each entry's own pair (``False``: not known)
        self.flat = flat
        #: small answers rendered whole, by head, tail and runs (see ``_render_small``)
        self._rendered: dict[tuple[object, ...], bytes] = {}
        self._holds = 1
        self._on_release = on_release

    def __len__(self) -> int:
        return len(self._timestamps)

    def entry_bytes(self, index: int) -> bytes:
        starts, ends = self._offsets()
        return bytes(self._body[starts[index] : ends[index]])

    def _offsets(self) -> tuple[array[int], array[int]]:
        if self._starts is None or self._ends is None:
            if self._holds <= 0:
                raise RuntimeError("the result was already released")
            assert self._indexer is not None
            self._starts, self._ends = self._indexer(self._body, len(self._timestamps))
        return self._starts, self._ends

    def _span(self, first: int, last: int) -> Run:
        """Where the run of entries ``first`` to ``last - 1`` starts and ends in the body."""
        if self._starts is None and self._whole is not None and (first, last) == (0, len(self)):
            return self._whole
        starts, ends = self._offsets()
        return starts[first], ends[last - 1]

    def doubles(self) -> array[float] | None:
        """Each entry's timestamp as a double, when a double holds every one exactly (no
        integer beyond 2**53); else ``None``."""
        return None if self._exact else self._timestamps

    def timestamp(self, index: int) -> int | float:
        exact = self._exact.get(index)
        return self._timestamps[index] if exact is None else exact

    # ------------------------------------------------------------------ holds

    def hold(self) -> None:
        if self._holds <= 0:
            raise RuntimeError("the result was already released")
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if self._holds == 0:
            self._body = b""
            self._rendered.clear()
            on_release, self._on_release = self._on_release, None
            if on_release is not None:
                on_release()

    @property
    def released(self) -> bool:
        return self._holds <= 0

    # ------------------------------------------------------------------ slicing

    def select(self, time_range: TimeRange) -> LogSelection:
        """The entries inside ``time_range`` (a new hold, released by the selection)."""
        self.hold()
        return LogSelection(self, self._runs_inside(time_range))

    def _runs_inside(self, time_range: TimeRange) -> list[Run]:
        count = len(self._timestamps)
        low = -math.inf if time_range.start is None else time_range.start
        high = math.inf if time_range.end is None else time_range.end
        if low == -math.inf and high == math.inf:
            return [(0, count)] if count else []
        if self.ordered:
            first, last = self._bisect(low, high)
            return [(first, last)] if first < last else []
        return self._scan(low, high)

    def _bisect(self, low: float, high: float) -> Run:
        """The run inside ``[low, high]``; a bound may be an integer a double does not
        hold (as ``/logs`` reads one), compared exactly."""
        # The doubles are the exact values rounded, so bisecting by the bounds rounded
        # the same way leaves out only entries outside the range; of those left in, the
        # ones whose double equals a rounded bound may still lie outside: settle them by
        # their exact values (they are in order: ``ordered`` compares exact values).
        first = bisect.bisect_left(self._timestamps, float(low))
        last = bisect.bisect_right(self._timestamps, float(high), lo=first)
        while first < last and self.timestamp(first) < low:
            first += 1
        while last > first and self.timestamp(last - 1) > high:
            last -= 1
        return first, last

    def _scan(self, low: float, high: float) -> list[Run]:
        runs: list[Run] = []
        run_start = -1
        exact = self._exact
        for index, rounded in enumerate(self._timestamps):
            value = exact.get(index, rounded)
            if low <= value <= high:
                if run_start < 0:
                    run_start = index
            elif run_start >= 0:
                runs.append((run_start, index))
                run_start = -1
        if run_start >= 0:
            runs.append((run_start, len(self._timestamps)))
        return runs

    # ------------------------------------------------------------------ bytes out

    def _joined_size(self, runs: list[Run]) -> int:
        """The length of the selected runs joined by commas.

        A run of consecutive entries is one byte range of the body, whatever
        whitespace the camera put between them (JSON allows any): it is sent as
        the camera wrote it, so only the commas between runs are added.
        """
        spans = sum(end - start for start, end in itertools.starmap(self._span, runs))
        return spans + max(len(runs) - 1, 0)

    def _chunks(
        self, runs: list[Run], head: bytes, tail: bytes, chunk_bytes: int
    ) -> Iterator[bytes]:
        """``head``, the selected runs' bytes joined by commas, ``tail``: in pieces of
        about ``chunk_bytes`` (a small answer is one piece)."""
        body = memoryview(self._body)
        pieces: list[bytes | memoryview] = [head]
        size = len(head)
        separator = b""
        for first, last in runs:
            start, end = self._span(first, last)
            pieces.append(separator)
            separator = b","
            while size + end - start >= chunk_bytes:
                cut = start + max(chunk_bytes - size, 0)
                pieces.append(body[start:cut])
                yield b"".join(pieces)
                pieces, size, start = [], 0, cut
            pieces.append(body[start:end])
            size += end - start + 1
        pieces.append(tail)
        yield b"".join(pieces)

    def _render_small(self, runs: list[Run], head: bytes, tail: bytes) -> bytes | None:
        """The whole answer in one piece if it is at most ``CHUNK_BYTES``, rendered once
        for every caller that asks the same (callers of one command mostly ask the same
        range); None for a bigger one."""
        key = (head, tail, *runs)
        rendered = self._rendered.get(key)
        if rendered is not None:
            return rendered
        if len(head) + self._joined_size(runs) + len(tail) > CHUNK_BYTES:
            return None
        rendered = b"".join(self._chunks(runs, head, tail, _NO_CUT))
        if len(self._rendered) < RENDERED_KEPT:
            self._rendered[key] = rendered
        return rendered


class LogSelection:
    """One caller's entries of a shared result, rendered as JSON inside a head and a tail."""

    __slots__ = ("_released", "_runs", "count", "result")

    def __init__(self, result: LogResult, runs: list[Run]) -> None:
        self.result = result
        self._runs = runs
        if len(runs) == 1:  # the usual selection: one run (the whole log, or a range of it)
            ((first, last),) = runs
            self.count = last - first
        else:
            self.count = sum(last - first for first, last in runs)
        self._released = False

    def indices(self) -> Iterator[int]:
        for first, last in self._runs:
            yield from range(first, last)

    def size(self, head: bytes, tail: bytes) -> int:
        """The length of ``head + entries joined by commas + tail``."""
        if self._released:
            raise RuntimeError("the selection was already released")
        return len(head) + self.result._joined_size(self._runs) + len(tail)

    def render_small(self, head: bytes, tail: bytes) -> bytes | None:
        """``head``, the entries' own bytes joined by commas, ``tail``, whole, if that is
        at most ``CHUNK_BYTES`` (else None: stream it in ``chunks``). Rendered once for
        the callers of one result that ask the same range; the others look it up."""
        if self._released:
            raise RuntimeError("the selection was already released")
        return self.result._render_small(self._runs, head, tail)

    def chunks(self, head: bytes, tail: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """``head``, the entries' own bytes joined by commas, ``tail``: in bounded pieces."""
        if self._released:
            raise RuntimeError("the selection was already released")
        return self.result._chunks(self._runs, head, tail, chunk_bytes)

    def release(self) -> None:
        """Let go of the shared result (once; later calls do nothing)."""
        if not self._released:
            self._released = True
            self.result.release()
