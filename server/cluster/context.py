"""What a node's roles share: the local relay, the store, the courier, and the node's
own housekeeping (tasks, cameras whose status changed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..relay import Relay
from .backend import STATUS_REFRESH_SECONDS, BackendError, CameraEntry, Directory
from .batch import TurnBatch
from .courier import Courier
from .health import StoreHealth
from .membership import Membership
from .observer import ClusterObserver
from .unavailable import ClusterUnavailable
from .written import WrittenStatus

#: ``ClusterConfig.outcome_write_wait_seconds``
OUTCOME_WRITE_WAIT_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    #: namespaces the store's keys (``REDIS_PREFIX``)
    prefix: str
    #: ``NODE_NAME``: stable across restarts; each run is a new incarnation of it
    node: str
    node_timeout_seconds: float
    shutdown_timeout_seconds: float
    #: an idle camera's status is written at least this often (``StoreLimits``' own)
    status_refresh_seconds: float = STATUS_REFRESH_SECONDS
    #: the longest a camera's upload waits to be answered for the results it brought to
    #: be written to the store for the callers' nodes (a write takes about a millisecond;
    #: a store slower than this gains nothing from the wait, and the camera's next poll,
    #: which queued callers wait for, would come that much later)
    outcome_write_wait_seconds: float = OUTCOME_WRITE_WAIT_SECONDS


class NodeContext:
    def __init__(
        self,
        *,
        relay: Relay,
        directory: Directory,
        cluster: ClusterConfig,
        incarnation: str,
        health: StoreHealth,
        membership: Membership,
        courier: Courier,
        events: ClusterObserver,
        wall_clock: Callable[[], float],
    ) -> None:
        self.relay = relay
        self.config = relay.config
        self.directory = directory
        self.cluster = cluster
        self.incarnation = incarnation
        self.health = health
        self.membership = membership
        self.courier = courier
        self.events = events
        self.wall_clock = wall_clock
        self.closing = False
        #: cameras homed here whose status may have changed since the last write to the
        #: store, with the loop time from which to write it
        self.dirty: dict[str, float] = {}
        self.written = WrittenStatus(cluster.status_refresh_seconds)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._entries: TurnBatch[str, CameraEntry | None] = TurnBatch(
            self._read_entries, self.spawn
        )

    async def _read_entries(self, camera_ids: list[str]) -> list[CameraEntry | None]:
        return await self.directory.read(camera_ids)

    def mark_dirty(self, camera_id: str, delay: float = 0.0) -> None:
        """Write the camera's status in the next batch (``delay``: not before that long)."""
        due = asyncio.get_running_loop().time() + delay
        self.dirty[camera_id] = min(due, self.dirty.get(camera_id, due))

    def forget_status(self, camera_id: str) -> None:
        """The camera is no longer homed here: nothing of it is written."""
        self.dirty.pop(camera_id, None)
        self.written.forget(camera_id)

    async def entry(self, camera_id: str) -> CameraEntry | None:
        """The camera's entry in the store (read with those asked for in this loop turn);
        raises ``ClusterUnavailable``."""
        try:
            entry = await self._entries.get(camera_id)
        except BackendError as error:
            self.health.failed(error)
            raise ClusterUnavailable(
                f"camera {camera_id!r} is not connected to this server and the cluster's "
                "Redis is unreachable; retry in a few seconds"
            ) from None
        self.health.succeeded()
        return entry

    def spawn(self, step: Coroutine[Any, Any, None]) -> None:
        """A short task of this node's, cancelled and awaited with the others at its end."""
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def tasks_running(self) -> int:
        return len(self._tasks)

    async def cancel_tasks(self) -> None:
        """Cancel and await every task; one spawned meanwhile is cancelled too."""
        while self._tasks:
            tasks = list(self._tasks)
            self._tasks.difference_update(tasks)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
