"""``RelayService``: the one interface the HTTP layer calls.

The single-process ``Relay`` implements it, and so does a cluster node
(``server.cluster.ClusterNode``), which composes a ``Relay`` for the cameras
homed at it. Errors are the domain errors of ``server.relay.errors``.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import NoReturn

from .budget import ResultBudget
from .config import RelayConfig
from .logresult import LogResult, LogSelection
from .records import CameraStatus, Command, Receipt
from .timerange import TimeRange


@dataclass(frozen=True, slots=True)
class RelayStats:
    cameras: int
    online: int
    polls_held: int
    callers_waiting: int
    commands_in_flight: int
    result_bytes_in_flight: int = 0
    uploads_waiting_for_budget: int = 0


class Upload(abc.ABC):
    """A ``/send_logs`` body being read (from ``RelayService.receive_result``)."""

    @abc.abstractmethod
    def check_request_id(self, request_id: str) -> None:
        """Raises ``UnknownRequest`` at once if nothing could take ``request_id``."""

    @abc.abstractmethod
    def refuse_long_request_id(self) -> NoReturn:
        """The ``requestId`` streaming in is already longer than any the server issues:
        raises ``UnknownRequest`` (counted as a refused upload)."""

    @abc.abstractmethod
    async def reserve(self, size: int) -> None:
        """Hold ``size`` bytes of the result budget (body and index so far)."""

    @abc.abstractmethod
    def release_budget(self) -> None:
        """Called once nobody needs the result any more."""

    @abc.abstractmethod
    def lost(self, request_id: str | None = None) -> None:
        """The body broke off: the command it answered goes to the camera's next poll
        (``request_id``: the one the body named, if read but not yet looked up)."""

    @abc.abstractmethod
    async def submit(self, request_id: str | None, result: LogResult) -> Receipt:
        """Hand the result read whole to its callers (``UnknownRequest`` if none)."""


class RelayService(abc.ABC):
    """What ``/poll_for_command``, ``/send_logs``, ``/logs``, ``/cameras``, ``/healthz``
    and ``/metrics`` need of the relay, wherever its state lives."""

    config: RelayConfig
    budget: ResultBudget

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """A stop has begun: no new work is taken."""

    @abc.abstractmethod
    async def poll(self, camera_id: str) -> Command | None:
        """A camera's long poll: a command, or ``None`` (noop) after the hold."""

    @abc.abstractmethod
    async def fetch_logs(self, camera_id: str, time_range: TimeRange) -> LogSelection:
        """The camera's entries inside ``time_range`` (release the selection once written)."""

    @abc.abstractmethod
    def receive_result(
        self, camera_id: str, declared_bytes: int | None
    ) -> AbstractAsyncContextManager[Upload]:
        """An upload of a result; ``UnknownRequest`` before the body is read when this
        camera has nothing awaiting a result."""

    @abc.abstractmethod
    def camera_seen(self, camera_id: str) -> None:
        """A request from a camera already known (polls create cameras; this does not)."""

    @abc.abstractmethod
    async def list_cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        """Cameras sorted by id, filtered by ``prefix`` and ``online``, after ``after``,
        at most ``limit``."""

    @abc.abstractmethod
    async def fleet_stats(self) -> RelayStats:
        """Totals over every camera this service can reach."""

    @abc.abstractmethod
    def stats(self) -> RelayStats:
        """Totals over the state held in this process (for metrics)."""

    @abc.abstractmethod
    async def sweep(self) -> int:
        """Periodic housekeeping; returns how many cameras were forgotten."""

    @abc.abstractmethod
    def close(self) -> None:
        """Begin a graceful stop: held polls get noop, waiting callers are answered."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect to whatever the state is shared through (nothing, in one process)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """The end of a stop: let go of connections and background tasks."""

    def store_state(self) -> str:
        """The shared store as this process sees it: "up", "down", or "unused"."""
        return "unused"
