"""Unit tests for the simulated camera (``camera/``).

The camera talks to a small scripted fake relay (not the real server): each
poll takes the next scripted answer, or is held until the camera hangs up
when the script is exhausted; uploads are recorded byte for byte.  Retry
waits go through an injected fake sleep, so nothing here waits on the wall
clock except a few deliberately tiny timeouts/periods.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from camera import (
    Backoff,
    Camera,
    CameraSettings,
    CommandError,
    CommandOutcome,
    ConfigError,
    EventLog,
    LogEntry,
    Noop,
    SendLogs,
    parse_command,
)
from camera.__main__ import build_fleet, fleet_ids, main

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT = 5.0  # guard against hangs only; tests finish long before
MAX_DOUBLE = 1.7976931348623157e308
DESCRIPTION = re.compile(
    r"motion detected at \(\d+, \d+\)"
    r"|user started viewing live video"
    r"|brightness adjusted \d+"
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


class Changes:
    """Lets a test wait for a condition that other tasks make true."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while True:
                event = self._event
                if predicate():
                    return
                await event.wait()


class FakeSleep:
    """Stands in for asyncio.sleep in the camera: records delays, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.changes = Changes()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.changes.notify()
        await asyncio.sleep(0)

    async def wait_for(self, count: int) -> None:
        await self.changes.wait_until(lambda: len(self.delays) >= count)


class Ceiling:
    """A 'random' source whose uniform(a, b) is always b: backoff delays = ceilings."""

    def uniform(self, a: float, b: float) -> float:
        return b


def entry(timestamp: float, description: str = "user started viewing live video") -> LogEntry:
    return {"timestamp": timestamp, "description": description}


def send_logs(request_id: str | None, start: float, end: float) -> dict[str, Any]:
    command: dict[str, Any] = {
        "command": "send_logs",
        "startTimestamp": start,
        "endTimestamp": end,
    }
    if request_id is not None:
        command["requestId"] = request_id
    return command


def problem(status: int, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": "error", "status": status, "detail": detail}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json"
    )


Answer = Callable[[], web.StreamResponse]


def reply(obj: Any, status: int = 200) -> Answer:
    return lambda: web.Response(
        status=status, body=orjson.dumps(obj), content_type="application/json"
    )


def raw(body: bytes, status: int = 200) -> Answer:
    return lambda: web.Response(status=status, body=body, content_type="application/json")


def fail(status: int, detail: str = "scripted failure") -> Answer:
    return lambda: problem(status, detail)


@dataclass
class Poll:
    camera_id: str | None
    authorization: str | None


@dataclass
class Upload:
    camera_id: str | None
    content_type: str | None
    authorization: str | None
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeRelay:
    """A scripted stand-in for the relay server."""

    polls_script: deque[Answer] = field(default_factory=deque)
    uploads_script: deque[Answer] = field(default_factory=deque)
    polls: list[Poll] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    base_url: str = ""

    def script(self, *answers: Answer) -> None:
        self.polls_script.extend(answers)

    def answer_uploads(self, *answers: Answer) -> None:
        self.uploads_script.extend(answers)

    async def wait_until(
        self, predicate: Callable[[FakeRelay], bool], within: float = WAIT
    ) -> None:
        await self.changes.wait_until(lambda: predicate(self), within)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/poll_for_command", self._poll)
        app.router.add_post("/send_logs", self._send_logs)
        return app

    async def _poll(self, request: web.Request) -> web.StreamResponse:
        self.polls.append(Poll(request.query.get("cameraId"), request.headers.get("Authorization")))
        self.changes.notify()
        if self.polls_script:
            return self.polls_script.popleft()()
        # Script exhausted: hold the poll until the camera hangs up (the test
        # server cancels handlers of closed connections).
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def _send_logs(self, request: web.Request) -> web.StreamResponse:
        self.uploads.append(
            Upload(
                camera_id=request.query.get("cameraId"),
                content_type=request.headers.get("Content-Type"),
                authorization=request.headers.get("Authorization"),
                body=await request.read(),
            )
        )
        self.changes.notify()
        if self.uploads_script:
            return self.uploads_script.popleft()()
        return web.json_response({"accepted": True})


class AiohttpServer(Protocol):
    async def __call__(self, app: web.Application) -> Any: ...


@pytest.fixture
async def relay(aiohttp_server: AiohttpServer) -> FakeRelay:
    fake = FakeRelay()
    server = await aiohttp_server(fake.app())
    fake.base_url = f"http://{server.host}:{server.port}"
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@dataclass
class Running:
    camera: Camera
    task: asyncio.Task[None]
    sleep: FakeSleep


class StartCamera(Protocol):
    def __call__(
        self,
        env: dict[str, str] | None = None,
        *,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> Running: ...


@pytest.fixture
async def start_camera(
    relay: FakeRelay, session: aiohttp.ClientSession
) -> AsyncIterator[StartCamera]:
    """Start a camera against the fake relay; it is stopped at teardown."""
    started: list[Running] = []

    def start(
        env: dict[str, str] | None = None,
        *,
        base_url: str | None = None,
        **kwargs: Any,
    ) -> Running:
        settings = CameraSettings.from_env(
            {
                "API_BASE_URL": base_url or relay.base_url,
                "CAMERA_ID": "cam-1",
                "LOG_PERIOD_SECONDS": "3600",
                **(env or {}),
            }
        )
        fake_sleep = FakeSleep()
        kwargs.setdefault("session", session)
        kwargs.setdefault("sleep", fake_sleep)
        kwargs.setdefault("min_noop_interval", 0.0)
        camera = Camera(settings, **kwargs)
        running = Running(camera, asyncio.create_task(camera.run()), fake_sleep)
        started.append(running)
        return running

    yield start
    for running in started:
        running.camera.stop()
    async with asyncio.timeout(WAIT):
        for running in started:
            await running.task


def camera_tasks() -> list[str]:
    return [
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith("camera-") and not task.done()
    ]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------


def test_settings_defaults_and_trailing_slash() -> None:
    settings = CameraSettings.from_env({"API_BASE_URL": "http://relay:8080/"})
    assert settings == CameraSettings(
        api_base_url="http://relay:8080",
        camera_id="default",
        log_period_seconds=10.0,
        poll_timeout_seconds=60.0,
        camera_token=None,
        log_level="INFO",
    )
    assert settings.poll_url == "http://relay:8080/poll_for_command"
    assert settings.send_logs_url == "http://relay:8080/send_logs"


def test_settings_all_values() -> None:
    settings = CameraSettings.from_env(
        {
            "API_BASE_URL": "https://relay.example/api/",
            "CAMERA_ID": "Front-door_1.a",
            "LOG_PERIOD_SECONDS": "0.5",
            "POLL_TIMEOUT_SECONDS": "1e2",
            "CAMERA_TOKEN": "abc123",
            "LOG_LEVEL": "debug",
            "UNRELATED": "ignored",
        }
    )
    assert settings.api_base_url == "https://relay.example/api"
    assert settings.send_logs_url == "https://relay.example/api/send_logs"
    assert settings.camera_id == "Front-door_1.a"
    assert settings.log_period_seconds == 0.5
    assert settings.poll_timeout_seconds == 100.0
    assert settings.camera_token == "abc123"
    assert settings.log_level == "DEBUG"


def test_settings_token_is_optional_and_never_in_repr() -> None:
    base = {"API_BASE_URL": "http://relay"}
    assert CameraSettings.from_env({**base, "CAMERA_TOKEN": ""}).camera_token is None
    settings = CameraSettings.from_env({**base, "CAMERA_TOKEN": "s3cret"})
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_BASE_URL", None),
        ("API_BASE_URL", ""),
        ("API_BASE_URL", "relay:8080"),
        ("API_BASE_URL", "ftp://relay"),
        ("API_BASE_URL", "http://"),
        ("API_BASE_URL", "http://relay/?x=1"),
        ("API_BASE_URL", "http://user:hunter2@relay"),
        ("CAMERA_ID", ""),
        ("CAMERA_ID", "front door"),
        ("CAMERA_ID", "cam/1"),
        ("CAMERA_ID", "x" * 65),
        ("CAMERA_ID", "caméra"),
        ("LOG_PERIOD_SECONDS", "0"),
        ("LOG_PERIOD_SECONDS", "-1"),
        ("LOG_PERIOD_SECONDS", "ten"),
        ("LOG_PERIOD_SECONDS", "nan"),
        ("LOG_PERIOD_SECONDS", "inf"),
        ("LOG_PERIOD_SECONDS", "1e999"),
        ("LOG_PERIOD_SECONDS", ""),
        ("LOG_PERIOD_SECONDS", " 10"),
        ("LOG_PERIOD_SECONDS", "1_0"),
        ("LOG_PERIOD_SECONDS", "86401"),
        ("POLL_TIMEOUT_SECONDS", "0"),
        ("POLL_TIMEOUT_SECONDS", "0x10"),
        ("CAMERA_TOKEN", "hunter2 with space"),
        ("CAMERA_TOKEN", "hunter2\nX-Injected: 1"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_settings_rejects_bad_values_naming_the_variable(variable: str, value: str | None) -> None:
    env = {"API_BASE_URL": "http://relay:8080"}
    if value is None:
        del env[variable]
    else:
        env[variable] = value
    with pytest.raises(ConfigError) as info:
        CameraSettings.from_env(env)
    message = str(info.value)
    assert message.startswith(variable)
    assert "\n" not in message
    assert "hunter2" not in message  # secrets are never echoed


def test_settings_constructor_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"^LOG_PERIOD_SECONDS"):
        CameraSettings("http://relay", log_period_seconds=0)
    with pytest.raises(ConfigError, match=r"^CAMERA_ID"):
        CameraSettings("http://relay", camera_id="a b")


# ---------------------------------------------------------------------------
# event log
# ---------------------------------------------------------------------------


def test_record_uses_injected_clock_and_rng() -> None:
    times = iter([100.0, 110.0, 120.0])
    log_a = EventLog(clock=lambda: next(times), rng=random.Random(7))
    log_b = EventLog(clock=lambda: 0.0, rng=random.Random(7))
    first = log_a.record()
    assert first["timestamp"] == 100.0
    assert DESCRIPTION.fullmatch(first["description"])
    assert log_a.record()["timestamp"] == 110.0
    assert log_a.record(now=5.5)["timestamp"] == 5.5  # explicit time wins
    assert [e["description"] for e in log_a] == [log_b.record()["description"] for _ in range(3)]
    assert len(log_a) == 3


def test_record_produces_all_three_descriptions() -> None:
    log = EventLog(clock=lambda: 1.0, rng=random.Random(0))
    kinds = set()
    for _ in range(60):
        description = log.record()["description"]
        assert DESCRIPTION.fullmatch(description), description
        kinds.add(description.split()[0])
    assert kinds == {"motion", "user", "brightness"}


def test_slice_is_inclusive_and_keeps_identity() -> None:
    entries = [entry(t) for t in (100, 200, 300, 400, 500)]
    log = EventLog(entries)
    assert log.slice(200, 400) == entries[1:4]
    assert all(a is b for a, b in zip(log.slice(200, 400), entries[1:4], strict=True))
    assert log.slice(500, 500) == [entries[4]]
    assert log.slice(200.5, 299.9) == []
    assert log.slice(400, 200) == []
    assert log.slice(math.nan, 500) == []
    assert log.slice(-MAX_DOUBLE, MAX_DOUBLE) == entries


def test_slice_keeps_log_order_when_timestamps_are_not_sorted() -> None:
    entries = [entry(t) for t in (3, 1, 2, 5, 4, 2)]
    log = EventLog(entries)
    assert [e["timestamp"] for e in log.slice(2, 4)] == [3, 2, 4, 2]


def test_append_rejects_non_finite_timestamps() -> None:
    log = EventLog()
    for bad in (math.nan, math.inf, True):
        with pytest.raises(ValueError, match="timestamp"):
            log.append(entry(bad))
    assert len(log) == 0


@given(
    timestamps=st.lists(st.integers(-5, 5).map(float), max_size=30),
    bounds=st.tuples(st.integers(-6, 6), st.integers(-6, 6)),
)
def test_slice_matches_a_plain_filter(timestamps: list[float], bounds: tuple[int, int]) -> None:
    start, end = bounds
    entries = [entry(t, f"#{i}") for i, t in enumerate(timestamps)]
    expected = [e for e in entries if start <= e["timestamp"] <= end]
    assert EventLog(entries).slice(start, end) == expected
    assert EventLog(sorted(entries, key=lambda e: e["timestamp"])).slice(start, end) == sorted(
        expected, key=lambda e: e["timestamp"]
    )


# ---------------------------------------------------------------------------
# backoff
# ---------------------------------------------------------------------------


def test_backoff_ceilings_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=Ceiling())
    assert [backoff.next_delay() for _ in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0
    ]  # fmt: skip
    assert backoff.attempts == 9
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_backoff_full_jitter_stays_between_zero_and_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(42))
    delays = []
    for _ in range(200):
        ceiling = backoff.ceiling()
        delay = backoff.next_delay()
        assert 0.0 <= delay <= ceiling
        delays.append(delay)
    assert max(delays) > 15  # really grows to the cap...
    assert min(delays[10:]) < 15  # ...and really jitters below it


def test_backoff_does_not_overflow_after_many_attempts() -> None:
    backoff = Backoff(rng=Ceiling())
    for _ in range(5000):
        backoff.next_delay()
    assert backoff.next_delay() == 30.0


def test_backoff_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="base"):
        Backoff(base=0)
    with pytest.raises(ValueError, match="cap"):
        Backoff(base=2, cap=1)


# ---------------------------------------------------------------------------
# command parsing
# ---------------------------------------------------------------------------


def test_parse_command_accepts_the_contract() -> None:
    assert parse_command(b'{"command": "noop"}') == Noop()
    body = orjson.dumps(send_logs("r-1", -MAX_DOUBLE, 1700000000))
    assert parse_command(body) == SendLogs("r-1", -MAX_DOUBLE, 1700000000)
    body = orjson.dumps({**send_logs(None, 1.5, 2.5), "requestId": None, "extra": 1})
    assert parse_command(body) == SendLogs(None, 1.5, 2.5)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"startTimestamp": 1, "endTimestamp": 2}',
        b'{"command": "reboot"}',
        b'{"command": "send_logs", "requestId": "r"}',
        b'{"command": "send_logs", "startTimestamp": "1", "endTimestamp": 2}',
        b'{"command": "send_logs", "startTimestamp": true, "endTimestamp": 2}',
        b'{"command": "send_logs", "startTimestamp": 1, "endTimestamp": null}',
        b'{"command": "send_logs", "requestId": 5, "startTimestamp": 1, "endTimestamp": 2}',
    ],
)
def test_parse_command_rejects_malformed_answers(body: bytes) -> None:
    with pytest.raises(CommandError):
        parse_command(body)


# ---------------------------------------------------------------------------
# camera against a fake relay
# ---------------------------------------------------------------------------


async def test_send_logs_posts_the_exact_inclusive_slice(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    entries = [entry(t, f"event at {t}") for t in (100, 200, 250.5, 150, 300, 400, 401)]
    log = EventLog(entries, clock=lambda: 9999.0, rng=random.Random(1))
    outcomes: list[CommandOutcome] = []
    relay.script(reply({"command": "noop"}), reply(send_logs("req-1", 200, 400)))

    running = start_camera({"CAMERA_TOKEN": "tok-abc"}, event_log=log, on_outcome=outcomes.append)
    await running.camera.wait_for_commands(1)
    await relay.wait_until(lambda r: len(r.polls) >= 3)  # polls again after the upload

    assert [p.camera_id for p in relay.polls] == ["cam-1"] * 3
    assert {p.authorization for p in relay.polls} == {"Bearer tok-abc"}
    [upload] = relay.uploads
    assert upload.camera_id == "cam-1"
    assert upload.content_type == "application/json"
    assert upload.authorization == "Bearer tok-abc"
    # Inclusive at both ends, the camera's order (250.5 before 150 is kept;
    # 150 is out of range), and the start-up record (9999) left out.
    expected = [entry(t, f"event at {t}") for t in (200, 250.5, 300, 400)]
    assert upload.body == orjson.dumps({"requestId": "req-1", "logs": expected})
    assert log.entries[-1]["timestamp"] == 9999.0  # recorded once at start
    assert outcomes == [CommandOutcome(SendLogs("req-1", 200, 400), 4, 200, False)]
    stats = running.camera.stats
    assert (stats.polls, stats.noops, stats.commands_received) == (3, 1, 1)
    assert running.camera.commands_handled == 1
    assert running.sleep.delays == []


async def test_no_authorization_header_without_token(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(reply(send_logs("r", -MAX_DOUBLE, MAX_DOUBLE)))
    running = start_camera()
    await running.camera.wait_for_commands(1)
    assert relay.polls[0].authorization is None
    assert relay.uploads[0].authorization is None
    # Unbounded on both sides: everything, i.e. the one start-up record.
    assert relay.uploads[0].json["logs"] == list(running.camera.event_log)


async def test_command_without_request_id_posts_logs_only(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(reply(send_logs(None, 1, 2)))
    running = start_camera(event_log=EventLog([entry(1), entry(3)], clock=lambda: 50.0))
    await running.camera.wait_for_commands(1)
    assert relay.uploads[0].body == orjson.dumps({"logs": [entry(1)]})


async def test_noop_leads_to_a_new_poll_and_no_upload(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(reply({"command": "noop"}), reply({"command": "noop"}))
    running = start_camera()
    await relay.wait_until(lambda r: len(r.polls) >= 3)
    assert relay.uploads == []
    assert running.camera.stats.noops == 2
    assert running.sleep.delays == []


async def test_instant_noops_are_paced_so_the_camera_cannot_spin(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(*[reply({"command": "noop"})] * 3)
    running = start_camera(min_noop_interval=0.5)
    await running.sleep.wait_for(3)
    assert all(0 < delay <= 0.5 for delay in running.sleep.delays)


async def test_backoff_after_5xx_and_malformed_json_resets_on_success(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(
        fail(500),
        fail(503),
        raw(b"<html>not json</html>"),
        reply(send_logs("r", 0, MAX_DOUBLE)),
        fail(502),
    )
    running = start_camera(backoff=Backoff(base=0.5, cap=30.0, rng=Ceiling()))
    await relay.wait_until(lambda r: len(r.polls) >= 6)
    assert running.sleep.delays == [0.5, 1.0, 2.0, 0.5]  # reset by the accepted result
    assert len(relay.uploads) == 1
    assert running.camera.stats.errors == 4


async def test_backoff_when_the_server_is_unreachable(start_camera: StartCamera) -> None:
    running = start_camera(
        base_url=f"http://127.0.0.1:{unused_port()}",
        backoff=Backoff(base=0.5, cap=4.0, rng=Ceiling()),
    )
    await running.sleep.wait_for(6)
    assert running.sleep.delays[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert running.camera.stats.errors >= 6
    assert running.camera.running


async def test_https_against_a_plain_http_server_says_to_use_http(
    relay: FakeRelay, start_camera: StartCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="camera")
    running = start_camera(base_url=relay.base_url.replace("http://", "https://"))
    await running.sleep.wait_for(1)
    assert relay.polls == []
    assert "the server does not speak TLS: use http:// in API_BASE_URL" in caplog.text


async def test_conflict_backs_off_briefly(
    relay: FakeRelay, start_camera: StartCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="camera")
    relay.script(fail(409, "superseded by a newer poll"), fail(409))
    backoff = Backoff(rng=Ceiling())
    running = start_camera(backoff=backoff, rng=random.Random(3))
    await relay.wait_until(lambda r: len(r.polls) >= 3)
    assert len(running.sleep.delays) == 2
    assert all(1.0 <= delay <= 2.0 for delay in running.sleep.delays)
    assert backoff.attempts == 0  # not the exponential backoff
    assert running.camera.stats.conflicts == 2
    assert "409" in caplog.text
    assert "CAMERA_ID" in caplog.text


async def test_unauthorized_logs_clearly_and_backs_off(
    relay: FakeRelay, start_camera: StartCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="camera")
    relay.script(fail(401), fail(401), reply(send_logs("r", 0, 1)))
    running = start_camera({"CAMERA_TOKEN": "hunter2-token"}, backoff=Backoff(rng=Ceiling()))
    await running.camera.wait_for_commands(1)
    assert running.sleep.delays == [0.5, 1.0]
    assert running.camera.stats.unauthorized == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "401" in errors[0].getMessage()
    assert "CAMERA_TOKEN" in errors[0].getMessage()
    assert "hunter2" not in caplog.text


async def test_404_on_send_logs_is_a_warning_and_polling_goes_on(
    relay: FakeRelay, start_camera: StartCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="camera")
    relay.script(reply(send_logs("gone", 0, MAX_DOUBLE)))
    relay.answer_uploads(fail(404, "unknown requestId 'gone'"))
    outcomes: list[CommandOutcome] = []
    running = start_camera(on_outcome=outcomes.append)
    await relay.wait_until(lambda r: len(r.polls) >= 2)
    assert len(relay.uploads) == 1
    assert [o.status for o in outcomes] == [404]
    assert running.camera.stats.results_rejected == 1
    assert running.camera.commands_handled == 0
    assert running.sleep.delays == []
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "404" in warning.getMessage()
    assert "gone" in warning.getMessage()


async def test_lost_result_is_resent_when_the_command_is_redelivered(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    command = reply(send_logs("again", 0, MAX_DOUBLE))
    relay.script(command, command)  # at-least-once: same requestId again
    relay.answer_uploads(fail(500))
    running = start_camera(backoff=Backoff(rng=Ceiling()))
    await running.camera.wait_for_commands(1)
    assert [u.json["requestId"] for u in relay.uploads] == ["again", "again"]
    assert relay.uploads[0].body == relay.uploads[1].body
    assert running.sleep.delays == [0.5]


async def test_duplicate_answer_is_counted(relay: FakeRelay, start_camera: StartCamera) -> None:
    relay.script(reply(send_logs("d", 0, 1)))
    relay.answer_uploads(reply({"accepted": True, "duplicate": True}))
    running = start_camera()
    await running.camera.wait_for_commands(1)
    assert running.camera.stats.duplicates == 1


async def test_unknown_or_malformed_commands_back_off_without_upload(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(
        reply({"command": "reboot"}),
        reply({"command": "send_logs", "requestId": "r"}),  # no bounds
        reply([1, 2, 3]),
    )
    running = start_camera(backoff=Backoff(rng=Ceiling()))
    await relay.wait_until(lambda r: len(r.polls) >= 4)
    assert running.sleep.delays == [0.5, 1.0, 2.0]
    assert relay.uploads == []


async def test_rejected_upload_4xx_backs_off_and_goes_on(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    relay.script(reply(send_logs("big", 0, MAX_DOUBLE)))
    relay.answer_uploads(fail(413, "body too large"))
    running = start_camera(backoff=Backoff(rng=Ceiling()))
    await relay.wait_until(lambda r: len(r.polls) >= 2)
    assert running.sleep.delays == [0.5]
    assert running.camera.stats.results_rejected == 1


async def test_client_poll_timeout_polls_again_at_once(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    running = start_camera({"POLL_TIMEOUT_SECONDS": "0.05"})
    await running.camera.wait_until(lambda s: s.poll_timeouts >= 2)
    assert running.sleep.delays == []
    assert running.camera.stats.errors == 0


async def test_records_at_start_and_every_period(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    changes = Changes()

    class WatchedLog(EventLog):
        def record(self, now: float | None = None) -> LogEntry:
            recorded = super().record(now)
            changes.notify()
            return recorded

    log = WatchedLog()
    running = start_camera({"LOG_PERIOD_SECONDS": "0.01"}, event_log=log)
    await relay.wait_until(lambda r: len(r.polls) >= 1)
    assert len(log) >= 1  # the start-up record comes before the first poll
    await changes.wait_until(lambda: len(log) >= 4)
    timestamps = [e["timestamp"] for e in log]
    assert timestamps == sorted(timestamps)
    running.camera.stop()
    async with asyncio.timeout(WAIT):
        await running.task
    assert camera_tasks() == []  # recorder and poller were cancelled and awaited


async def test_stop_ends_run_promptly_and_closes_its_own_session(
    relay: FakeRelay,
) -> None:
    settings = CameraSettings(relay.base_url, camera_id="own-session")
    camera = Camera(settings)  # creates (and must close) its own session
    task = asyncio.create_task(camera.run())
    await relay.wait_until(lambda r: len(r.polls) >= 1)  # a poll is held now
    assert camera.running
    camera.stop()
    async with asyncio.timeout(1.0):
        await task
    assert not camera.running
    assert camera_tasks() == []


async def test_stop_before_run_returns_at_once() -> None:
    camera = Camera(CameraSettings("http://127.0.0.1:9"))
    camera.stop()
    async with asyncio.timeout(1.0):
        await camera.run()
    assert camera.stats.polls == 0


async def test_run_cannot_be_started_twice(relay: FakeRelay, start_camera: StartCamera) -> None:
    running = start_camera()
    await relay.wait_until(lambda r: len(r.polls) >= 1)
    with pytest.raises(RuntimeError, match="already running"):
        await running.camera.run()


async def test_cancelling_run_cleans_up(relay: FakeRelay) -> None:
    camera = Camera(CameraSettings(relay.base_url))
    task = asyncio.create_task(camera.run())
    await relay.wait_until(lambda r: len(r.polls) >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert camera_tasks() == []
    assert not camera.running


async def test_a_failing_callback_does_not_stop_the_camera(
    relay: FakeRelay, start_camera: StartCamera
) -> None:
    def explode(outcome: CommandOutcome) -> None:
        raise RuntimeError("callback bug")

    relay.script(reply(send_logs("a", 0, 1)), reply(send_logs("b", 0, 1)))
    running = start_camera(on_outcome=explode)
    await running.camera.wait_for_commands(2)


# ---------------------------------------------------------------------------
# entry point and fleet
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "API_BASE_URL"),
        ({"API_BASE_URL": "http://relay", "LOG_PERIOD_SECONDS": "-3"}, "LOG_PERIOD_SECONDS"),
        ({"API_BASE_URL": "http://relay", "CAMERA_ID": "no spaces"}, "CAMERA_ID"),
    ],
)
def test_main_reports_bad_configuration_and_exits_2(
    environ: dict[str, str], variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([], environ=environ) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert variable in err


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_main_rejects_a_bad_fleet_size(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--fleet", value], environ={"API_BASE_URL": "http://relay"})
    assert info.value.code == 2
    assert "--fleet" in capsys.readouterr().err


async def test_build_fleet_gives_each_camera_its_own_id_and_log(
    session: aiohttp.ClientSession,
) -> None:
    assert fleet_ids(3) == ["cam-00001", "cam-00002", "cam-00003"]
    assert fleet_ids(100000)[-1] == "cam-100000"
    assert fleet_ids(2, first=10001) == ["cam-10001", "cam-10002"]  # a second fleet process
    settings = CameraSettings("http://relay", camera_token="t")
    fleet = build_fleet(settings, 3, session)
    assert [c.camera_id for c in fleet] == fleet_ids(3)
    assert len({id(c.event_log) for c in fleet}) == 3
    assert all(c.settings.camera_token == "t" for c in fleet)


@pytest.mark.process
@pytest.mark.parametrize("args", [[], ["--fleet", "2"]])
async def test_python_m_camera_exits_0_on_sigterm(relay: FakeRelay, args: list[str]) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CAMERA_ID", "CAMERA_TOKEN", "LOG_PERIOD_SECONDS", "POLL_TIMEOUT_SECONDS"}
    }
    env.update(API_BASE_URL=relay.base_url, LOG_LEVEL="INFO", CAMERA_ID="proc-cam")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "camera",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        expected = {"proc-cam"} if not args else set(fleet_ids(2))
        # Generous: interpreter start-up on a loaded machine.
        await relay.wait_until(lambda r: {p.camera_id for p in r.polls} >= expected, 30)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert b"received SIGTERM" in stderr
