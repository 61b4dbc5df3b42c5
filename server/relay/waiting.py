"""What a camera session holds while it waits: a held poll, a caller, a command handed
out and not answered yet; and the small helpers they share."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .ids import random_hex
from .logresult import LogResult
from .records import Command
from .timerange import TimeRange

if TYPE_CHECKING:
    from .holds import Hold


class HeldPoll:
    """A camera's open ``/poll_for_command``: resolves to a command, or ``None`` for noop."""

    __slots__ = ("future", "hold")

    def __init__(self, future: asyncio.Future[Command | None]) -> None:
        self.future = future
        #: its entry in the ``HoldClock`` while its hold runs
        self.hold: Hold | None = None


class Caller:
    """A user's ``/logs`` call: resolves to the whole result of the command serving it.

    The result comes with a hold on it that the caller must release.

    ``ref`` names a caller whose owner resolves it elsewhere (see ``handover``).
    """

    __slots__ = ("command", "deadline", "future", "ref", "time_range")

    def __init__(
        self,
        time_range: TimeRange,
        future: asyncio.Future[LogResult],
        ref: str | None = None,
    ) -> None:
        self.time_range = time_range
        self.future = future
        self.ref = ref
        #: while queued: the loop time by which a poll must pick its work up
        self.deadline: float | None = None
        self.command: PendingCommand | None = None


class PendingCommand:
    """A command handed to a poll and not yet answered, with the callers it serves."""

    __slots__ = (
        "callers",
        "command",
        "deliveries",
        "last_delivery",
        "result_due",
        "taken",
        "timer",
    )

    def __init__(self, command: Command, callers: dict[Caller, None]) -> None:
        self.command = command
        self.callers = callers
        self.deliveries = 0
        #: the camera began uploading its result: it had the command, so its result stays
        #: due by ``result_due`` however often the command is delivered again
        self.taken = False
        #: the session's delivery serial of this command's latest delivery
        self.last_delivery = 0
        #: loop time by which the result must come (the response timeout from delivery)
        self.result_due = 0.0
        self.timer: asyncio.TimerHandle | None = None


def new_request_id() -> str:
    return random_hex(32)


def shown(value: str, limit: int = 80) -> str:
    """A client's value quoted and cut short, for an error detail."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
