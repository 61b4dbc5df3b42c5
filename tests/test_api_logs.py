"""GET /logs over HTTP: bodies, bounds, coalescing, offline and timeout answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientSession, TCPConnector

from tests.conftest import Client, MakeClient, MakeLiveServer, assert_relay_idle, relay_of
from tests.helpers import ScriptedCamera, callers_waiting, camera_polling, running, wait_until

LOGS = [
    {"timestamp": 1700000000, "description": "motion detected at (1, 2)"},
    {"timestamp": 1700000010.5, "description": "user started viewing live video", "zone": [1, 2]},
    {"timestamp": 1700000020, "description": "brightness adjusted 7"},
    {"timestamp": 1700000030, "description": "motion detected at (3, 4)", "extra": {"a": None}},
]


def base_url(client: Client) -> str:
    return str(client.make_url(""))


def camera_for(client: Client, logs: list[dict[str, Any]] = LOGS, **kwargs: Any) -> ScriptedCamera:
    return ScriptedCamera(client.session, base_url(client), logs, **kwargs)


async def start_camera(client: Client, camera: ScriptedCamera) -> asyncio.Task[None]:
    task = asyncio.ensure_future(camera.run())
    await wait_until(camera_polling(relay_of(client), camera.camera_id))
    return task


async def get_json(client: Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    async with client.get(path, params=params) as response:
        return response.status, await response.json(content_type=None)


async def test_logs_returns_every_entry_with_exact_body(client: Client) -> None:
    camera = camera_for(client)
    async with running(await start_camera(client, camera)):
        status, body = await get_json(client, "/logs")
    assert status == 200
    assert body == {
        "cameraId": "default",
        "startTimestamp": None,
        "endTimestamp": None,
        "count": 4,
        "logs": LOGS,
    }
    assert camera.commands[0]["startTimestamp"] == -1.7976931348623157e308
    assert camera.commands[0]["endTimestamp"] == 1.7976931348623157e308


async def test_bounds_are_inclusive_and_echoed_as_numbers(client: Client) -> None:
    async with running(await start_camera(client, camera_for(client))):
        status, body = await get_json(
            client, "/logs", startTimestamp="1700000010.5", endTimestamp="1700000020"
        )
    assert status == 200
    assert body == {
        "cameraId": "default",
        "startTimestamp": 1700000010.5,
        "endTimestamp": 1700000020,
        "count": 2,
        "logs": LOGS[1:3],
    }


#: integer timestamps a double cannot tell apart (2**53 + 1 rounds to 2**53, + 3 to + 4)
BIG = 2**53
BIG_LOGS = [{"timestamp": BIG + i, "description": f"entry {i}"} for i in range(4)]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (BIG + 1, BIG + 1, BIG_LOGS[1:2]),
        (BIG + 1, None, BIG_LOGS[1:]),
        (None, BIG + 1, BIG_LOGS[:2]),
        (BIG + 3, BIG + 3, BIG_LOGS[3:]),
        (BIG + 1, BIG + 2, BIG_LOGS[1:3]),
    ],
)
async def test_integer_bounds_beyond_a_double_compare_exactly(
    client: Client, start: int | None, end: int | None, expected: list[dict[str, Any]]
) -> None:
    camera = camera_for(client, BIG_LOGS)  # filters exactly, as Python compares
    params = {
        name: str(value)
        for name, value in (("startTimestamp", start), ("endTimestamp", end))
        if value is not None
    }
    async with running(await start_camera(client, camera)):
        status, body = await get_json(client, "/logs", **params)
    assert status == 200
    assert body == {
        "cameraId": "default",
        "startTimestamp": start,
        "endTimestamp": end,
        "count": len(expected),
        "logs": expected,
    }
    # The camera gets doubles (the original camera needs numbers it can read as such)
    # that cover the range: none of the caller's entries is left out by the rounding.
    (command,) = camera.commands
    assert type(command["startTimestamp"]) is float
    assert type(command["endTimestamp"]) is float
    assert start is None or command["startTimestamp"] <= start
    assert end is None or command["endTimestamp"] >= end


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"startTimestamp": "1700000000"}, LOGS),
        ({"endTimestamp": "1700000000"}, LOGS[:1]),
        ({"startTimestamp": "1.70000003e9"}, LOGS[3:]),
        ({"startTimestamp": "-5", "endTimestamp": "1e9"}, []),
        ({"startTimestamp": "+1700000020.0", "endTimestamp": "1700000020"}, LOGS[2:3]),
    ],
)
async def test_valid_bound_forms(
    client: Client, params: dict[str, str], expected: list[dict[str, Any]]
) -> None:
    async with running(await start_camera(client, camera_for(client))):
        status, body = await get_json(client, "/logs", **params)
    assert status == 200
    assert body["logs"] == expected
    assert body["count"] == len(expected)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("startTimestamp=nan", "startTimestamp"),
        ("startTimestamp=inf", "startTimestamp"),
        ("endTimestamp=-inf", "endTimestamp"),
        ("startTimestamp=abc", "startTimestamp"),
        ("startTimestamp=", "startTimestamp"),
        ("endTimestamp=%20", "endTimestamp"),
        ("endTimestamp=%201", "endTimestamp"),
        ("startTimestamp=1_000", "startTimestamp"),
        ("startTimestamp=0x10", "startTimestamp"),
        ("endTimestamp=1e999", "endTimestamp"),
        ("startTimestamp=1&startTimestamp=2", "startTimestamp"),
        ("startTimestamp=%D9%A3", "startTimestamp"),  # an Arabic-Indic digit
        ("startTimestamp=5&endTimestamp=3", "startTimestamp"),
        ("cameraId=", "cameraId"),
        ("cameraId=a%20b", "cameraId"),
        ("cameraId=" + "x" * 65, "cameraId"),
        ("cameraId=a&cameraId=b", "cameraId"),
    ],
)
async def test_bad_query_is_400_naming_the_parameter(
    client: Client, query: str, parameter: str
) -> None:
    async with client.get(f"/logs?{query}") as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert parameter in problem["detail"]
    assert set(problem) == {"type", "title", "status", "detail"}
    assert_relay_idle(relay_of(client))


async def test_a_reversed_range_names_both_bounds_as_given(client: Client) -> None:
    """Epoch seconds that differ in their last digits stay distinguishable."""
    query = "startTimestamp=1700000000.5&endTimestamp=1700000000.25"
    async with client.get(f"/logs?{query}") as response:
        assert response.status == 400
        problem = await response.json(content_type=None)
    assert problem["detail"] == (
        "startTimestamp (1700000000.5) must not be greater than endTimestamp (1700000000.25)"
    )


@pytest.mark.parametrize(
    "bound",
    [
        "0" * 4_400 + "12345678901234567890",  # past int()'s 4,300 digits, with its zeros
        "-" + "0" * 5_000 + "9007199254740993",
        "1" + "0" * 300,  # beyond 64 bits: read as a double, as the camera's would be
    ],
    ids=["leading-zeros", "signed-leading-zeros", "301-digits"],
)
async def test_a_long_integer_bound_is_read_not_a_500(client: Client, bound: str) -> None:
    async with client.get("/logs", params={"cameraId": "ghost", "startTimestamp": bound}) as got:
        assert got.status == 503  # read fine; the camera never polled
        problem = await got.json(content_type=None)
    assert problem["type"] == "urn:camrelay:problem:camera-unknown"


async def test_a_plus_read_as_a_space_is_named_in_the_detail(client: Client) -> None:
    """``?startTimestamp=+5`` reaches the server as `` 5``: the 400 says why."""
    async with client.get("/logs?startTimestamp=+1700000000") as response:
        assert response.status == 400
        problem = await response.json(content_type=None)
    assert problem["detail"] == (
        "startTimestamp must be a finite decimal number such as 1700000000 or 1700000000.25, "
        "got ' 1700000000' (a + in a query string is read as a space: write it as %2B, "
        "or leave it out)"
    )
    async with client.get("/logs?startTimestamp=%20x") as response:
        assert "%2B" not in (await response.json(content_type=None))["detail"]


async def test_never_seen_camera_gets_503_at_once(client: Client) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client.get("/logs", params={"cameraId": "ghost"}) as response:
        assert response.status == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert loop.time() - started < 0.5
    assert "ghost" in problem["detail"]


async def test_camera_that_just_left_gets_503_after_connect_timeout(
    make_client: MakeClient,
) -> None:
    client = await make_client(connect_timeout_seconds=0.3)
    async with running(await start_camera(client, camera_for(client))):
        pass  # the camera polled, then went away
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client.get("/logs") as response:
        assert response.status == 503
        assert "Retry-After" in response.headers
        problem = await response.json(content_type=None)
    assert 0.25 <= loop.time() - started < 0.55  # the connect timeout, not twice it
    assert "did not pick up" in problem["detail"]


async def test_camera_that_takes_the_command_and_dies_gives_504(make_client: MakeClient) -> None:
    client = await make_client(response_timeout_seconds=0.3)
    relay = relay_of(client)
    poll = asyncio.ensure_future(get_json(client, "/poll_for_command"))
    await wait_until(camera_polling(relay))
    logs_call = asyncio.ensure_future(get_json(client, "/logs"))
    status, command = await poll  # the camera took it ... and died
    assert status == 200
    status, problem = await logs_call
    assert status == 504
    assert problem["status"] == 504
    async with client.post(
        "/send_logs", json={"requestId": command["requestId"], "logs": LOGS}
    ) as late:
        assert late.status == 404
    # The server keeps serving: a healthy camera now gets through.
    async with running(await start_camera(client, camera_for(client))):
        status, body = await get_json(client, "/logs")
    assert (status, body["logs"]) == (200, LOGS)


async def test_command_on_a_poll_that_hung_up_is_redelivered(client: Client) -> None:
    relay = relay_of(client)
    dropped = asyncio.ensure_future(get_json(client, "/poll_for_command"))
    await wait_until(camera_polling(relay))
    logs_call = asyncio.ensure_future(get_json(client, "/logs", endTimestamp="1700000010.5"))
    await wait_until(lambda: relay.cameras()[0].in_flight == 1)
    dropped.cancel()  # the camera's client gives up on the poll, answer unread
    await asyncio.gather(dropped, return_exceptions=True)
    camera = camera_for(client)
    async with running(asyncio.ensure_future(camera.run())):
        status, body = await logs_call
    assert (status, body["logs"]) == (200, LOGS[:2])
    assert len(camera.commands) == 1  # the same command, delivered again
    assert camera.commands[0]["endTimestamp"] == 1700000010.5


async def test_caller_that_disconnects_is_forgotten(make_live_server: MakeLiveServer) -> None:
    # Served as `python -m server` serves it: a hang-up cancels the handler at once.
    server = await make_live_server(response_timeout_seconds=30)
    relay = server.relay
    async with ClientSession() as http:
        poll = asyncio.ensure_future(http.get(f"{server.url}/poll_for_command"))
        await wait_until(camera_polling(relay))
        leaving = asyncio.ensure_future(http.get(f"{server.url}/logs"))
        command = await (await poll).json()
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        # Far sooner than the 30 s response timeout: the command is dropped, not timed out.
        await wait_until(lambda: relay.cameras()[0].in_flight == 0)
        result = {"requestId": command["requestId"], "logs": LOGS}
        async with http.post(f"{server.url}/send_logs", json=result) as late:
            assert late.status == 404
        async with http.get(f"{server.url}/metrics") as response:
            metrics = await response.text()
    assert "camrelay_commands_abandoned_total 1.0" in metrics
    assert "camrelay_commands_timed_out_total 0.0" in metrics
    assert 'camrelay_logs_requests_total{status="cancelled"} 1.0' in metrics
    assert_relay_idle(relay)


async def test_queued_caller_that_disconnects_is_never_sent(client: Client) -> None:
    relay = relay_of(client)
    async with running(asyncio.ensure_future(get_json(client, "/poll_for_command"))) as poll:
        await wait_until(camera_polling(relay))
        first = asyncio.ensure_future(get_json(client, "/logs"))
        await poll
    # The camera is busy with the first command: the next caller queues, then leaves.
    leaving = asyncio.ensure_future(get_json(client, "/logs", startTimestamp="5"))
    await wait_until(callers_waiting(relay, 1))
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    await wait_until(callers_waiting(relay, 0))
    _status, command = await get_json(client, "/poll_for_command")  # redelivery only
    async with client.post("/send_logs", json={"requestId": command["requestId"], "logs": LOGS}):
        pass
    assert (await first)[1]["logs"] == LOGS
    async with running(asyncio.ensure_future(get_json(client, "/poll_for_command"))) as held:
        await wait_until(camera_polling(relay))
        assert not held.done()  # the departed caller's work was never sent


async def test_200_parallel_callers_each_get_exactly_their_logs(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server()
    logs = [{"timestamp": 1700000000 + i, "description": f"event {i}"} for i in range(300)]

    async def slow_first_round_trip() -> None:
        # A real camera's round trip outlasts the burst's arrival; here the camera
        # shares the test's loop, so it waits until the rest of the burst has queued.
        if len(camera.commands) == 1:
            await wait_until(callers_waiting(server.relay, 199))

    async def call(users: ClientSession, i: int) -> tuple[int, dict[str, Any]]:
        # Odd callers ask for a window, even ones for everything up to a point.
        if i % 2:
            params = {"startTimestamp": str(1700000000 + i), "endTimestamp": str(1700000050 + i)}
        else:
            params = {"endTimestamp": str(1700000250 - i)}
        async with users.get(f"{server.url}/logs", params=params) as response:
            return response.status, await response.json()

    # Like curl_parallel: every caller on its own connection, none held back by a pool.
    async with ClientSession(connector=TCPConnector(limit=0)) as http:
        camera = ScriptedCamera(http, server.url, logs, before_answer=slow_first_round_trip)
        async with running(asyncio.ensure_future(camera.run())):
            await wait_until(camera_polling(server.relay))
            results = await asyncio.gather(*(call(http, i) for i in range(200)))
    for i, (status, body) in enumerate(results):
        assert status == 200
        if i % 2:
            expected = logs[i : i + 51]
            assert body["startTimestamp"] == 1700000000 + i
        else:
            expected = logs[: 250 - i + 1]
            assert body["startTimestamp"] is None
        assert body["logs"] == expected, f"caller {i}"
        assert body["count"] == len(expected)
    # One command for the first caller, one shared by the 199 who came meanwhile.
    assert len(camera.commands) == 2
    assert camera.commands[1]["startTimestamp"] == -1.7976931348623157e308
    assert camera.commands[1]["endTimestamp"] == 1700000050 + 199


async def test_original_camera_without_request_ids_serves_parallel_callers(
    client: Client,
) -> None:
    camera = camera_for(client, LOGS, original=True, pause=0.01)
    ranges = [("1700000000", "1700000000"), ("1700000010", "1700000030"), (None, "1700000015")]

    async def call(start: str | None, end: str) -> tuple[int, dict[str, Any]]:
        params = {"endTimestamp": end} | ({"startTimestamp": start} if start else {})
        return await get_json(client, "/logs", **params)

    async with running(await start_camera(client, camera)):
        results = await asyncio.gather(*(call(s, e) for s, e in ranges))
    assert [status for status, _ in results] == [200, 200, 200]
    assert [body["logs"] for _, body in results] == [LOGS[:1], LOGS[1:4], LOGS[:2]]
    assert all(status == 200 for status in camera.post_statuses)


async def test_original_camera_empty_post_on_noop_answers_nothing(
    make_client: MakeClient,
) -> None:
    client = await make_client(poll_hold_seconds=0.05)
    camera = camera_for(client, [], original=True, pause=0.01)
    async with running(asyncio.ensure_future(camera.run())):
        await wait_until(lambda: len(camera.post_statuses) >= 2)
    assert set(camera.post_statuses) == {404}
    assert camera.commands == []


async def test_cameras_are_isolated_by_id(client: Client) -> None:
    cam_a = camera_for(client, LOGS[:1], camera_id="cam-a")
    cam_b = camera_for(client, LOGS[1:], camera_id="cam_b.2")
    async with (
        running(await start_camera(client, cam_a)),
        running(await start_camera(client, cam_b)),
    ):
        (_, body_a), (_, body_b) = await asyncio.gather(
            get_json(client, "/logs", cameraId="cam-a"),
            get_json(client, "/logs", cameraId="cam_b.2"),
        )
    assert (body_a["cameraId"], body_a["logs"]) == ("cam-a", LOGS[:1])
    assert (body_b["cameraId"], body_b["logs"]) == ("cam_b.2", LOGS[1:])


async def test_full_queue_is_503_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(max_waiting_per_camera=1)
    relay = relay_of(client)
    async with running(asyncio.ensure_future(get_json(client, "/poll_for_command"))) as poll:
        await wait_until(camera_polling(relay))
        first = asyncio.ensure_future(get_json(client, "/logs"))
        await poll  # the camera took the first caller's command ...
    queued = asyncio.ensure_future(get_json(client, "/logs"))
    await wait_until(callers_waiting(relay, 1))  # ... one more caller fills the queue
    async with client.get("/logs") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert "already waiting" in problem["detail"]
    for task in (first, queued):
        task.cancel()
    await asyncio.gather(first, queued, return_exceptions=True)
