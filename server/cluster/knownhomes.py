"""The homes this node found lately for cameras asked about here.

A cross-node ``/logs`` reads its camera's entry from the store before it sends the
caller's work to the camera's home. For a camera asked about again within
``KNOWN_HOME_SECONDS``, whose entry then said it was online at a live home, the node
sends the work to that home without the read. A home learnt this way may be out of
date; that costs a hop, never a wrong answer: the home checks the camera's state
itself (``CameraOffline`` when it went offline), and a node that is no longer the
camera's home passes the work on to the current one (``HostedCallers.pass_on``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Final

#: how long a home read from the store is used without reading it again
KNOWN_HOME_SECONDS: Final = 2.0
#: cameras remembered at most (the oldest go first)
KNOWN_HOMES_KEPT: Final = 10_000


class KnownHomes:
    """Camera id to the incarnation found to be its home, for ``max_age`` seconds."""

    def __init__(
        self,
        clock: Callable[[], float],
        max_age: float | None = None,
        capacity: int = KNOWN_HOMES_KEPT,
    ) -> None:
        self._clock = clock
        self._max_age = KNOWN_HOME_SECONDS if max_age is None else max_age
        self._capacity = capacity
        #: oldest first: each entry is moved to the end when it is learnt again
        self._homes: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._homes)

    def learn(self, camera_id: str, home: str) -> None:
        """``home`` holds ``camera_id``, and the camera is online there."""
        homes = self._homes
        homes[camera_id] = (home, self._clock())
        homes.move_to_end(camera_id)
        while len(homes) > self._capacity:
            homes.popitem(last=False)

    def home_of(self, camera_id: str) -> str | None:
        known = self._homes.get(camera_id)
        if known is None:
            return None
        home, learnt_at = known
        if self._clock() - learnt_at > self._max_age:
            del self._homes[camera_id]
            return None
        return home

    def forget(self, camera_id: str) -> None:
        self._homes.pop(camera_id, None)
