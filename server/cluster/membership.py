"""Which incarnations are alive, how fresh this node's own membership is, and the
store's epoch.

A node beats four times per ``NODE_TIMEOUT_SECONDS``; another node counts it
alive while its last beat is less than half the timeout old, so a node that
stops beating is seen dead within three quarters of the timeout. This node's
*lease* (its belief that the others still count it alive) lasts half the
timeout from the start of its last beat that succeeded. A node whose lease
lapsed beats before it serves again; one that went a whole node timeout
without a successful beat (it was paused, or cut off from the store) has
been taken for dead and may have lost its cameras to other nodes, so it
checks them first (``ClusterNode``). A shorter lapse is caught by the next
status write of a camera that moved (``Fleet.flush``).
The epoch changes when the store lost its data; a node that sees a new one
stops trusting what it remembers of the store (claim order, its cameras'
entries).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .backend import BackendError, Members
from .health import StoreHealth

logger = logging.getLogger("camrelay.cluster")

#: nodes no longer alive whose last beat a node keeps in mind (the latest used)
DEPARTED_KEPT = 1024


@dataclass(frozen=True, slots=True)
class BeatOutcome:
    #: the beat reached the store
    up: bool
    #: the store's epoch differs from the one seen before (not on the first beat)
    new_epoch: bool = False
    #: the previous successful beat began more than a node timeout before this one: the
    #: others have taken this node for dead meanwhile (it was paused, or cut off)
    lapsed: bool = False
    #: the nodes alive at the beat before and not at this one
    departed: tuple[str, ...] = ()


class Membership:
    def __init__(
        self,
        members: Members,
        incarnation: str,
        timeout: float,
        health: StoreHealth,
        note: Callable[[], bytes] = bytes,
    ) -> None:
        self._members = members
        #: what this node says of itself with each beat (``notes_of_others`` reads them)
        self._note = note
        self.incarnation = incarnation
        self.timeout = timeout
        self.interval = timeout / 4
        self._health = health
        #: incarnations seen alive at the last beat (this one always counts)
        self._alive: dict[str, None] = {incarnation: None}
        self._epoch: str | None = None
        #: loop time until which the others count this node alive
        self._lease_until = float("-inf")
        #: loop time at which the last successful beat began
        self._last_beat_started = float("-inf")
        #: nodes found not alive: the wall-clock time of each one's last beat (or None: it
        #: left, or its beat is forgotten), the latest ``DEPARTED_KEPT`` of them
        self._departed: OrderedDict[str, float | None] = OrderedDict()
        #: the store asked for a departed node's last beat: one question per node at a time
        self._asking: dict[str, asyncio.Future[float | None]] = {}

    @property
    def alive(self) -> list[str]:
        return list(self._alive)

    def is_alive(self, node: str) -> bool:
        return node == self.incarnation or node in self._alive

    async def notes_of_others(self) -> list[bytes]:
        """What the other live nodes said of themselves with their last beat (raises
        ``BackendError``)."""
        others = [node for node in self._alive if node != self.incarnation]
        return [note for note in await self._members.notes(others) if note is not None]

    def seen_alive_at(self, node: str, now: float) -> float | None:
        """A wall-clock time (``now`` being the wall clock now) at which ``node`` was
        alive for sure (``None``: not alive): it beat within half a timeout of this
        node's last successful beat."""
        if node == self.incarnation:
            return now
        if node not in self._alive:
            return None
        since_beat = asyncio.get_running_loop().time() - self._last_beat_started
        if since_beat > self.timeout:
            return None  # not heard of it for a node timeout: it counts as alive no longer
        return now - since_beat - self.timeout / 2

    async def last_alive_at(self, node: str, now: float) -> float | None:
        """``seen_alive_at``, or for a node not alive the wall-clock time of its last beat
        (asked of the store once; ``None``: not known, or it left). The cameras whose polls
        it held were seen until then."""
        seen = self.seen_alive_at(node, now)
        if seen is not None or not node:
            return seen
        return await self._last_beat_of(node)

    async def last_beat_now(self, node: str) -> float | None:
        """A departed node's last beat as the store has it now (``None``: not known, or it
        left), kept for ``last_alive_at``."""
        self._departed.pop(node, None)
        return await self._last_beat_of(node)

    async def _last_beat_of(self, node: str) -> float | None:
        """A departed node's last beat, asked of the store once (``None``: it left, or
        its beat is forgotten)."""
        if node in self._departed:
            self._departed.move_to_end(node)
            return self._departed[node]
        asking = self._asking.get(node)
        if asking is not None:
            return await asyncio.shield(asking)
        asking = asyncio.get_running_loop().create_future()
        self._asking[node] = asking
        last_beat: float | None = None
        try:
            last_beat = await self._members.last_beat(node)
        except BackendError as error:
            self._health.failed(error)
        else:
            self._departed[node] = last_beat
            while len(self._departed) > DEPARTED_KEPT:
                self._departed.popitem(last=False)
        finally:
            del self._asking[node]
            asking.set_result(last_beat)  # those who asked meanwhile (None if cut short)
        return last_beat

    def lease_valid(self) -> bool:
        return asyncio.get_running_loop().time() < self._lease_until

    async def confirm_alive(self, node: str) -> bool:
        """``is_alive``, asking the store about a node not alive at the last beat (it may
        have joined since)."""
        if not node:
            return False
        if self.is_alive(node):
            return True
        try:
            alive = await self._members.is_alive(node)
        except BackendError as error:
            self._health.failed(error)
            return False
        if alive:
            self._alive[node] = None
        return alive

    async def beat(self) -> BeatOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            beat = await self._members.beat(self.incarnation, self._note())
        except BackendError as error:
            self._health.failed(error)
            return BeatOutcome(up=False)
        self._health.succeeded()
        lapsed = started - self._last_beat_started > self.timeout
        self._last_beat_started = started
        self._lease_until = started + self.timeout / 2
        alive = dict.fromkeys(sorted(beat.alive))
        alive[self.incarnation] = None
        departed = tuple(node for node in self._alive if node not in alive)
        for node in alive:
            self._departed.pop(node, None)  # alive again (a pause), or a name reused
        self._alive = alive
        for node in departed:
            if await self._last_beat_of(node) is None:
                # It left (a graceful stop), or the store lost its data: not a fault
                logger.info("node %s left the cluster", node)
            else:
                logger.warning("node %s stopped beating: taking over its cameras' callers", node)
        new_epoch = self._epoch is not None and beat.epoch != self._epoch
        if new_epoch:
            logger.warning(
                "the cluster's store lost its data: registering this node's cameras again"
            )
        self._epoch = beat.epoch
        return BeatOutcome(up=True, new_epoch=new_epoch, lapsed=lapsed, departed=departed)

    async def leave(self) -> None:
        try:
            await self._members.leave(self.incarnation)
        except BackendError as error:
            self._health.failed(error)
