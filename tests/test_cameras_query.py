"""``GET /cameras``: filter by prefix and state, cursor paging, and the answer without them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from server.cluster import ClusterUnavailable
from server.http import camera_list
from server.relay import CameraStatus, Relay, RelayConfig
from tests.conftest import Client, MakeClient, relay_of
from tests.helpers import camera_polling, running, wait_until
from tests.sim.loop import run_virtual

CONFIG = RelayConfig(poll_hold_seconds=5.0, connect_timeout_seconds=0.05)
ONLINE = ["a-1", "a-2", "a-3", "b-1", "b.2", "c"]
OFFLINE = ["a-0", "b-0"]


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """Six cameras polling and two that polled once and left (offline)."""
    relay = Relay(CONFIG)
    gone = [asyncio.create_task(relay.poll(camera_id)) for camera_id in OFFLINE]
    held = [asyncio.create_task(relay.poll(camera_id)) for camera_id in ONLINE]
    await wait_until(lambda: all(camera_polling(relay, c)() for c in ONLINE + OFFLINE))
    for task in gone:
        task.cancel()
    await asyncio.gather(*gone, return_exceptions=True)
    await wait_until(lambda: not any(s.online for s in relay.cameras() if s.camera_id in OFFLINE))
    yield relay
    relay.close()
    await asyncio.gather(*held)


def ids(statuses: list[CameraStatus]) -> list[str]:
    return [status.camera_id for status in statuses]


async def test_relay_filters_and_pages_in_id_order(relay: Relay) -> None:
    everyone = sorted(ONLINE + OFFLINE)
    assert ids(relay.cameras()) == everyone
    assert ids(relay.cameras(prefix="a-")) == ["a-0", "a-1", "a-2", "a-3"]
    assert ids(relay.cameras(prefix="b")) == ["b-0", "b-1", "b.2"]
    assert ids(relay.cameras(prefix="zz")) == []
    assert ids(relay.cameras(online=True)) == sorted(ONLINE)
    assert ids(relay.cameras(online=False)) == ["a-0", "b-0"]
    assert ids(relay.cameras(prefix="a", online=False)) == ["a-0"]
    assert ids(relay.cameras(limit=3)) == everyone[:3]
    assert ids(relay.cameras(after="a-3", limit=3)) == ["b-0", "b-1", "b.2"]
    assert ids(relay.cameras(after="a-1", prefix="a-")) == ["a-2", "a-3"]
    # A cursor that names no camera (it left) still resumes at the right place.
    assert ids(relay.cameras(after="a-25", limit=2)) == ["a-3", "b-0"]
    assert ids(relay.cameras(after="0", prefix="b", online=True)) == ["b-1", "b.2"]
    assert ids(relay.cameras(after="c")) == []


async def test_no_parameters_keeps_the_answer_as_it_was(make_client: MakeClient) -> None:
    client = await make_client()
    async with running(asyncio.ensure_future(client.get("/poll_for_command?cameraId=cam"))):
        await wait_until(camera_polling(relay_of(client), "cam"))
        async with client.get("/cameras") as response:
            body = await response.json()
    assert list(body) == ["cameras"]
    assert [camera["cameraId"] for camera in body["cameras"]] == ["cam"]


async def page(client: Client, **params: str) -> dict[str, object]:
    async with client.get("/cameras", params=params) as response:
        assert response.status == 200, await response.text()
        body: dict[str, object] = await response.json()
    return body


async def test_pages_follow_next_to_the_end_with_fleet_totals(make_client: MakeClient) -> None:
    client = await make_client()
    relay = relay_of(client)
    names = ["cam-1", "cam-2", "cam-3", "door"]
    polls = [
        asyncio.ensure_future(client.get(f"/poll_for_command?cameraId={name}")) for name in names
    ]
    try:
        await wait_until(lambda: all(camera_polling(relay, n)() for n in names))
        first = await page(client, prefix="cam-", limit="2")
        totals = {"known": 4, "online": 4, "polling": 4, "waiting": 0, "inFlight": 0}
        assert [c["cameraId"] for c in first["cameras"]] == ["cam-1", "cam-2"]  # type: ignore[attr-defined]
        assert (first["next"], first["totals"]) == ("cam-2", totals)
        second = await page(client, prefix="cam-", limit="2", after="cam-2")
        assert [c["cameraId"] for c in second["cameras"]] == ["cam-3"]  # type: ignore[attr-defined]
        assert second["next"] is None
        exact = await page(client, limit="4")
        assert exact["next"] is None  # no empty page after a full last one
        offline = await page(client, online="false")
        assert (offline["cameras"], offline["next"], offline["totals"]) == ([], None, totals)
    finally:
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("prefix=a%20b", "prefix must be up to 64 characters of A-Z a-z 0-9 . _ -, got 'a b'"),
        ("prefix=" + "x" * 65, "prefix must be up to 64 characters of A-Z a-z 0-9 . _ -, got"),
        ("online=yes", "online must be true or false, got 'yes'"),
        ("online=", "online must be true or false, got ''"),
        ("limit=0", "limit must be a whole number from 1 to 1000, got '0'"),
        ("limit=1001", "limit must be a whole number from 1 to 1000, got '1001'"),
        ("limit=-1", "limit must be a whole number from 1 to 1000, got '-1'"),
        ("limit=2.5", "limit must be a whole number from 1 to 1000, got '2.5'"),
        ("after=", "after must be a camera id (1-64 characters of A-Z a-z 0-9 . _ -), usually"),
        ("limit=1&limit=2", "limit must be given at most once, got 2 values"),
    ],
)
async def test_bad_parameters_are_400_problems_that_say_what_to_fix(
    client: Client, query: str, detail: str
) -> None:
    async with client.get(f"/cameras?{query}") as response:
        assert (response.status, response.content_type) == (400, "application/problem+json")
        problem = await response.json(content_type=None)
    assert problem["type"] == "urn:camrelay:problem:invalid-parameter"
    assert problem["detail"].startswith(detail)


async def test_auth_comes_before_parameter_checks(make_client: MakeClient) -> None:
    client = await make_client(api_token="t")
    async with client.get("/cameras?limit=0") as response:
        assert response.status == 401


@pytest.mark.parametrize("online", [None, True, False])
@pytest.mark.parametrize("prefix", ["", "a", "b-", "zz"])
async def test_walking_the_cursor_visits_every_match_once(
    relay: Relay, online: bool | None, prefix: str
) -> None:
    wanted = ids(relay.cameras(prefix=prefix, online=online))
    for limit in range(1, len(ONLINE + OFFLINE) + 2):
        seen: list[str] = []
        after = None
        while True:
            # As the view does: one more than the page tells whether another follows.
            found = ids(relay.cameras(prefix, online, after, limit + 1))
            seen += found[:limit]
            if len(found) <= limit:
                break
            after = found[limit - 1]
        assert seen == wanted, (limit, prefix, online)


@pytest.mark.parametrize("seed", range(5))
def test_the_listing_follows_cameras_that_join_leave_and_come_back(seed: int) -> None:
    """Cameras join in random order, are handed over, hang up and are forgotten by the
    sweep, and come back: after every step the list, every prefix and every page walk
    name exactly the cameras held, in id order."""
    chooser = random.Random(seed)
    config = RelayConfig(
        poll_hold_seconds=600.0, connect_timeout_seconds=0.05, session_retention_seconds=5.0
    )
    pool = [f"{chooser.choice('abc')}-{index:03d}" for index in range(60)]

    def check(relay: Relay) -> None:
        held = sorted(relay.camera_ids())
        assert ids(relay.cameras()) == held
        for prefix in ("a", "b-0", "c-05", "z"):
            assert ids(relay.cameras(prefix)) == [c for c in held if c.startswith(prefix)]
        seen: list[str] = []
        after = None
        while page := ids(relay.cameras(after=after, limit=7)):
            seen += page
            after = page[-1]
        assert seen == held

    async def scenario() -> None:
        relay = Relay(config)
        polls: dict[str, asyncio.Task[object]] = {}
        forgotten = handed_over = 0
        for _ in range(400):
            camera_id = chooser.choice(pool)
            action = chooser.random()
            if camera_id not in polls or polls[camera_id].done():
                polls[camera_id] = asyncio.create_task(relay.poll(camera_id))
            elif action < 0.3:
                handed_over += relay.hand_over(camera_id, superseded=False) is not None
            elif action < 0.6:
                polls[camera_id].cancel()  # hangs up: offline, then forgotten by a sweep
            elif action < 0.65:
                await asyncio.sleep(config.session_retention_seconds + 1)
                forgotten += await relay.sweep()
            await asyncio.sleep(0)
            check(relay)
        # Every kind of change happened, and the fleet did not just empty out.
        assert forgotten > 0
        assert handed_over > 0
        assert len(relay.camera_ids()) > 10
        relay.close()
        await asyncio.gather(*polls.values(), return_exceptions=True)

    run_virtual(scenario, seed)


# ---------------------------------------------------------------- a fleet of many slices


#: slices of this many cameras here (1,000 in the server): the tests' fleets stay small
SLICE = 50


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(camera_list, "SLICE", SLICE)


@contextlib.asynccontextmanager
async def fleet_of(relay: Relay, count: int) -> AsyncIterator[list[str]]:
    """``count`` cameras, each holding a poll, for the block."""
    names = [f"cam-{index:05d}" for index in range(count)]
    polls = [asyncio.ensure_future(relay.poll(name)) for name in names]
    try:
        await wait_until(lambda: relay.stats().polls_held == count)
        yield names
    finally:
        for poll in polls:
            poll.cancel()
        await asyncio.gather(*polls, return_exceptions=True)


def slices_asked(
    monkeypatch: pytest.MonkeyPatch,
    relay: Relay,
    failing_after: str | None = None,
    failure: Exception | None = None,
) -> list[str | None]:
    """The ``after`` of each ``list_cameras`` call from now on (the one after
    ``failing_after`` raises ``failure``, by default ``ClusterUnavailable``)."""
    asked: list[str | None] = []
    listed = relay.list_cameras

    async def list_cameras(
        prefix: str = "",
        online: bool | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[CameraStatus]:
        asked.append(after)
        assert limit == SLICE, "the whole fleet is never read at once"
        if failing_after is not None and after == failing_after:
            raise failure or ClusterUnavailable("the cluster's Redis is unreachable")
        return await listed(prefix, online, after, limit)

    monkeypatch.setattr(relay, "list_cameras", list_cameras)
    return asked


async def test_a_fleet_of_many_slices_is_written_slice_by_slice_as_other_requests_answer(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    relay = relay_of(client)
    async with fleet_of(relay, 20 * SLICE + 7) as names:
        asked = slices_asked(monkeypatch, relay)
        async with client.get("/cameras") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert "Content-Length" not in response.headers  # written as it is read
            first = await response.content.readany()
            async with client.get("/healthz") as health:
                assert health.status == 200
            asked_by_then = len(asked)
            rest = await response.read()
    assert asked_by_then < 21, "a request sent once the list began answers before it ends"
    assert asked == [None, *(f"cam-{n * SLICE - 1:05d}" for n in range(1, 21))]
    body = orjson.loads(first + rest)
    assert list(body) == ["cameras"]
    assert [camera["cameraId"] for camera in body["cameras"]] == names
    assert body["cameras"][-1] == {
        "cameraId": names[-1],
        "online": True,
        "lastSeen": body["cameras"][-1]["lastSeen"],
        "polling": True,
        "waiting": 0,
        "inFlight": 0,
    }


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (None, "the camera list was cut short: the cluster's Redis is unreachable"),
        (ValueError("a bug"), "the camera list was cut short\nTraceback"),
    ],
    ids=["relay-error", "any-other"],
)
async def test_a_list_that_fails_midway_is_cut_short_and_logged_not_given_a_problem(
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception | None,
    logged: str,
) -> None:
    client = await make_client()
    relay = relay_of(client)
    async with fleet_of(relay, 3 * SLICE) as names:
        asked = slices_asked(monkeypatch, relay, names[2 * SLICE - 1], failure)
        with caplog.at_level(logging.WARNING, logger="camrelay"):
            async with client.get("/cameras") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
    assert asked == [None, names[SLICE - 1], names[2 * SLICE - 1]]
    assert logged in caplog.text
    assert "Internal Server Error" not in caplog.text


async def test_a_head_of_a_fleet_of_many_slices_gets_the_headers_and_no_body(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()
    relay = relay_of(client)
    async with fleet_of(relay, 3 * SLICE):
        asked = slices_asked(monkeypatch, relay)
        async with client.head("/cameras") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert await response.read() == b""
        assert asked == [None], "one slice read, to know the answer is not one plain body"
        async with client.get("/healthz") as health:  # the same connection, still sound
            assert health.status == 200
            assert (await health.json())["status"] == "ok"
