"""The home's side of callers: callers of any node queued in sessions homed here, and
their outcomes carried back to the node of each caller's request.

A caller is named by its ref (``identity``), which names the incarnation that
owns its request; every outcome goes there as an ``Outcome`` message naming
the camera, one message per node for callers that share a result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import Iterable

from ..relay import (
    Caller,
    CameraOffline,
    CameraUnknown,
    LogResult,
    RelayError,
    SessionWork,
    TimeRange,
)
from . import messages as m
from .context import NodeContext
from .identity import node_of
from .unavailable import ClusterUnavailable

#: a message passed on this many times is dropped (a loop between stale homes)
MAX_HOPS = 2

logger = logging.getLogger("camrelay.cluster")


class HostedCallers:
    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        #: callers queued in a session homed here, by ref
        self._hosted: dict[str, tuple[str, Caller]] = {}
        #: results to send, by (node, camera, result): one message per node and result
        self._outgoing: dict[tuple[str, str, LogResult], list[str]] = {}

    def __len__(self) -> int:
        return len(self._hosted)

    def __contains__(self, ref: str) -> bool:
        return ref in self._hosted

    def enqueue(
        self, camera_id: str, ref: str, time_range: TimeRange, pickup: float | None
    ) -> None:
        """Queue the caller ``ref`` at the camera's session here; raises ``RelayError``."""
        if ref in self._hosted:  # sent again after a home died: it is here already
            return
        caller = self._ctx.relay.enqueue(camera_id, time_range, ref=ref, pickup_within=pickup)
        self.track(camera_id, caller)
        self._ctx.mark_dirty(camera_id)

    def track(self, camera_id: str, caller: Caller) -> None:
        assert caller.ref is not None
        self._hosted[caller.ref] = (camera_id, caller)
        caller.future.add_done_callback(functools.partial(self._caller_done, camera_id, caller))

    def withdraw(self, ref: str) -> bool:
        """The caller ``ref`` left: drop its work if it sits here."""
        hosted = self._hosted.pop(ref, None)
        if hosted is None:
            return False
        camera_id, caller = hosted
        self._ctx.relay.forget(camera_id, caller)
        self._ctx.mark_dirty(camera_id)
        return True

    def without_hosted(self, work: SessionWork) -> SessionWork:
        """``work`` minus callers already queued here (sent again after a home died)."""
        hosted = self._hosted
        return dataclasses.replace(
            work,
            queued=tuple(item for item in work.queued if item.ref not in hosted),
            in_flight=tuple(
                dataclasses.replace(
                    flight, callers=tuple(c for c in flight.callers if c.ref not in hosted)
                )
                for flight in work.in_flight
            ),
        )

    def moved(self, camera_id: str, refs: Iterable[str], home: str) -> None:
        """Tell the node of each caller that its work now waits at ``home`` ("": at the
        camera's next home, once it polls)."""
        by_node: dict[str, list[str]] = {}
        for ref in refs:
            self._hosted.pop(ref, None)
            by_node.setdefault(node_of(ref), []).append(ref)
        for node, node_refs in by_node.items():
            self._ctx.courier.post(
                node, m.Moved(camera=camera_id, refs=tuple(node_refs), home=home)
            )

    def moved_away(self, camera_id: str, work: SessionWork, home: str) -> None:
        refs = (
            item.ref
            for item in itertools.chain(
                work.queued, (c for flight in work.in_flight for c in flight.callers)
            )
        )
        self.moved(camera_id, refs, home)

    # ------------------------------------------------------------------ outcomes

    def _caller_done(self, camera_id: str, caller: Caller, future: asyncio.Future[object]) -> None:
        assert caller.ref is not None
        if self._hosted.get(caller.ref, (None, None))[1] is caller:
            del self._hosted[caller.ref]
        self._ctx.relay.forget(camera_id, caller)
        self._ctx.mark_dirty(camera_id)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            result = future.result()
            assert isinstance(result, LogResult)
            self._send_result(camera_id, caller.ref, result)
        else:
            self.send_error(camera_id, caller.ref, error)

    def _send_result(self, camera_id: str, ref: str, result: LogResult) -> None:
        """Carry the caller's hold on ``result`` to its node: the callers of one result on
        one node share one message, sent at the end of this loop turn (or sooner: an upload
        posts them once its callers have their results, ``post_outgoing``)."""
        key = (node_of(ref), camera_id, result)
        refs = self._outgoing.get(key)
        if refs is None:
            self._outgoing[key] = [ref]
            asyncio.get_running_loop().call_soon(self._post_result, key)
        else:
            refs.append(ref)
            result.release()  # the message carries one hold for all of them

    def post_outgoing(self) -> bool:
        """Post the results queued for callers' nodes now, not at the end of the loop turn
        (from the upload's request: a failure is logged, the camera's answer stands);
        whether any went to another node, through the store."""
        through_store = False
        for key in list(self._outgoing):
            try:
                self._post_result(key)
            except Exception:
                logger.exception("a result could not be posted to its callers' node")
                continue
            through_store |= key[0] != self._ctx.incarnation
        return through_store

    def _post_result(self, key: tuple[str, str, LogResult]) -> None:
        refs = self._outgoing.pop(key, None)
        if refs is None:
            return  # posted already (``post_outgoing``)
        node, camera_id, result = key
        self._ctx.events.forwarded("result")
        self._ctx.courier.post_result(node, m.Outcome(camera=camera_id, refs=tuple(refs)), result)

    def send_error(self, camera_id: str, ref: str, error: BaseException) -> None:
        relay_error = error if isinstance(error, RelayError) else CameraOffline(str(error))
        self._ctx.events.forwarded("error")
        self._ctx.courier.post(
            node_of(ref),
            m.Outcome(
                camera=camera_id,
                refs=(ref,),
                error=type(relay_error).__name__,
                detail=relay_error.detail,
            ),
        )

    # ------------------------------------------------------------------ stale homes

    def pass_on(self, message: m.Enqueue | m.Forget) -> None:
        """A message for a camera not homed here: to its current home."""
        self._ctx.spawn(self._pass_on(message))

    async def _pass_on(self, message: m.Enqueue | m.Forget) -> None:
        ctx = self._ctx
        try:
            entry = await ctx.entry(message.camera)
        except ClusterUnavailable as error:
            if isinstance(message, m.Enqueue):
                self.send_error(message.camera, message.ref, error)
            return
        home = "" if entry is None else entry.home
        alive = await ctx.membership.confirm_alive(home)
        if message.hops < MAX_HOPS and home and home != ctx.incarnation and alive:
            ctx.events.forwarded("passed-on")
            ctx.courier.post(home, dataclasses.replace(message, hops=message.hops + 1))
            if isinstance(message, m.Enqueue):
                # The caller's node follows its work there (should that home die too).
                ctx.courier.post(
                    node_of(message.ref),
                    m.Moved(camera=message.camera, refs=(message.ref,), home=home),
                )
            return
        if not isinstance(message, m.Enqueue):
            return
        if entry is not None:
            # The camera's work waits for its next poll (parked, or its home stopped): the
            # caller's node places the caller there, or answers 503 past the connect timeout.
            self.moved(message.camera, (message.ref,), "")
            return
        # Unknown to the store: what a caller's node that read it would have answered.
        self.send_error(message.camera, message.ref, CameraUnknown.of(message.camera))
