"""What a home writes of an idle camera: only changes, and a refresh now and then."""

from __future__ import annotations

from server.cluster.written import WrittenStatus, snapshot
from server.relay import CameraStatus

POLLING = snapshot(CameraStatus("cam", True, 1.0, True, 0, 0), expect=False, answered=False)
ENDED = snapshot(CameraStatus("cam", True, 2.0, False, 0, 0), expect=False, answered=False)


def test_only_a_change_or_a_refresh_needs_a_write() -> None:
    book = WrittenStatus(refresh_seconds=300.0)
    assert book.needs_write("cam", POLLING, now=0.0), "never written"
    book.wrote("cam", POLLING, now=0.0)
    assert not book.needs_write("cam", POLLING, now=299.0), "a poll again: nothing changed"
    seen_later = snapshot(CameraStatus("cam", True, 250.0, True, 0, 0), False, False)
    assert seen_later == POLLING, "the seen time alone is no change"
    assert book.needs_write("cam", ENDED, now=1.0)
    assert book.needs_write("cam", POLLING, now=300.0), "refreshed every 300 s"


def test_due_lists_the_writes_a_refresh_old_oldest_first() -> None:
    book = WrittenStatus(refresh_seconds=10.0)
    book.wrote("a", POLLING, now=0.0)
    book.wrote("b", POLLING, now=1.0)
    book.wrote("c", POLLING, now=5.0)
    assert book.due(now=9.0) == []
    assert book.due(now=11.0) == ["a", "b"]
    book.wrote("a", ENDED, now=11.0)  # written again: last in line
    assert book.due(now=16.0) == ["b", "c"]
    book.forget("b")
    assert book.due(now=16.0) == ["c"]
    assert len(book) == 2
    book.clear()
    assert book.due(now=100.0) == []
