"""The bounded registry over HTTP: MAX_CAMERAS, the refusal delay, retention."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from server.observe.events import EventLogger
from tests.conftest import Client, MakeClient, relay_of
from tests.helpers import ScriptedCamera, camera_polling, running, scrape, wait_until

REFUSAL_DELAY = 0.2
LOGS = [{"timestamp": 1.0, "description": "motion"}]


async def poll(client: Client, camera_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with client.get("/poll_for_command", params={"cameraId": camera_id}) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


async def test_a_new_id_past_max_cameras_gets_503_after_a_delay_until_a_slot_frees(
    make_client: MakeClient,
) -> None:
    client = await make_client(
        max_cameras=3,
        camera_refusal_delay_seconds=REFUSAL_DELAY,
        poll_hold_seconds=0.05,
        connect_timeout_seconds=0.1,
    )
    relay = relay_of(client)
    # cam-a answers a command (kept for CAMERA_RETENTION_SECONDS); cam-b and cam-c only poll.
    camera = ScriptedCamera(client.session, str(client.make_url("/")), LOGS, camera_id="cam-a")
    async with running(asyncio.ensure_future(camera.run())):
        await wait_until(camera_polling(relay, "cam-a"))
        async with client.get("/logs", params={"cameraId": "cam-a"}) as response:
            assert response.status == 200
            assert (await response.json())["logs"] == LOGS
    for camera_id in ("cam-b", "cam-c"):
        assert (await poll(client, camera_id))[:2] == (200, {"command": "noop"})

    started = time.monotonic()
    status, problem, headers = await poll(client, "cam-d")
    assert time.monotonic() - started >= REFUSAL_DELAY
    assert status == 503
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Retry-After"] == "30"
    assert problem["type"] == "urn:camrelay:problem:registry-full"
    assert "already tracks 3 cameras" in problem["detail"]
    assert "MAX_CAMERAS" in problem["detail"]
    assert relay.session("cam-d") is None
    assert (await poll(client, "cam-a"))[:2] == (200, {"command": "noop"})  # known: served
    assert (await scrape(client))["camrelay_cameras_refused_total"] == 1

    # cam-b and cam-c never answered a command: forgotten once unseen past hold + connect.
    await wait_until(lambda: relay.session("cam-c") is None, timeout=5)
    assert (await poll(client, "cam-d"))[:2] == (200, {"command": "noop"})
    assert relay.session("cam-d") is not None
    assert relay.session("cam-a") is not None  # answered: kept far longer


async def test_refused_polls_are_logged_at_most_once_a_second(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(
        max_cameras=1, camera_refusal_delay_seconds=0.01, poll_hold_seconds=0.05
    )
    assert (await poll(client, "first"))[0] == 200
    caplog.set_level(logging.WARNING, logger="camrelay.relay")
    answers = await asyncio.gather(*(poll(client, f"new-{n}") for n in range(5)))
    assert [status for status, _, _ in answers] == [503] * 5
    assert (await scrape(client))["camrelay_cameras_refused_total"] == 5
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals
    assert refusals[0].startswith("refused a poll from new camera new-0:")


def test_the_refusal_line_counts_the_lines_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    events = EventLogger(clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="camrelay.relay")
    for n in range(5):
        events.camera_refused(f"new-{n}", 1)
    now[0] += 0.99
    events.camera_refused("new-5", 1)
    now[0] += 0.01
    events.camera_refused("new-6", 1)
    assert [r.getMessage() for r in caplog.records] == [
        "refused a poll from new camera new-0: the registry holds 1 cameras (MAX_CAMERAS)",
        "refused a poll from new camera new-6 (and 5 more refused not logged): "
        "the registry holds 1 cameras (MAX_CAMERAS)",
    ]


def test_online_lines_are_capped_per_second_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    events = EventLogger(clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="camrelay.relay")
    for n in range(25):
        events.camera_connected(f"cam-{n}")
    now[0] += 1.0
    events.camera_connected("cam-25")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:20] == [f"camera cam-{n} online" for n in range(20)]
    assert lines[20:] == ["camera cam-25 online (and 5 more cameras online not logged)"]


@pytest.mark.parametrize(
    ("event", "line", "more"),
    [
        (
            lambda events, n: events.command_delivered("cam", f"r{n}", 1, True),
            "command r{n} redelivered to camera cam",
            "redeliveries",
        ),
        (
            lambda events, n: events.command_timed_out("cam", f"r{n}", 1),
            "command r{n} to camera cam expired unanswered; its 1 caller(s) were answered",
            "commands expired",
        ),
        (
            lambda events, n: events.command_abandoned("cam", f"r{n}"),
            "command r{n} to camera cam abandoned: every caller left",
            "abandoned",
        ),
        (
            lambda events, n: events.upload_died(f"cam-{n}"),
            "upload from camera cam-{n} broke off mid-body: its result is lost",
            "uploads broken off",
        ),
    ],
    ids=["redelivered", "expired", "abandoned", "upload died"],
)
def test_lines_a_client_can_cause_at_will_are_capped_per_second(
    caplog: pytest.LogCaptureFixture,
    event: Callable[[EventLogger, int], None],
    line: str,
    more: str,
) -> None:
    """With auth off, a client polling without answering, hanging up mid-body or
    leaving at once causes these as fast as it likes."""
    now = [100.0]
    events = EventLogger(clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="camrelay.relay")
    for n in range(25):
        event(events, n)
    now[0] += 1.0
    event(events, 25)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:20] == [line.format(n=n) for n in range(20)]
    assert lines[20:] == [line.format(n=25) + f" (and 5 more {more} not logged)"]
