"""Where each camera's session lives: claims, takeovers, handovers, parking.

A camera's home is the incarnation that holds (or last held) its poll. A poll
reaching another node claims the camera in the store, which numbers every
claim (``Claim.seq``, ordered also across the store losing its data); the new
home sends the old one a ``Takeover``, whose answer is a ``Handover`` of the
session's work (queued callers, unanswered commands, recently accepted ids),
imported before the poll is served so that an unanswered command is
redelivered with its request id. A poll at the camera's home costs the store
nothing: the home is still the home. A takeover older than this node's latest
claim of the camera is ignored, and so is one older than the poll this node
holds (that poll arrived after the other node's claim, by the wall clock: the
claim's ``seq`` is the store's clock in microseconds): this node then claims
the camera again, which sends the other node a takeover in turn. The newest
poll wins however late messages travel. A node that finds out another holds a
later claim (a status write, or a check after a pause) decides the same way,
unasked. A stopping node parks its cameras' work in the store for their next
home.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson

from ..relay import PollSuperseded, RegistryFull, SessionWork, ShuttingDown
from . import messages as m
from .backend import BackendError, Claim, StatusWrite
from .batch import TurnBatch
from .context import NodeContext
from .hosted import MAX_HOPS, HostedCallers
from .identity import node_of
from .unavailable import ClusterUnavailable

logger = logging.getLogger("camrelay.cluster")

#: how long a new home waits for the old one to hand a camera's work over
HANDOVER_WAIT_SECONDS = 1.0


class Homes:
    def __init__(self, ctx: NodeContext, hosted: HostedCallers) -> None:
        self._ctx = ctx
        self._hosted = hosted
        #: polls claiming a camera, done once its session exists here
        self._claims: dict[str, asyncio.Future[None]] = {}
        #: claims sent to the store and not answered yet: takeovers of these cameras wait
        self._claiming: dict[str, asyncio.Future[None]] = {}
        #: this node's latest claim of each camera homed here (or the takeover it obeyed)
        self._seqs: dict[str, int] = {}
        #: claims waiting for the old home's handover, by camera
        self._handovers: dict[str, asyncio.Future[None]] = {}
        #: work of cameras given up while stopping, until parked in the store
        self._parking: dict[str, SessionWork] = {}
        #: the status of each camera given up while stopping, its poll ended, until written
        self._ended: list[StatusWrite] = []
        #: set once ``_ended`` is written: parking waits for it (a park written first
        #: would leave nobody home, and the write of the poll's end would take it back)
        self._ended_written = asyncio.Event()
        self._ended_written.set()
        #: cameras homed here whose claim could not be written (the store was down)
        self._unclaimed: dict[str, None] = {}
        #: the wall-clock time at which each camera's latest poll here arrived
        self._arrived: dict[str, float] = {}
        self._first_claims: TurnBatch[str, Claim] = TurnBatch(self._claim_each, ctx.spawn)
        self._claims_again: TurnBatch[str, Claim] = TurnBatch(self._claim_each_again, ctx.spawn)

    async def _claim_each(self, camera_ids: list[str]) -> list[Claim]:
        return await self._ctx.directory.claim(camera_ids, self._ctx.incarnation, again=False)

    async def _claim_each_again(self, camera_ids: list[str]) -> list[Claim]:
        return await self._ctx.directory.claim(camera_ids, self._ctx.incarnation, again=True)

    def sizes(self) -> dict[str, int]:
        return {
            "claims": len(self._claims),
            "claiming": len(self._claiming),
            "seqs": len(self._seqs),
            "handovers": len(self._handovers),
            "parking": len(self._parking),
            "unclaimed": len(self._unclaimed),
            "arrived": len(self._arrived),
        }

    def seq(self, camera_id: str) -> int:
        return self._seqs.get(camera_id, 0)

    def note_seq(self, camera_id: str, seq: int) -> None:
        self._seqs[camera_id] = max(seq, self._seqs.get(camera_id, 0))

    def claiming(self, camera_id: str) -> bool:
        return camera_id in self._claiming or camera_id in self._claims

    def claim_under_way(self, camera_id: str) -> asyncio.Future[None] | None:
        return self._claims.get(camera_id)

    def forget_claim_order(self) -> None:
        """The store lost its data: the claim numbers remembered mean nothing now."""
        self._seqs.clear()

    def sweep(self) -> None:
        relay = self._ctx.relay
        for camera_id in [c for c in self._seqs if not relay.has_session(c)]:
            if camera_id not in self._claiming:
                del self._seqs[camera_id]
        for camera_id in [c for c in self._unclaimed if not relay.has_session(c)]:
            del self._unclaimed[camera_id]
        for camera_id in [c for c in self._arrived if not relay.has_session(c)]:
            del self._arrived[camera_id]

    # ------------------------------------------------------------------ polls

    def at_home(self, camera_id: str) -> bool:
        """The camera is homed here and its claim is made: its poll is held at once."""
        return self._ctx.relay.has_session(camera_id) and camera_id not in self._unclaimed

    async def before_poll(self, camera_id: str) -> None:
        """Make this node the camera's home before its poll is held here (at its home:
        nothing to do).

        Raises ``PollSuperseded`` when a later claim (a newer poll elsewhere) came
        first, ``RegistryFull`` for a new camera past ``MAX_CAMERAS``."""
        if self.at_home(camera_id):
            return
        claimed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._claims.setdefault(camera_id, claimed)
        try:
            await self._claim(camera_id)
        finally:
            if self._claims.get(camera_id) is claimed:
                del self._claims[camera_id]
            # Messages held back for the claim run after the session exists.
            claimed.set_result(None)

    async def adopt(self, camera_id: str) -> bool:
        """Become the home of a camera whose home stopped and parked its work, with that
        work (for a result it posted here); False if it has a home again, or is gone.
        Raises ``ClusterUnavailable`` when the store fails."""
        ctx = self._ctx
        claiming = self._claiming_now(camera_id)
        try:
            claim = await ctx.directory.adopt(camera_id, ctx.incarnation)
        except BackendError as error:
            ctx.health.failed(error)
            raise ClusterUnavailable(
                f"camera {camera_id!r} is between servers and the cluster's Redis did not "
                "answer; post the result again in a few seconds"
            ) from None
        finally:
            if self._claiming.get(camera_id) is claiming:
                del self._claiming[camera_id]
            if not claiming.done():
                claiming.set_result(None)
        ctx.health.succeeded()
        if claim.refused:
            return False
        self.note_seq(camera_id, claim.seq)
        if claim.parked:
            self._adopt_parked(camera_id, claim.parked)
        if not ctx.relay.has_session(camera_id):
            # Its parked work expired: a session all the same, whose status this node
            # writes as its home.
            ctx.relay.take_over(camera_id, SessionWork())
        ctx.mark_dirty(camera_id)
        return True

    def poll_held(self, camera_id: str, arrived: float) -> None:
        """The camera's poll that arrived at wall-clock time ``arrived`` is held here."""
        self._arrived[camera_id] = arrived

    async def _claim(self, camera_id: str) -> None:
        claim = await self._claim_in_store(camera_id, self._first_claims)
        if claim is None:
            # Serve the poll here; the claim is made again on its next poll.
            self._unclaimed[camera_id] = None
            return
        if claim.refused:
            await self._refuse(camera_id)
        if await self._take_work(camera_id, claim):
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._handovers[camera_id] = done
            try:
                async with asyncio.timeout(HANDOVER_WAIT_SECONDS):
                    await done
            except TimeoutError:
                logger.warning(
                    "node %s did not hand camera %r over in time", claim.old_home, camera_id
                )
            finally:
                self._handovers.pop(camera_id, None)
        if self.seq(camera_id) > claim.seq:
            raise PollSuperseded(f"a newer poll for camera {camera_id!r} replaced this one")

    async def _refuse(self, camera_id: str) -> None:
        relay = self._ctx.relay
        relay.observer.camera_refused(camera_id, relay.config.max_cameras)
        await asyncio.sleep(relay.config.refusal_delay_seconds)
        if self._ctx.closing:
            raise ShuttingDown("the server is shutting down; poll again in a few seconds")
        raise RegistryFull(
            f"the cluster already tracks {relay.config.max_cameras} cameras, its limit "
            f"(MAX_CAMERAS), and camera {camera_id!r} is new: retry later; idle cameras "
            "are forgotten over time"
        )

    async def _claim_again(self, camera_id: str) -> None:
        """The poll held here is newer than another node's claim: claim the camera back;
        that node is sent a takeover, which answers its (older) poll 409."""
        claim = await self._claim_in_store(camera_id, self._claims_again)
        if claim is not None and not claim.refused:
            await self._take_work(camera_id, claim)

    def _claiming_now(self, camera_id: str) -> asyncio.Future[None]:
        claiming = self._claiming.get(camera_id)
        if claiming is None:
            claiming = asyncio.get_running_loop().create_future()
            self._claiming[camera_id] = claiming
        return claiming

    async def _claim_in_store(self, camera_id: str, claims: TurnBatch[str, Claim]) -> Claim | None:
        """Claim the camera (``None`` when the store failed); its seq is noted before the
        takeovers held back meanwhile are looked at."""
        claiming = self._claiming_now(camera_id)
        claim: Claim | None = None
        try:
            claim = await claims.get(camera_id)
        except BackendError as error:
            self._ctx.health.failed(error)
        finally:
            if claim is not None and not claim.refused:
                self._ctx.health.succeeded()
                self._unclaimed.pop(camera_id, None)
                self.note_seq(camera_id, claim.seq)
            if self._claiming.get(camera_id) is claiming:
                del self._claiming[camera_id]
            if not claiming.done():
                claiming.set_result(None)
        return claim

    async def _take_work(self, camera_id: str, claim: Claim) -> bool:
        """Adopt the work parked for the camera, or ask its old home for it (True)."""
        if claim.parked:
            self._adopt_parked(camera_id, claim.parked)
            return False
        old = claim.old_home
        if old in ("", self._ctx.incarnation):
            return False
        if not await self._ctx.membership.confirm_alive(old):
            return False
        self._ctx.events.forwarded("takeover")
        self._ctx.courier.post(
            old, m.Takeover(camera=camera_id, to=self._ctx.incarnation, seq=claim.seq)
        )
        return True

    # ------------------------------------------------------------------ messages

    def on_takeover(self, message: m.Takeover, body: object) -> None:
        camera_id = message.camera
        claiming = self._claiming.get(camera_id)
        if claiming is not None:
            # This node's own claim is in the store's hands: compare once its seq is known.
            async def look_later() -> None:
                await claiming
                self.on_takeover(message, body)

            self._ctx.spawn(look_later())
            return
        if message.seq and message.seq < self.seq(camera_id):
            # Sent for a poll older than this node's latest claim: the newer poll stays.
            logger.info("ignored a takeover of camera %r older than the latest poll", camera_id)
            return
        self.claimed_elsewhere(camera_id, message.to or message.sender, message.seq)

    def claimed_elsewhere(self, camera_id: str, new_home: str, seq: int) -> None:
        """Another incarnation claimed the camera after this node's latest claim: it wins
        unless the poll held here arrived after that claim (then claimed back)."""
        session = self._ctx.relay.session(camera_id)
        arrived = self._arrived.get(camera_id)
        if (
            seq
            and arrived is not None
            and arrived * 1e6 > seq
            and session is not None
            and session.status().polling
        ):
            logger.info("a poll held here is newer than another node's claim of %r", camera_id)
            self._claiming_now(camera_id)
            self._ctx.spawn(self._claim_again(camera_id))
            return
        self.give_up(camera_id, new_home, seq)

    def give_up(self, camera_id: str, new_home: str, seq: int) -> None:
        """Another incarnation holds a later claim: its held poll here gets 409, and the
        session's work goes to ``new_home``."""
        if seq:
            self.note_seq(camera_id, seq)
        waiting = self._handovers.get(camera_id)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # superseded: ``_claim`` answers its poll 409
        work = self._ctx.relay.hand_over(camera_id, superseded=True)
        if work is None:
            work = self._parking.pop(camera_id, None)
        work = work or SessionWork()
        self._unclaimed.pop(camera_id, None)
        self._arrived.pop(camera_id, None)
        self._ctx.forget_status(camera_id)
        self._hosted.moved_away(camera_id, work, new_home)
        self._ctx.events.forwarded("handover")
        self._ctx.courier.post(
            new_home, m.Handover(camera=camera_id, work=m.work_json(work), seq=seq)
        )

    def on_handover(self, message: m.Handover, body: object) -> None:
        camera_id = message.camera
        if message.seq and message.seq < self.seq(camera_id):
            # It answers a claim of this node's that a later claim replaced (a late answer
            # to a takeover): the work belongs at the camera's home now.
            self._ctx.spawn(self._pass_handover_on(message))
            return
        try:
            work = m.work_from(message.work)
        except ValueError as error:
            logger.warning("dropped the work handed over for %r: %s", camera_id, error)
            work = SessionWork()
        self._adopt(camera_id, work)
        done = self._handovers.get(camera_id)
        if done is not None and not done.done():
            done.set_result(None)

    async def _pass_handover_on(self, message: m.Handover) -> None:
        ctx = self._ctx
        try:
            entry = await ctx.entry(message.camera)
        except ClusterUnavailable:
            entry = None
        home = "" if entry is None else entry.home
        if (
            entry is not None
            and message.hops < MAX_HOPS
            and home != ctx.incarnation
            and await ctx.membership.confirm_alive(home)
        ):
            ctx.courier.post(
                home, dataclasses.replace(message, seq=entry.seq, hops=message.hops + 1)
            )
            return
        if home == ctx.incarnation and ctx.relay.has_session(message.camera):
            self.on_handover(dataclasses.replace(message, seq=0), None)
            return
        # No live home: the callers wait at their nodes for the camera's next poll.
        try:
            work = m.work_from(message.work)
        except ValueError:
            return
        self._hosted.moved_away(message.camera, work, "")

    def _adopt_parked(self, camera_id: str, raw: bytes) -> None:
        try:
            work = m.work_from(orjson.loads(raw))
        except ValueError as error:
            logger.warning("dropped the work parked for %r: %s", camera_id, error)
            return
        self._adopt(camera_id, work)

    def _adopt(self, camera_id: str, work: SessionWork) -> None:
        ctx = self._ctx
        if ctx.closing:
            # Handed over as this node stops: parked like this node's own work.
            self.leave_for_next_home(camera_id, work)
            ctx.spawn(self.park_each())
            return
        callers = [
            c
            for c in ctx.relay.take_over(camera_id, self._hosted.without_hosted(work))
            if c.ref is not None
        ]
        for caller in callers:
            self._hosted.track(camera_id, caller)
        ctx.mark_dirty(camera_id)
        by_node: dict[str, list[str]] = {}
        for caller in callers:
            assert caller.ref is not None
            by_node.setdefault(node_of(caller.ref), []).append(caller.ref)
        for node, refs in by_node.items():
            ctx.courier.post(
                node, m.Moved(camera=camera_id, refs=tuple(refs), home=ctx.incarnation)
            )

    # ------------------------------------------------------------------ stopping

    def leave_all(self) -> None:
        """A graceful stop: every session's polls get noop; its work waits in the store
        for the camera's next home, and the store is told its poll ended now
        (``write_ended``): other nodes see the camera seen until then, and forget an id
        that never answered as they would any other, not once its polling entry expired."""
        relay = self._ctx.relay
        now = self._ctx.wall_clock()
        for camera_id in relay.camera_ids():
            session = relay.session(camera_id)
            if session is not None:
                status = session.status()
                answered = session.has_answered()
                ended = status._replace(
                    polling=False, last_seen=now if status.polling else status.last_seen
                )
                expect = bool(status.in_flight) or answered
                self._ended.append(StatusWrite(ended, expect, answered, self.seq(camera_id)))
                self._ended_written.clear()
            work = relay.hand_over(camera_id, superseded=False)
            if work is not None:
                self.leave_for_next_home(camera_id, work)

    async def write_ended(self) -> None:
        """Write the status of the cameras ``leave_all`` gave up (before their work is
        parked: parking needs this node still their home)."""
        writes, self._ended = self._ended, []
        try:
            if writes:
                await self._ctx.directory.write_status(self._ctx.incarnation, writes)
        except BackendError as error:
            self._ctx.health.failed(error)
        finally:
            self._ended_written.set()

    def leave_for_next_home(self, camera_id: str, work: SessionWork) -> None:
        if work.empty:
            return
        held = self._parking.get(camera_id)
        self._parking[camera_id] = work if held is None else _joined(held, work)
        self._hosted.moved_away(camera_id, work, "")

    @property
    def parking(self) -> bool:
        return bool(self._parking)

    async def park_each(self) -> None:
        await self._ended_written.wait()
        for camera_id, work in list(self._parking.items()):
            data = orjson.dumps(m.work_json(work))
            try:
                parked = await self._ctx.directory.park(camera_id, self._ctx.incarnation, data)
            except BackendError as error:
                self._ctx.health.failed(error)
                continue
            # Not parked: a node claimed the camera first; its takeover takes the work.
            if parked and self._parking.get(camera_id) is work:
                del self._parking[camera_id]


def _joined(first: SessionWork, second: SessionWork) -> SessionWork:
    return SessionWork(
        queued=first.queued + second.queued,
        in_flight=first.in_flight + second.in_flight,
        accepted=first.accepted + second.accepted,
        last_seen=max(first.last_seen or 0.0, second.last_seen or 0.0) or None,
    )
