"""The camera's protocol loop: poll -> execute -> poll, one command at a time."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from camera.backoff import Backoff, UniformSource
from camera.commands import CommandError, Noop, SendLogs, parse_command
from camera.eventlog import EventLog
from camera.settings import CameraSettings

__all__ = ["Camera", "CameraStats", "CommandOutcome", "Sleep"]

log: Final = logging.getLogger("camera")

#: An awaitable sleep; injected by tests so retries never wait on the wall clock.
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class CameraStats:
    """Counters, updated as the camera works (read them; do not write)."""

    polls: int = 0  # poll requests started
    noops: int = 0  # polls answered noop
    poll_timeouts: int = 0  # client-side poll timeouts (normal: re-polled at once)
    conflicts: int = 0  # polls answered 409 (superseded by a newer poll)
    unauthorized: int = 0  # 401 answers, to polls or uploads
    commands_received: int = 0  # send_logs commands taken from polls
    commands_handled: int = 0  # results the server accepted (200, duplicates included)
    duplicates: int = 0  # ... of which the server reported "duplicate": true
    results_rejected: int = 0  # results answered 404 or another 4xx but 401/409
    errors: int = 0  # refused/reset, upload timeouts, 5xx, bad or unexpected answers
    retries: int = 0  # backoff delays taken


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of one send_logs command that got an HTTP answer."""

    command: SendLogs
    entries_sent: int
    status: int
    duplicate: bool = False


class Camera:
    """A simulated camera: records events and answers the relay's commands.

    ``session``: shared when given (the caller closes it); otherwise ``run()``
    creates one and closes it when it ends.  ``sleep`` is used for every wait
    between polls (backoff, 409 pause, fast-noop pacing), never for the
    recording period.  ``rng`` jitters the 409 pause.  ``min_noop_interval``
    paces polls answered ``noop`` faster than that, so a server that does not
    hold polls cannot make the camera spin.  ``on_outcome`` is called for
    every send_logs command whose result got an HTTP answer.
    ``lifecycle_level``: the level of the "polling" and "stopped" lines (a fleet
    logs them at DEBUG and one summary line at INFO).

    ``stop()`` is sticky: once called, ``run()`` returns (at once, if it has
    not started yet).
    """

    def __init__(
        self,
        settings: CameraSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        event_log: EventLog | None = None,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: UniformSource | None = None,
        conflict_delay: tuple[float, float] = (1.0, 2.0),
        min_noop_interval: float = 0.2,
        on_outcome: Callable[[CommandOutcome], None] | None = None,
        lifecycle_level: int = logging.INFO,
    ) -> None:
        self.settings = settings
        self._lifecycle_level = lifecycle_level
        self.event_log = event_log if event_log is not None else EventLog()
        self.stats = CameraStats()
        self._session = session
        self._backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self._rng: UniformSource = rng if rng is not None else random.Random()
        self._conflict_delay = conflict_delay
        self._min_noop_interval = min_noop_interval
        self._on_outcome = on_outcome
        self._poll_url = URL(settings.poll_url).with_query(cameraId=settings.camera_id)
        self._send_url = URL(settings.send_logs_url).with_query(cameraId=settings.camera_id)
        self._timeout = aiohttp.ClientTimeout(total=settings.poll_timeout_seconds)
        self._headers: dict[str, str] = {}
        if settings.camera_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.camera_token}"
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        self._stopping = asyncio.Event()
        self._changed_event = asyncio.Event()
        self._running = False

    # -- public API ---------------------------------------------------------

    @property
    def camera_id(self) -> str:
        return self.settings.camera_id

    @property
    def commands_handled(self) -> int:
        """Results the server accepted (shortcut for ``stats.commands_handled``)."""
        return self.stats.commands_handled

    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Ask ``run()`` to end: it cancels its work and returns promptly."""
        self._stopping.set()

    async def wait_until(self, predicate: Callable[[CameraStats], bool]) -> None:
        """Return once ``predicate(stats)`` holds; re-checked on every change."""
        while True:
            changed = self._changed_event
            if predicate(self.stats):
                return
            await changed.wait()

    async def wait_for_commands(self, count: int) -> None:
        """Return once ``count`` results in total have been accepted."""
        await self.wait_until(lambda stats: stats.commands_handled >= count)

    async def run(self) -> None:
        """Record events and serve commands until ``stop()`` (or cancellation)."""
        if self._running:
            raise RuntimeError("Camera.run() is already running")
        if self._stopping.is_set():
            return
        self._running = True
        owns_session = self._session is None
        session = aiohttp.ClientSession() if self._session is None else self._session
        tasks: list[asyncio.Task[Any]] = []
        try:
            self.event_log.record()
            # INFO for a single camera; a fleet's summary line stands for all of them.
            log.log(
                self._lifecycle_level,
                "camera %s: polling %s (poll timeout %gs, a new event every %gs)",
                self.camera_id,
                self.settings.api_base_url,
                self.settings.poll_timeout_seconds,
                self.settings.log_period_seconds,
            )
            name = f"camera-{self.camera_id}"
            worker = asyncio.create_task(self._serve_forever(session), name=f"{name}-poller")
            tasks.append(worker)
            tasks.append(asyncio.create_task(self._record_forever(), name=f"{name}-recorder"))
            tasks.append(asyncio.create_task(self._stopping.wait(), name=f"{name}-stop"))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            try:
                await _cancel_and_wait(tasks)
            finally:
                self._running = False
                if owns_session:
                    await session.close()
                log.log(self._lifecycle_level, "camera %s: stopped", self.camera_id)
        for task in tasks:  # only an escaped BaseException gets here
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    # -- recording ----------------------------------------------------------

    async def _record_forever(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.settings.log_period_seconds
        due = loop.time()
        while True:
            due += period
            delay = due - loop.time()
            if delay < -period:  # suspended or starved: resume the rhythm from now
                due = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            try:
                self.event_log.record()
            except Exception:
                log.exception("camera %s: could not record an event", self.camera_id)

    # -- protocol loop ------------------------------------------------------

    async def _serve_forever(self, session: aiohttp.ClientSession) -> None:
        while True:
            try:
                delay = await self._cycle(session)
            except Exception:  # never crash: log it, back off, carry on
                self.stats.errors += 1
                delay = self._retry_delay()
                log.exception(
                    "camera %s: unexpected error; retrying in %.2fs",
                    self.camera_id,
                    delay,
                )
            self._changed()
            if delay is not None:
                await self._sleep(delay)

    async def _cycle(self, session: aiohttp.ClientSession) -> float | None:
        """One poll and, if it brings one, one command.

        Returns how long to wait before the next poll (None: poll at once).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.polls += 1
        self._changed()
        try:
            async with session.get(
                self._poll_url, headers=self._headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                body = await resp.read()
        except aiohttp.ClientError as exc:  # refused, reset, connect timeout, ...
            return self._failure("poll failed (%s)", _describe(exc))
        except TimeoutError:
            # The server held the poll longer than our timeout: normal enough.
            self.stats.poll_timeouts += 1
            log.debug("camera %s: poll timed out; polling again", self.camera_id)
            return None

        if status != 200:
            return self._bad_status("poll", status, body)
        try:
            command = parse_command(body)
        except CommandError as exc:
            return self._failure("bad poll answer: %s", str(exc))
        if isinstance(command, Noop):
            self.stats.noops += 1
            self._backoff.reset()
            elapsed = loop.time() - started
            if elapsed < self._min_noop_interval:
                return self._min_noop_interval - elapsed
            return None
        return await self._send_logs(session, command)

    async def _send_logs(self, session: aiohttp.ClientSession, command: SendLogs) -> float | None:
        self.stats.commands_received += 1
        entries = self.event_log.slice(command.start, command.end)
        payload: dict[str, Any] = {"logs": entries}
        if command.request_id is not None:
            payload = {"requestId": command.request_id, "logs": entries}
        data = orjson.dumps(payload)
        log.debug(
            "camera %s: sending %d entries for request %r",
            self.camera_id,
            len(entries),
            command.request_id,
        )
        try:
            async with session.post(
                self._send_url,
                data=data,
                headers=self._post_headers,
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                answer = await resp.read()
        except aiohttp.ClientError as exc:
            # The result is lost; the server redelivers the command on our next poll.
            return self._failure("sending logs failed (%s)", _describe(exc))
        except TimeoutError:
            return self._failure("sending logs timed out after %gs", self._timeout.total)

        if status == 200:
            duplicate = _is_duplicate(answer)
            self.stats.commands_handled += 1
            self.stats.duplicates += duplicate
            self._backoff.reset()
            self._report(CommandOutcome(command, len(entries), status, duplicate))
            return None
        if status == 404:
            self.stats.results_rejected += 1
            self._backoff.reset()
            log.warning(
                "camera %s: server answered 404 to the result for request %r "
                "(unknown, expired or not ours): %s; polling again",
                self.camera_id,
                command.request_id,
                _detail(answer),
            )
            self._report(CommandOutcome(command, len(entries), status))
            return None
        if status in (401, 409) or status >= 500:
            return self._bad_status("send_logs", status, answer)
        # 400, 413, 415, ...: resending the same body would fail the same way.
        self.stats.results_rejected += 1
        delay = self._retry_delay()
        log.error(
            "camera %s: server rejected the result for request %r with %d: %s; "
            "polling again in %.2fs",
            self.camera_id,
            command.request_id,
            status,
            _detail(answer),
            delay,
        )
        self._report(CommandOutcome(command, len(entries), status))
        return delay

    # -- outcomes -----------------------------------------------------------

    def _bad_status(self, what: str, status: int, body: bytes) -> float:
        if status == 409:
            self.stats.conflicts += 1
            delay = self._rng.uniform(*self._conflict_delay)
            log.warning(
                "camera %s: %s superseded (409): a newer poll for this id is active, "
                "maybe another device uses the same CAMERA_ID; polling again in %.2fs",
                self.camera_id,
                what,
                delay,
            )
            return delay
        if status == 401:
            self.stats.unauthorized += 1
            delay = self._retry_delay()
            hint = (
                "CAMERA_TOKEN was rejected: it must be the token derived from the "
                "server's CAMERA_SECRET for this CAMERA_ID"
                if self.settings.camera_token is not None
                else "the server requires a token: set CAMERA_TOKEN"
            )
            log.error(
                "camera %s: %s unauthorized (401): %s; retrying in %.2fs",
                self.camera_id,
                what,
                hint,
                delay,
            )
            return delay
        if status >= 500:
            return self._failure("%s answered %d: %s", what, status, _detail(body))
        self.stats.errors += 1
        delay = self._retry_delay()
        log.error(
            "camera %s: %s answered %d: %s; retrying in %.2fs",
            self.camera_id,
            what,
            status,
            _detail(body),
            delay,
        )
        return delay

    def _failure(self, message: str, *args: object) -> float:
        self.stats.errors += 1
        delay = self._retry_delay()
        log.warning(
            "camera %s: " + message + "; retrying in %.2fs",
            self.camera_id,
            *args,
            delay,
        )
        return delay

    def _retry_delay(self) -> float:
        self.stats.retries += 1
        return self._backoff.next_delay()

    def _report(self, outcome: CommandOutcome) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(outcome)
        except Exception:
            log.exception("camera %s: on_outcome callback failed", self.camera_id)

    def _changed(self) -> None:
        self._changed_event.set()
        self._changed_event = asyncio.Event()


async def _cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


#: OpenSSL's reason when a TLS client's peer speaks plain HTTP (before 3.2, and since)
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "record layer failure")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, aiohttp.ClientSSLError) and any(
        reason in text for reason in _PLAIN_HTTP_REASONS
    ):
        described += "; the server does not speak TLS: use http:// in API_BASE_URL"
    return described


def _is_duplicate(answer: bytes) -> bool:
    try:
        payload = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and payload.get("duplicate") is True


def _detail(body: bytes, limit: int = 300) -> str:
    """The problem+json ``detail`` if there is one, else the start of the body."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        text: str = payload["detail"]
    else:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())  # one line
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
