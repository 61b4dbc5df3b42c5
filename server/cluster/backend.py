"""What crosses nodes, behind three small interfaces that one backend implements.

- ``Directory``: each camera's home (the node incarnation holding its poll),
  the claims that move it, its status for ``/cameras``, and work parked by a
  stopping node for the camera's next home.
- ``Members``: heartbeats, which incarnations are alive, and the store's
  *epoch* (a token that changes when the store loses its data).
- ``Transport``: messages, each with an optional body, into one inbox per
  node incarnation.

``server.cluster.redis`` implements them on Redis, ``server.cluster.memory``
in one process (several nodes in one event loop, for tests and the fault
simulation). A backend raises ``BackendError`` for any failure, with a
one-line message that quotes no payload.

Nodes are named by *incarnation* (``NodeName~token``): a node restarted under
the same ``NODE_NAME`` is a new incarnation with a new inbox, so nothing
addressed to the old one reaches it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from ..relay import CameraStatus


class BackendError(Exception):
    """The shared store failed or refused; ``str()`` is one line without payload."""


#: a home writes each of its cameras' status at least this often, so an entry that
#: says polling lives this much longer than an idle one (its home died: it is forgotten
#: that much later)
STATUS_REFRESH_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How long the store keeps what, and how much of it."""

    node_timeout_seconds: float
    #: cameras the directory holds at most; a claim of one more new id is refused
    max_cameras: int
    #: an entry of a camera that answered a command lives this long unseen
    answered_retention_seconds: float
    #: an entry of a camera that never answered lives this long unseen (hold + connect)
    unanswered_retention_seconds: float
    #: inboxes, bodies and parked work expire unread after this long
    message_ttl_seconds: float
    #: an entry that says polling lives this much longer than its retention (its home
    #: refreshes it at least this often)
    status_refresh_seconds: float = STATUS_REFRESH_SECONDS
    #: how long one ``Transport.receive`` waits for a message at most
    receive_wait_seconds: float = 1.0


# ---------------------------------------------------------------- directory


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim of a camera found (``Directory.claim``)."""

    #: the incarnation that was home before ("" if none)
    old_home: str
    #: work a stopping home parked for the camera's next home (b"" if none)
    parked: bytes
    #: the claim's place in the camera's claims: a later claim has a larger one, also
    #: across the store losing its data (a clock in microseconds, at least one more than
    #: the last claim it still remembers)
    seq: int
    #: a new camera past ``max_cameras``: nothing was written
    refused: bool = False


@dataclass(frozen=True, slots=True)
class CameraEntry:
    """A camera as the directory has it."""

    camera_id: str
    home: str
    seen_ms: int | None
    polling: bool
    waiting: int
    in_flight: int
    #: its home could accept or recognise a result now
    expect: bool
    #: the latest claim's ``seq``
    seq: int = 0

    def status(
        self, now: float, connect_timeout: float, home_seen: float | None, home_alive: bool
    ) -> CameraStatus:
        """The camera's status. ``home_seen``: a wall-clock time at which its home was
        last known alive (``None``: not known). A poll counts as held only while its home
        is alive (the home writes a poll's end within half a second); the camera counts
        as seen throughout a held poll, so at ``home_seen`` at least, its home alive or
        not (a poll held at a home that died was held until then)."""
        polling = self.polling and home_alive and home_seen is not None
        last_seen = None if self.seen_ms is None else self.seen_ms / 1000
        if self.polling and home_seen is not None:
            last_seen = home_seen if last_seen is None else max(last_seen, home_seen)
        since = float("inf") if last_seen is None else now - last_seen
        online = polling or since <= connect_timeout
        return CameraStatus(
            self.camera_id, online, last_seen, polling, self.waiting, self.in_flight
        )


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """A home's view of one of its cameras, for ``Directory.write_status``."""

    status: CameraStatus
    #: a result could be accepted or recognised as a repeat now
    expect: bool
    #: the camera answered a command (kept for the long retention, else the short one)
    answered: bool
    #: the home's latest claim of the camera (0: none known, e.g. after the store's epoch
    #: changed); the write fails if the directory holds a later claim by another node
    seq: int


@dataclass(frozen=True, slots=True)
class Written:
    """The outcome of one status write: who is home now, by which claim."""

    home: str
    seq: int

    def lost_to(self, node: str) -> bool:
        """Another incarnation is the camera's home now."""
        return bool(self.home) and self.home != node


class Directory(abc.ABC):
    """Homes and status of the fleet. Every id a call names is a valid camera id."""

    @abc.abstractmethod
    async def claim(self, camera_ids: Sequence[str], node: str, *, again: bool) -> list[Claim]:
        """Make ``node`` the home of each camera, in one round trip.

        Each claim gets a new ``seq``; the camera's seen time is now and it is
        marked polling. A camera the directory does not know is refused when it
        already holds ``max_cameras`` (expired ones are forgotten first).
        ``again``: ``node`` believes it is the home already; if it still is, only
        the ``seq`` and the seen time change and ``old_home`` is ``node``.
        Parked work is taken (deleted) when there was no home.
        """

    @abc.abstractmethod
    async def write_status(self, node: str, writes: Sequence[StatusWrite]) -> list[Written]:
        """Write ``node``'s cameras' status, in one round trip.

        A write lands when ``node`` is the home, or nobody is (the store lost
        the entry: ``node`` is home again, with a fresh ``seq``); otherwise it
        is dropped and the answer names the home that claimed it since.
        """

    @abc.abstractmethod
    async def park(self, camera_id: str, node: str, work: bytes) -> bool:
        """A stopping home leaves ``work`` for the next one and gives the camera up;
        False (nothing written) if ``node`` is no longer the home."""

    @abc.abstractmethod
    async def adopt(self, camera_id: str, node: str) -> Claim:
        """Make ``node`` the home of a camera that has none (its home parked its work
        as it stopped), taking the parked work; its status is left as it is (no poll
        is held). ``refused``, nothing written, when the entry is gone or names a
        home (``old_home``: that home, "" if gone)."""

    @abc.abstractmethod
    async def read(self, camera_ids: Sequence[str]) -> list[CameraEntry | None]:
        """The entries of ``camera_ids`` in one round trip (``None``: unknown or expired)."""

    @abc.abstractmethod
    async def page(self, prefix: str, after: str | None, count: int) -> list[str]:
        """Up to ``count`` known ids in order, starting with ``prefix``, after ``after``
        (ids whose entry expired may still be listed: ``read`` says ``None``)."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many cameras the directory holds (expired ones forgotten first; past a
        thousand or so, entries whose home died may be counted until a sweep finds them)."""

    @abc.abstractmethod
    async def sweep(self, share: float) -> None:
        """Forget expired entries: every expired one whose poll was not held, and
        ``share`` (0 to 1) of the rest scanned for those a home that died left (the
        nodes together call it so that the whole directory is scanned once per
        ``status_refresh_seconds``)."""

    @abc.abstractmethod
    async def end_polls(self, home: str, seen: float) -> None:
        """``home`` died: each entry that says its poll is held there says it ended at
        wall-clock time ``seen`` (its last beat; a later seen time stays), and expires
        its retention after that, as any camera whose poll ended (the whole directory
        is scanned, a bounded batch per script)."""


# ---------------------------------------------------------------- members


#: the beats (and the epoch) outlive a node's last beat by this many node timeouts, and
#: by this many seconds at least: ``Members.last_beat`` answers that long
BEATS_KEPT_TIMEOUTS = 10
BEATS_KEPT_AT_LEAST_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Beat:
    #: incarnations that beat within half the node timeout (the beating one included)
    alive: frozenset[str]
    #: the store's epoch: a new value means it lost its data since the last beat
    epoch: str


class Members(abc.ABC):
    @abc.abstractmethod
    async def beat(self, node: str, note: bytes = b"") -> Beat:
        """Note that ``node`` is alive (for a node timeout), with ``note`` (what it says
        of itself, read by ``notes``); the nodes alive; the epoch."""

    @abc.abstractmethod
    async def notes(self, nodes: Sequence[str]) -> list[bytes | None]:
        """Each node's note from its last beat, in one round trip (``None``: gone)."""

    @abc.abstractmethod
    async def is_alive(self, node: str) -> bool:
        """``node`` beat within half the node timeout (asked of the store now)."""

    @abc.abstractmethod
    async def last_beat(self, node: str) -> float | None:
        """The wall-clock time of ``node``'s last beat, kept a while after it stopped
        beating (``None``: not known, or it left)."""

    @abc.abstractmethod
    async def leave(self, node: str) -> None:
        """A graceful stop: the others see ``node`` gone at their next beat."""


# ---------------------------------------------------------------- transport


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message to send: to an incarnation's inbox, a header and an optional body."""

    to: str
    header: bytes
    body: bytes | None = None


class Body(abc.ABC):
    """A received message's body, read when the receiver has room for ``size`` bytes."""

    #: its length in bytes (0 if the sender did not say)
    size: int
    #: its bytes came inside the message: ``take_here`` gives them
    inline: bool = False

    @abc.abstractmethod
    async def read(self) -> bytes | None:
        """The bytes, once (``None`` if they expired or could not be read)."""

    def take_here(self) -> bytes | None:
        """The bytes, once, if they came inside the message: no read from the store, so
        no wait and no failure. ``None``: read them with ``read``."""
        return None


class InlineBody(Body):
    """A body that came inside its message."""

    inline = True

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data
        self.size = len(data)

    async def read(self) -> bytes | None:
        return self.take_here()

    def take_here(self) -> bytes | None:
        data, self._data = self._data, None
        return data


@dataclass(frozen=True, slots=True)
class Delivery:
    header: bytes
    body: Body | None = None


class Transport(abc.ABC):
    @abc.abstractmethod
    async def send(self, envelopes: Sequence[Envelope]) -> None:
        """Put each envelope in its inbox, in one round trip (an inbox and the bodies in
        it expire unread after a while)."""

    @abc.abstractmethod
    async def receive(self, node: str) -> list[Delivery]:
        """What reached ``node``'s inbox since the last call, oldest first; waits up to
        ``receive_wait_seconds`` (a second) for something to come (an empty list then)."""


# ---------------------------------------------------------------- the bundle


class Backend(abc.ABC):
    """One node's connection to the shared store."""

    directory: Directory
    members: Members
    transport: Transport

    @abc.abstractmethod
    async def close(self) -> None:
        """Let go of connections; calls after it fail with ``BackendError``."""
