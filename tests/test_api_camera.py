"""The camera's endpoints over HTTP: polling, results, and every malformed result."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
import pytest

from tests.conftest import Client, MakeClient, relay_of
from tests.helpers import camera_polling, running, wait_until

LOGS = [{"timestamp": 10, "description": "a"}, {"timestamp": 20.5, "description": "b", "k": [1]}]


async def poll_json(client: Client, **params: str) -> tuple[int, dict[str, Any]]:
    async with client.get("/poll_for_command", params=params) as response:
        return response.status, await response.json(content_type=None)


async def deliver_command(
    client: Client, **logs_params: str
) -> tuple[dict[str, Any], asyncio.Task[Any]]:
    """A held poll picks up one /logs call; returns the command and the caller's task."""
    relay = relay_of(client)
    poll = asyncio.ensure_future(poll_json(client))
    await wait_until(camera_polling(relay))

    async def call() -> tuple[int, dict[str, Any]]:
        async with client.get("/logs", params=logs_params) as response:
            return response.status, await response.json(content_type=None)

    caller = asyncio.ensure_future(call())
    status, command = await poll
    assert status == 200
    return command, caller


async def post(
    client: Client, body: bytes, *, content_type: str | None = "application/json", **params: str
) -> tuple[int, dict[str, Any], str]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with client.post(
        "/send_logs",
        data=io.BytesIO(body),
        headers=headers,
        params=params,
        skip_auto_headers=["Content-Type"],
    ) as response:
        return response.status, await response.json(content_type=None), response.content_type


async def test_poll_answers_noop_after_the_hold(make_client: MakeClient) -> None:
    client = await make_client(poll_hold_seconds=0.1)
    assert await poll_json(client) == (200, {"command": "noop"})
    statuses = relay_of(client).cameras()
    assert [(s.camera_id, s.online, s.polling) for s in statuses] == [("default", True, False)]


async def test_command_body_names_both_bounds(client: Client) -> None:
    command, caller = await deliver_command(client, startTimestamp="15", endTimestamp="25")
    assert set(command) == {"command", "requestId", "startTimestamp", "endTimestamp"}
    assert command["command"] == "send_logs"
    assert (command["startTimestamp"], command["endTimestamp"]) == (15, 25)
    assert 1 <= len(command["requestId"]) <= 64
    status, receipt, _ = await post(
        client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})
    )
    assert (status, receipt) == (
        200,
        {"status": "accepted", "requestId": command["requestId"], "duplicate": False, "count": 2},
    )
    assert await caller == (
        200,
        {
            "cameraId": "default",
            "startTimestamp": 15,
            "endTimestamp": 25,
            "count": 1,
            "logs": LOGS[1:],
        },
    )


async def test_older_poll_gets_409_problem(client: Client) -> None:
    relay = relay_of(client)
    older = asyncio.ensure_future(poll_json(client))
    await wait_until(camera_polling(relay))
    async with running(asyncio.ensure_future(poll_json(client))):
        status, problem = await older
        assert status == 409
        assert problem["status"] == 409
        assert "newer poll" in problem["detail"]
        await wait_until(camera_polling(relay))


async def test_duplicate_result_is_200_and_the_first_result_wins(client: Client) -> None:
    command, caller = await deliver_command(client)
    first = orjson.dumps({"requestId": command["requestId"], "logs": LOGS[:1]})
    repeat = orjson.dumps({"requestId": command["requestId"], "logs": LOGS})
    assert (await post(client, first))[0] == 200
    status, receipt, _ = await post(client, repeat)
    assert (status, receipt["duplicate"], receipt["status"]) == (200, True, "duplicate")
    assert (await caller)[1]["logs"] == LOGS[:1]


async def test_result_without_request_id_answers_the_unanswered_command(client: Client) -> None:
    command, caller = await deliver_command(client, endTimestamp="10")
    status, receipt, _ = await post(client, orjson.dumps({"logs": LOGS}))
    assert (status, receipt["requestId"]) == (200, command["requestId"])
    assert (await caller)[1]["logs"] == LOGS[:1]
    status, problem, content_type = await post(client, orjson.dumps({"logs": LOGS}))
    assert (status, content_type) == (404, "application/problem+json")
    assert "no command awaiting a result" in problem["detail"]


async def test_null_request_id_counts_as_missing(client: Client) -> None:
    _, caller = await deliver_command(client)
    status, _, _ = await post(client, orjson.dumps({"requestId": None, "logs": LOGS}))
    assert status == 200
    assert (await caller)[1]["logs"] == LOGS


async def test_result_from_another_camera_is_404_and_changes_nothing(client: Client) -> None:
    command, caller = await deliver_command(client)
    body = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 1}]})
    status, problem, _ = await post(client, body, cameraId="intruder")
    assert status == 404
    assert problem["status"] == 404
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[1]["logs"] == LOGS


async def test_unknown_request_id_is_404(client: Client) -> None:
    command, caller = await deliver_command(client)
    status, problem, _ = await post(client, orjson.dumps({"requestId": "nope", "logs": []}))
    assert status == 404
    assert "'nope'" in problem["detail"]
    good = orjson.dumps({"requestId": command["requestId"], "logs": LOGS})
    assert (await post(client, good))[0] == 200
    assert (await caller)[1]["logs"] == LOGS


async def test_result_from_a_camera_with_no_work_is_404_before_its_body(client: Client) -> None:
    await poll_json_after_hold(client)
    status, problem, _ = await post(client, orjson.dumps({"requestId": "nope", "logs": []}))
    assert status == 404
    assert "no command awaiting a result" in problem["detail"]


async def poll_json_after_hold(client: Client) -> None:
    relay = relay_of(client)
    async with running(asyncio.ensure_future(poll_json(client))):
        await wait_until(camera_polling(relay))


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "valid JSON"),
        (b"{not json", "valid JSON"),
        (b"[]", "JSON object"),
        (b"null", "JSON object"),
        (b'{"requestId": null}', "logs is required"),
        (b'{"logs": {}}', "logs must be an array"),
        (b'{"logs": "x"}', "logs must be an array"),
        (b'{"logs": [1]}', "logs[0] must be an object"),
        (b'{"logs": [{"description": "x"}]}', "logs[0] has no timestamp"),
        (b'{"logs": [{"timestamp": 1}, {"timestamp": "1"}]}', "logs[1].timestamp"),
        (b'{"logs": [{"timestamp": true}]}', "logs[0].timestamp"),
        (b'{"logs": [{"timestamp": null}]}', "logs[0].timestamp"),
        (b'{"logs": [{"timestamp": 1e999}]}', "beyond the range of a double"),
        (b'{"logs": [{"timestamp": 1, "x": -1e400}]}', "send such a value as a string"),
        (b'{"logs": [{"timestamp": NaN}]}', "valid JSON"),
        (b'{"requestId": 5, "logs": []}', "requestId must be a string"),
        (b'{"requestId": ["a"], "logs": []}', "requestId must be a string"),
    ],
)
async def test_malformed_result_is_400_and_loses_nothing(
    client: Client, body: bytes, detail: str
) -> None:
    command, caller = await deliver_command(client)
    status, problem, content_type = await post(client, body)
    assert (status, content_type) == (400, "application/problem+json")
    assert detail in problem["detail"]
    # The command is still open: the good result that follows is accepted.
    good = orjson.dumps({"requestId": command["requestId"], "logs": LOGS})
    assert (await post(client, good))[0] == 200
    assert (await caller)[1]["logs"] == LOGS


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 415),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=utf-8", 404),
        ("Application/JSON", 404),
    ],
)
async def test_content_type_must_be_json(
    client: Client, content_type: str | None, status: int
) -> None:
    body = orjson.dumps({"requestId": "abc", "logs": []})
    got, problem, _ = await post(client, body, content_type=content_type)
    assert got == status
    if status == 415:
        assert "application/json" in problem["detail"]


async def test_body_over_the_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_upload_bytes=1024)
    command, caller = await deliver_command(client)
    big = orjson.dumps(
        {"requestId": command["requestId"], "logs": [{"timestamp": 1, "d": "x" * 2000}]}
    )
    status, problem, content_type = await post(client, big)
    assert (status, content_type) == (413, "application/problem+json")
    assert "MAX_UPLOAD_BYTES (1024 bytes)" in problem["detail"]
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[1]["logs"] == LOGS


async def test_chunked_body_over_the_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_upload_bytes=1024)
    command, caller = await deliver_command(client)

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    async with client.post(
        "/send_logs", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        assert response.content_type == "application/problem+json"
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[1]["logs"] == LOGS


@pytest.mark.parametrize("size", [200, 150_000])
async def test_a_bad_entry_before_an_unknown_request_id_is_400_when_the_body_is_all_read(
    client: Client, size: int
) -> None:
    """Chunked, or longer than is read in one go: once the rest of the body is in hand
    when its requestId is read, the body (400) is checked before the look-up (404)."""
    command, caller = await deliver_command(client)
    pad = [{"timestamp": 1, "d": "x" * 100}] * (size // 120)
    body = orjson.dumps({"logs": [{"timestamp": "x"}, *pad], "requestId": "f" * 32})

    async def one_piece() -> Any:
        yield body

    for data in (one_piece(), body):
        async with client.post(
            "/send_logs", data=data, headers={"Content-Type": "application/json"}
        ) as response:
            problem = await response.json(content_type=None)
        assert (response.status, response.content_type) == (400, "application/problem+json")
        assert problem["detail"] == "logs[0].timestamp must be a finite number, got string"
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[1]["logs"] == LOGS


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_max_upload_bytes_is_accepted(
    make_client: MakeClient, chunked: bool
) -> None:
    """413 is for a body over the limit: one of exactly that size is taken."""
    client = await make_client(max_upload_bytes=1024)
    command, caller = await deliver_command(client)
    entry = {"timestamp": 1, "d": ""}
    unpadded = len(orjson.dumps({"requestId": command["requestId"], "logs": [entry]}))
    entry["d"] = "x" * (1024 - unpadded)
    body = orjson.dumps({"requestId": command["requestId"], "logs": [entry]})
    assert len(body) == 1024

    async def two_pieces() -> Any:
        yield body[:500]
        yield body[500:]

    async with client.post(
        "/send_logs",
        data=two_pieces() if chunked else body,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 200
    assert (await caller)[1]["logs"] == [entry]


async def test_an_unbounded_command_carries_the_extreme_finite_doubles(client: Client) -> None:
    """The original camera reads both bounds of every command and fails without them."""
    command, caller = await deliver_command(client)
    assert (command["startTimestamp"], command["endTimestamp"]) == (
        -1.7976931348623157e308,
        1.7976931348623157e308,
    )
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[0] == 200


async def test_default_upload_limit_takes_a_day_of_logs(client: Client) -> None:
    command, caller = await deliver_command(client)
    day = [
        {"timestamp": float(i), "description": "motion detected at (1, 2)"} for i in range(30_000)
    ]
    body = orjson.dumps({"requestId": command["requestId"], "logs": day})
    assert len(body) > 1024 * 1024  # over aiohttp's 1 MiB default
    assert (await post(client, body))[0] == 200
    status, result = await caller
    assert (status, result["count"]) == (200, 30_000)


@pytest.mark.parametrize(
    ("params", "content_type", "body", "status"),
    [
        ({"cameraId": "bad id"}, None, b"x" * 2000, 400),  # cameraId before content type
        ({}, "text/plain", b"x" * 2000, 415),  # content type before size
        ({}, "application/json", b"x" * 2000, 413),  # size before body
        # the exception: nobody awaits a result from this camera, so its body is not read
        ({}, "application/json", b'{"requestId": "zzz"}', 404),
    ],
)
async def test_order_of_checks(
    make_client: MakeClient,
    params: dict[str, str],
    content_type: str | None,
    body: bytes,
    status: int,
) -> None:
    client = await make_client(max_upload_bytes=1024)
    got, problem, _ = await post(client, body, content_type=content_type, **params)
    assert (got, problem["status"]) == (status, status)


@pytest.mark.parametrize("camera_id", ["", "a b", "x" * 65, "é", "a/b"])
async def test_bad_camera_id_is_400_on_camera_endpoints(client: Client, camera_id: str) -> None:
    async with client.get("/poll_for_command", params={"cameraId": camera_id}) as response:
        assert response.status == 400
        assert "cameraId" in (await response.json(content_type=None))["detail"]
    status, problem, _ = await post(client, b"{}", cameraId=camera_id)
    assert status == 400
    assert "cameraId" in problem["detail"]
    assert relay_of(client).cameras() == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"requestId": "nope", "logs": [{"timestamp": "soon"}]}',
        b'{"logs": [{"timestamp": 1}, {"description": "no time"}], "requestId": "nope"}',
        b'{"requestId": "nope", "logs": {"timestamp": 1}}',
        b'{"requestId": "nope"}',
    ],
)
async def test_a_malformed_body_read_whole_is_400_before_its_request_id_is_looked_up(
    client: Client, body: bytes
) -> None:
    """A small body is all here when it is read: the order of checks holds, the body (400)
    before the ``requestId`` (404); the command stays open for the right answer."""
    command, caller = await deliver_command(client)
    status, problem, _ = await post(client, body)
    assert (status, problem["status"], problem["type"]) == (
        400,
        400,
        "urn:camrelay:problem:invalid-body",
    )
    assert (await post(client, b'{"requestId": "nope", "logs": []}'))[0] == 404
    assert (await post(client, orjson.dumps({"requestId": command["requestId"], "logs": LOGS})))[
        0
    ] == 200
    assert (await caller)[1]["logs"] == LOGS
