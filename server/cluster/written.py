"""What a home last wrote to the store of each of its cameras, so that an idle camera
costs the store nothing: a poll at its home changes nothing the others read (it is
polling, nobody waits, nothing is in flight), and only a change, or a refresh at
least every ``refresh_seconds`` (its seen time, and its entry's expiry), is written."""

from __future__ import annotations

from ..relay import CameraStatus

#: what the others read of a camera, apart from its seen time: polling, waiting,
#: in flight, whether a result is expected, whether it ever answered
Snapshot = tuple[bool, int, int, bool, bool]


def snapshot(status: CameraStatus, expect: bool, answered: bool) -> Snapshot:
    return (status.polling, status.waiting, status.in_flight, expect, answered)


class WrittenStatus:
    def __init__(self, refresh_seconds: float) -> None:
        self.refresh_seconds = refresh_seconds
        #: by camera: the snapshot written followed by when (loop time), oldest write
        #: first; one flat tuple each (held for every idle camera of the node)
        self._written: dict[str, tuple[bool, int, int, bool, bool, float]] = {}

    def __len__(self) -> int:
        return len(self._written)

    def needs_write(self, camera_id: str, written: Snapshot, now: float) -> bool:
        held = self._written.get(camera_id)
        return held is None or held[:5] != written or now - held[5] >= self.refresh_seconds

    def wrote(self, camera_id: str, written: Snapshot, now: float) -> None:
        self._written.pop(camera_id, None)
        self._written[camera_id] = (*written, now)

    def due(self, now: float) -> list[str]:
        """The cameras whose last write is a refresh interval old."""
        found = []
        for camera_id, held in self._written.items():
            if now - held[5] < self.refresh_seconds:
                break
            found.append(camera_id)
        return found

    def forget(self, camera_id: str) -> None:
        self._written.pop(camera_id, None)

    def clear(self) -> None:
        self._written.clear()
