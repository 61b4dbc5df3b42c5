"""The fleet as the store has it: this node's cameras written there in batches, and
``/cameras`` read from there.

A status write that finds another incarnation holding a later claim of the
camera means this node lost it (it was paused, cut off, or the store lost the
entry and the camera polled elsewhere): the camera is given up to that home,
unless the poll held here arrived after that claim (``Homes.claimed_elsewhere``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import orjson

from ..relay import CameraStatus, RelayStats
from .backend import BackendError, StatusWrite
from .context import NodeContext
from .homes import Homes
from .unavailable import ClusterUnavailable
from .written import snapshot

T = TypeVar("T")

#: ids read from the store at a time while listing the whole fleet
PAGE_SIZE = 500
#: up to this many cameras, ``/cameras`` totals are read camera by camera (exact)
EXACT_TOTALS_UP_TO = 5_000


def counts_note(stats: RelayStats) -> bytes:
    """What a node says of its own cameras with each heartbeat, for the fleet's totals."""
    return orjson.dumps(
        [stats.online, stats.polls_held, stats.callers_waiting, stats.commands_in_flight]
    )


def _counts_from(note: bytes) -> list[int] | None:
    try:
        counts = orjson.loads(note)
    except orjson.JSONDecodeError:
        return None
    if not (
        isinstance(counts, list)
        and len(counts) == 4
        and all(isinstance(c, int) and c >= 0 for c in counts)
    ):
        return None  # an older release's beat (its time) or garbage: not counted
    return counts


class Fleet:
    def __init__(self, ctx: NodeContext, homes: Homes) -> None:
        self._ctx = ctx
        self._homes = homes
        #: loop time of the last ``sweep_store``, and the sweep running
        self._swept_at: float | None = None
        self._sweeping = False

    async def flush(self) -> None:
        """Write the status of the cameras homed here that changed, or whose last write is
        a refresh interval old (one round trip)."""
        ctx = self._ctx
        now = asyncio.get_running_loop().time()
        book = ctx.written
        ready = [camera_id for camera_id, due in ctx.dirty.items() if due <= now]
        for camera_id in ready:
            del ctx.dirty[camera_id]
        ready.extend(c for c in book.due(now) if c not in ctx.dirty)
        writes: list[StatusWrite] = []
        for camera_id in dict.fromkeys(ready):
            session = ctx.relay.session(camera_id)
            if session is None or self._homes.claiming(camera_id):
                if session is not None:
                    ctx.mark_dirty(camera_id)  # written once the claim is done
                else:
                    book.forget(camera_id)
                continue
            status = session.status()
            answered = session.has_answered()
            expect = bool(status.in_flight) or answered
            if not book.needs_write(camera_id, snapshot(status, expect, answered), now):
                continue
            writes.append(StatusWrite(status, expect, answered, seq=self._homes.seq(camera_id)))
        if not writes:
            return
        try:
            written = await ctx.directory.write_status(ctx.incarnation, writes)
        except BackendError as error:
            ctx.health.failed(error)
            for write in writes:
                ctx.mark_dirty(write.status.camera_id)
            return
        ctx.health.succeeded()
        for write, outcome in zip(writes, written, strict=True):
            camera_id = write.status.camera_id
            if not outcome.lost_to(ctx.incarnation):
                self._homes.note_seq(camera_id, outcome.seq)
                book.wrote(camera_id, snapshot(write.status, write.expect, write.answered), now)
            elif outcome.seq >= self._homes.seq(camera_id) and not self._homes.claiming(camera_id):
                # Equal: this node learnt of that claim and gave the camera up, and polls
                # here since could not claim it (the store failed).
                self._homes.claimed_elsewhere(camera_id, outcome.home, outcome.seq)

    def sweep_store(self) -> None:
        """Let the store forget what expired, in a task of its own (a slow store must not
        hold up the caller); at most four times per short retention (an id that never
        answered is forgotten that much past its expiry at the latest), and none while
        the last one runs."""
        now = asyncio.get_running_loop().time()
        every = self._ctx.config.unanswered_retention_seconds / 4
        if self._sweeping or (self._swept_at is not None and now - self._swept_at < every):
            return
        self._sweeping = True
        self._ctx.spawn(self._sweep_store())

    async def _sweep_store(self) -> None:
        """This node's share of the scan for entries a dead home left, so that the live
        nodes together scan the whole directory about once per status refresh interval."""
        ctx = self._ctx
        now = asyncio.get_running_loop().time()
        every = ctx.config.unanswered_retention_seconds / 4
        # After a pause, no catching up at once: a sweep's share is two intervals' at most.
        elapsed = 0.0 if self._swept_at is None else min(now - self._swept_at, 2 * every)
        self._swept_at = now
        nodes = len(ctx.membership.alive)
        share = elapsed / (ctx.cluster.status_refresh_seconds * nodes)
        try:
            await ctx.directory.sweep(share)
        except BackendError as error:
            ctx.health.failed(error)
        else:
            ctx.health.succeeded()
        finally:
            self._sweeping = False

    async def end_polls_of(self, departed: tuple[str, ...]) -> None:
        """Nodes stopped beating: the polls they held, as the store has them, ended at
        their last beat (a node that left gracefully wrote its own, and has none). Its
        never-answering ids are then forgotten one short retention later, not once their
        polling entries' refresh interval has passed.

        Only a node still silent a node timeout later, its last beat that old: one whose
        beats were only late (a loaded machine) beats again meanwhile and keeps its
        entries; one that beats again later still finds its lease lapsed and writes its
        cameras again (``check_homes``)."""
        ctx = self._ctx
        timeout = ctx.cluster.node_timeout_seconds
        await asyncio.sleep(timeout)
        now = ctx.wall_clock()
        for node in departed:
            if await ctx.membership.confirm_alive(node):
                continue
            last_beat = await ctx.membership.last_beat_now(node)
            if last_beat is None or now - last_beat < timeout:
                continue
            try:
                await ctx.directory.end_polls(node, last_beat)
            except BackendError as error:
                ctx.health.failed(error)
                return
            ctx.health.succeeded()

    def mark_all(self) -> None:
        """Write every camera homed here again (the store lost what was written)."""
        self._ctx.written.clear()
        for camera_id in self._ctx.relay.camera_ids():
            self._ctx.mark_dirty(camera_id)

    async def list_cameras(
        self,
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        ctx = self._ctx
        found: list[CameraStatus] = []
        cursor = after
        # A filter by state drops some of what is read: more is read at a time then.
        page = PAGE_SIZE if limit is None else limit if online is None else max(limit * 2, 50)
        now = ctx.wall_clock()
        config = ctx.config
        while limit is None or len(found) < limit:
            ids = await self._listed(ctx.directory.page(prefix, cursor, page))
            if not ids:
                break
            cursor = ids[-1]
            entries = await self._listed(ctx.directory.read(ids))
            homes = sorted({e.home for e in entries if e is not None})
            for home in homes:
                # a node that joined since the beat; one that died, its last beat (once)
                await ctx.membership.confirm_alive(home)
                await ctx.membership.last_alive_at(home, now)
            for camera_id, entry in zip(ids, entries, strict=True):
                session = ctx.relay.session(camera_id)
                if session is not None and entry is not None and entry.home == ctx.incarnation:
                    status = session.status()  # homed here: the freshest status is local
                elif entry is not None:
                    home_seen = await ctx.membership.last_alive_at(entry.home, now)
                    alive = ctx.membership.is_alive(entry.home)
                    status = entry.status(now, config.connect_timeout_seconds, home_seen, alive)
                else:
                    continue
                if online is None or status.online is online:
                    found.append(status)
                    if len(found) == limit:
                        break
            if len(ids) < page:
                break
        return found

    async def _listed(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except BackendError as error:
            self._ctx.health.failed(error)
            raise ClusterUnavailable(
                "the cluster's Redis is unreachable, so the fleet cannot be listed; "
                "retry in a few seconds"
            ) from None
        self._ctx.health.succeeded()
        return result

    async def stats(self) -> RelayStats:
        """The fleet's totals: read camera by camera up to ``EXACT_TOTALS_UP_TO`` cameras;
        past it, in O(nodes): the cameras the store holds, and the counts each live node
        gave of its own cameras with its last heartbeat (a beat old at most; cameras whose
        home died are not among them)."""
        ctx = self._ctx
        known = await self._listed(ctx.directory.count())
        if known <= EXACT_TOTALS_UP_TO:
            statuses = await self.list_cameras()
            return RelayStats(
                len(statuses),
                sum(s.online for s in statuses),
                sum(s.polling for s in statuses),
                sum(s.waiting for s in statuses),
                sum(s.in_flight for s in statuses),
            )
        own = ctx.relay.stats()
        totals = [own.online, own.polls_held, own.callers_waiting, own.commands_in_flight]
        for note in await self._listed(ctx.membership.notes_of_others()):
            counts = _counts_from(note)
            if counts is not None:
                totals = [total + count for total, count in zip(totals, counts, strict=True)]
        return RelayStats(known, *totals)

    async def check_homes(self) -> None:
        """After this node's lease lapsed: give up every camera another incarnation claimed
        since; write again those the store forgot, or holds as this node's."""
        ctx = self._ctx
        camera_ids = ctx.relay.camera_ids()
        if not camera_ids:
            return
        try:
            entries = await ctx.directory.read(camera_ids)
        except BackendError as error:
            ctx.health.failed(error)
            return
        for camera_id, entry in zip(camera_ids, entries, strict=True):
            if entry is None or not entry.home or entry.home == ctx.incarnation:
                # Gone, parked, or still here: written again, as others may have ended
                # its poll in the store meanwhile (this node seemed dead to them).
                ctx.written.forget(camera_id)
                ctx.mark_dirty(camera_id)
            elif (
                entry.home != ctx.incarnation
                and not self._homes.claiming(camera_id)
                and entry.seq >= self._homes.seq(camera_id)
            ):
                self._homes.claimed_elsewhere(camera_id, entry.home, entry.seq)
