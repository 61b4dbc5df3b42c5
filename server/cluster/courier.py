"""A node's messages: posted in batches through the transport, read from its inbox and
handed to the handler of their type.

A message to this node's own incarnation is handed over in the same way, without
the store (a result then travels as the object itself). A message read from the
inbox that is addressed to another incarnation (an earlier run of this node) is
dropped: nothing sent to an earlier run reaches this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..relay import LogResult
from .backend import BackendError, Body, Envelope, Transport
from .health import StoreHealth
from .identity import name_of, node_of
from .messages import Enqueue, Message, Moved, Outcome, decode, encode
from .payload import result_bytes, timestamps_field
from .unavailable import ClusterUnavailable

logger = logging.getLogger("camrelay.cluster")

#: how long ``send`` waits for the store to take a message
SEND_TIMEOUT_SECONDS = 2.0
#: how long ``flush`` waits at most
FLUSH_TIMEOUT_SECONDS = 1.0

Handler = Callable[[Any, "Body | None"], None]


class LocalResult(Body):
    """A result handed from this node to itself: the object, not its bytes."""

    def __init__(self, result: LogResult) -> None:
        self.result = result
        self.size = 0

    async def read(self) -> bytes | None:
        raise TypeError("a local result is taken as it is, not read")


@dataclasses.dataclass(slots=True)
class _Outgoing:
    envelope: Envelope
    done: asyncio.Future[None] | None


class Courier:
    def __init__(
        self,
        transport: Transport,
        incarnation: str,
        health: StoreHealth,
        wall_clock: Callable[[], float],
        on_latency: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._transport = transport
        self.incarnation = incarnation
        self._inbox = name_of(incarnation)
        self._health = health
        self._wall_clock = wall_clock
        self._on_latency = on_latency
        self._handlers: Mapping[type[Message], Handler] = {}
        self._outbox: list[_Outgoing] = []
        self._wake_writer = asyncio.Event()
        #: messages queued so far, and how many of them the writer is done with (sent or
        #: failed): both running counts
        self._queued = 0
        self._finished = 0
        #: ``flush`` calls waiting, each for the count it needs finished
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    def start(self, handlers: Mapping[type[Message], Handler]) -> None:
        self._handlers = handlers
        self._tasks = [
            asyncio.create_task(self._write_forever(), name=f"camrelay-writer-{self._inbox}"),
            asyncio.create_task(self._read_forever(), name=f"camrelay-reader-{self._inbox}"),
        ]

    # ------------------------------------------------------------------ sending

    def post(self, dest: str, message: Message, body: bytes | None = None) -> None:
        """Send without waiting (a failure is counted and logged)."""
        stamped = self._stamped(dest, message)
        if dest == self.incarnation:
            asyncio.get_running_loop().call_soon(self._deliver, stamped, None)
            return
        self._queue(Envelope(name_of(dest), encode(stamped), body), None)

    def post_result(self, dest: str, message: Outcome, result: LogResult) -> None:
        """Send a result with one hold on it for the receiver (released here once its
        bytes are taken when it leaves this node)."""
        if dest == self.incarnation:
            stamped = self._stamped(dest, message)
            asyncio.get_running_loop().call_soon(self._deliver, stamped, LocalResult(result))
            return
        try:
            body = result_bytes(result)
            timestamps = timestamps_field(result, body)
        finally:
            result.release()
        stamped = self._stamped(dest, dataclasses.replace(message, timestamps=timestamps))
        self._queue(Envelope(name_of(dest), encode(stamped), body), None)

    async def send(self, dest: str, message: Message, body: bytes | None = None) -> None:
        """Send and wait until the store has it; raises ``ClusterUnavailable``."""
        stamped = self._stamped(dest, message)
        if dest == self.incarnation:
            asyncio.get_running_loop().call_soon(self._deliver, stamped, None)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(Envelope(name_of(dest), encode(stamped), body), done)
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await done
        except (TimeoutError, BackendError):
            # Given up on: not written later, when its sender has answered otherwise.
            done.cancel()
            raise ClusterUnavailable(
                "the cluster's Redis did not take the message, so the server holding the "
                "camera cannot be reached; retry in a few seconds"
            ) from None

    def _stamped(self, dest: str, message: Message) -> Message:
        sent_ms = int(self._wall_clock() * 1000)
        return dataclasses.replace(message, sender=self.incarnation, dest=dest, sent_ms=sent_ms)

    def _queue(self, envelope: Envelope, done: asyncio.Future[None] | None) -> None:
        self._outbox.append(_Outgoing(envelope, done))
        self._queued += 1
        self._wake_writer.set()

    async def _write_forever(self) -> None:
        while not self._stopped:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            batch = [item for item in self._outbox if not _given_up(item)]
            self._outbox = []
            batch_end = self._queued
            if batch:
                await self._write(batch)
            self._finished = batch_end
            self._end_flushes()

    async def _write(self, batch: list[_Outgoing]) -> None:
        error: BackendError | None = None
        try:
            await self._transport.send([item.envelope for item in batch])
            self._health.succeeded()
        except BackendError as failure:
            self._health.failed(failure)
            error = failure
        except Exception as failure:  # not the store's doing: the writer must go on
            logger.exception("cluster messages could not be sent")
            error = BackendError(f"{type(failure).__name__}: the messages could not be sent")
            self._health.failed(error)
        for item in batch:
            if item.done is not None and not item.done.done():
                if error is None:
                    item.done.set_result(None)
                else:
                    item.done.set_exception(error)

    def _end_flushes(self, *, all_of_them: bool = False) -> None:
        waiting = []
        for needed, marker in self._flushes:
            if all_of_them or needed <= self._finished:
                if not marker.done():
                    marker.set_result(None)
            else:
                waiting.append((needed, marker))
        self._flushes = waiting

    # ------------------------------------------------------------------ receiving

    async def _read_forever(self) -> None:
        while not self._stopped:
            try:
                deliveries = await self._transport.receive(self._inbox)
            except BackendError as error:
                self._health.failed(error)
                await asyncio.sleep(0.2)
                continue
            for delivery in deliveries:
                message = decode(delivery.header)
                if message is not None:
                    self._deliver(message, delivery.body)
            if deliveries:
                # The requests these messages woke answer before the next read is sent:
                # one loop turn for the tasks they started (an outcome is taken in one),
                # one for the requests those woke.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    def _deliver(self, message: Message, body: Body | None) -> None:
        if message.dest and message.dest != self.incarnation:
            # For an earlier run of this node. A caller's work sent to it is lost: its
            # node places it again at the camera's next home (as when a home dies).
            if isinstance(message, Enqueue) and (caller := node_of(message.ref)):
                self.post(caller, Moved(camera=message.camera, refs=(message.ref,)))
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            return
        if message.sent_ms and message.sender != self.incarnation:
            self._on_latency(max(self._wall_clock() * 1000 - message.sent_ms, 0.0) / 1000)
        try:
            handler(message, body)
        except Exception:  # a bug in one handler must not stop the inbox
            logger.exception("a cluster message could not be handled")

    # ------------------------------------------------------------------ lifecycle

    async def flush(self, seconds: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait (``seconds`` at most) until what was posted so far is written or failed;
        what is posted meanwhile is not waited for."""
        needed = self._queued
        if self._finished >= needed or self._stopped:
            return
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (needed, marker)
        self._flushes.append(entry)
        try:
            async with asyncio.timeout(seconds):
                await marker
        except TimeoutError:
            pass
        finally:
            if entry in self._flushes:
                self._flushes.remove(entry)

    async def drain(self, seconds: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Wait (``seconds`` at most in all) until nothing posted is left unwritten, what
        is posted meanwhile included: a node's last messages before it stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self._finished < self._queued and not self._stopped:
                    await self.flush(seconds)

    async def close(self) -> None:
        self._stopped = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, BackendError):
                await task
        for item in self._outbox:
            if item.done is not None and not item.done.done():
                item.done.set_exception(BackendError("the node stopped"))
        self._outbox.clear()
        self._end_flushes(all_of_them=True)


def _given_up(item: _Outgoing) -> bool:
    return item.done is not None and item.done.cancelled()
