"""Test helpers: condition waits and a scripted camera speaking HTTP to the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.relay import LogResult, LogSelection, Relay, TimeRange
from server.relay.logscan import ResultScanner

LogEntries = list[dict[str, Any]]


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for ``condition`` by checking it as the loop turns (no fixed sleeps)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


def camera_polling(relay: Relay, camera_id: str = "default") -> Callable[[], bool]:
    def check() -> bool:
        session = relay.session(camera_id)
        return session is not None and session.status().polling

    return check


def callers_waiting(relay: Relay, count: int, camera_id: str = "default") -> Callable[[], bool]:
    def check() -> bool:
        session = relay.session(camera_id)
        return session is not None and session.status().waiting == count

    return check


async def scrape(client: TestClient[Any, Any]) -> dict[str, float]:
    """``/metrics`` as ``{"name{label=value}": value}``."""
    async with client.get("/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


class ScriptedCamera:
    """A camera that polls over HTTP and answers every command with a fixed log.

    ``original=True`` behaves like the exercise's camera: it reads only the two
    bounds, sends no requestId, posts ``{"logs": []}`` on a noop while its log
    is empty, and pauses ``pause`` seconds after each cycle.
    """

    def __init__(
        self,
        http: ClientSession,
        base_url: str,
        logs: LogEntries,
        *,
        camera_id: str = "default",
        original: bool = False,
        pause: float = 0.0,
        before_answer: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self.logs = logs
        self.camera_id = camera_id
        self.original = original
        self.pause = pause
        self.before_answer = before_answer
        self.commands: list[dict[str, Any]] = []
        self.post_statuses: list[int] = []

    async def run(self) -> None:
        params = {} if self.original else {"cameraId": self.camera_id}
        while True:
            async with self._http.get(f"{self._base_url}/poll_for_command", params=params) as poll:
                command = await poll.json(content_type=None)
            if self.original:
                await self._answer_like_the_original(command)
            elif poll.status == 200 and command["command"] == "send_logs":
                self.commands.append(command)
                if self.before_answer is not None:
                    await self.before_answer()
                start, end = command["startTimestamp"], command["endTimestamp"]
                await self._post(
                    {
                        "requestId": command["requestId"],
                        "logs": [e for e in self.logs if start <= e["timestamp"] <= end],
                    }
                )
            if self.pause:
                await asyncio.sleep(self.pause)

    async def _answer_like_the_original(self, command: dict[str, Any]) -> None:
        try:
            start, end = command["startTimestamp"], command["endTimestamp"]
        except KeyError:
            if not self.logs:
                await self._post({"logs": []})
            return
        self.commands.append(command)
        await self._post({"logs": [e for e in self.logs if start <= e["timestamp"] <= end]})

    async def _post(self, body: dict[str, Any]) -> None:
        params = {} if self.original else {"cameraId": self.camera_id}
        async with self._http.post(
            f"{self._base_url}/send_logs", json=body, params=params
        ) as response:
            self.post_statuses.append(response.status)
            await response.read()


@contextlib.asynccontextmanager
async def running(coro_task: asyncio.Task[Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """Cancel and await a background task when the block ends."""
    try:
        yield coro_task
    finally:
        coro_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await coro_task


def log_result(entries: LogEntries) -> LogResult:
    """A result as the server keeps one: the entries' JSON bytes, indexed."""
    scanner = ResultScanner()
    scanner.feed(orjson.dumps({"logs": entries}))
    return scanner.finish().result


def entries_of(selection: LogSelection) -> LogEntries:
    """What a caller's answer holds, decoded; the selection is released."""
    try:
        answer: LogEntries = orjson.loads(b"".join(selection.chunks(b"[", b"]")))
        return answer
    finally:
        selection.release()


async def fetch(relay: Relay, camera_id: str, time_range: TimeRange) -> LogEntries:
    """``Relay.fetch_logs``, decoded."""
    return entries_of(await relay.fetch_logs(camera_id, time_range))
