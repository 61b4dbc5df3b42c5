"""Mistakes people make, answered so that they can tell what went wrong: an unknown
``cameraId``, millisecond bounds, and the three ways a 401 comes about."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from typing import Any

import aiohttp
import orjson
import pytest

from server.http.params import HINT_HEADER
from server.relay import CameraOffline, CameraUnknown
from tests.conftest import Client, MakeClient, MakeLiveServer, relay_of
from tests.helpers import ScriptedCamera, camera_polling, running, wait_until
from tests.test_cluster import node_maker
from tools.redis_server import RedisServer

LOGS: list[dict[str, Any]] = [
    {"timestamp": 1700000000, "description": "motion detected at (1, 2)"},
    {"timestamp": 1700000010.5, "description": "brightness adjusted 7", "zone": [1]},
]
PROBLEM = "urn:camrelay:problem:"
API_TOKEN = "user-token-0123456789"
CAMERA_SECRET = "camera-secret-abcdef"


def unknown_detail(camera_id: str) -> str:
    return (
        f"camera {camera_id!r} has not connected: no camera with that id has polled this "
        "server recently; check the id against GET /cameras (ids are case-sensitive)"
    )


async def problem_of(client: Client, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, Any]]:
    async with client.get(path, **kwargs) as response:
        assert response.content_type == "application/problem+json"
        return response.status, response.headers, await response.json(content_type=None)


# ------------------------------------------------------------------ an unknown cameraId


def test_camera_unknown_is_a_camera_offline() -> None:
    """Code that catches ``CameraOffline`` (and the cluster's messages) still does."""
    error = CameraUnknown.of("frnot-door")
    assert isinstance(error, CameraOffline)
    assert error.detail == unknown_detail("frnot-door")


async def test_an_id_never_seen_is_camera_unknown_pointing_at_cameras(client: Client) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, headers, problem = await problem_of(client, "/logs", params={"cameraId": "frnot-door"})
    assert loop.time() - started < 0.5  # at once, as for any camera not seen
    assert status == 503
    assert problem == {
        "type": f"{PROBLEM}camera-unknown",
        "title": "Service Unavailable",
        "status": 503,
        "detail": unknown_detail("frnot-door"),
    }
    # The contract wants Retry-After on every camera-absent 503: a long one, for a typo.
    assert headers["Retry-After"] == "30"
    assert "retry" not in problem["detail"].lower()


async def test_a_camera_that_polled_and_went_away_is_camera_offline(
    make_client: MakeClient,
) -> None:
    client = await make_client(poll_hold_seconds=0.5, connect_timeout_seconds=0.3)
    relay = relay_of(client)
    camera = ScriptedCamera(client.session, str(client.make_url("")), LOGS, camera_id="door")
    async with running(asyncio.ensure_future(camera.run())):
        await wait_until(camera_polling(relay, "door"))
        async with client.get("/logs", params={"cameraId": "door"}) as answered:
            assert answered.status == 200  # it answered once: it is remembered
    await wait_until(lambda: not relay.cameras()[0].online)
    status, headers, problem = await problem_of(client, "/logs", params={"cameraId": "door"})
    assert status == 503
    assert problem["type"] == f"{PROBLEM}camera-offline"
    assert re.fullmatch(
        r"camera 'door' is offline: last seen \d+ s ago; retry once it polls again",
        problem["detail"],
    )
    assert headers["Retry-After"] == "5"
    # The same server still tells a typo apart.
    status, headers, problem = await problem_of(client, "/logs", params={"cameraId": "Door"})
    assert (status, problem["type"], headers["Retry-After"]) == (
        503,
        f"{PROBLEM}camera-unknown",
        "30",
    )


@pytest.mark.redis
async def test_a_cluster_node_with_no_directory_entry_answers_camera_unknown(
    make_live_server: MakeLiveServer, redis_server: RedisServer
) -> None:
    node = await node_maker(make_live_server, redis_server)("a")
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{node.url}/logs", params={"cameraId": "ghost"}) as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "30"
        problem = await response.json(content_type=None)
    assert problem["type"] == f"{PROBLEM}camera-unknown"
    assert problem["detail"] == unknown_detail("ghost")


# ------------------------------------------------------------------ millisecond bounds


async def logs_answer(client: Client, **params: str) -> tuple[int, Any, bytes]:
    async with client.get("/logs", params=params) as response:
        return response.status, response.headers, await response.read()


@pytest.mark.parametrize(
    ("params", "hint"),
    [
        (
            {"startTimestamp": "1700000000000"},
            "startTimestamp=1700000000000 looks like milliseconds, but timestamps are epoch "
            "seconds (if the camera's are too, use startTimestamp=1700000000)",
        ),
        (
            {"endTimestamp": "1700000010500"},
            "endTimestamp=1700000010500 looks like milliseconds, but timestamps are epoch "
            "seconds (if the camera's are too, use endTimestamp=1700000010.5)",
        ),
        (
            {"startTimestamp": "1700000000000", "endTimestamp": "1.7e18"},
            "startTimestamp=1700000000000 looks like milliseconds, but timestamps are epoch "
            "seconds (if the camera's are too, use startTimestamp=1700000000); "
            "endTimestamp=1700000000000000000 looks like nanoseconds, but timestamps are epoch "
            "seconds (if the camera's are too, use endTimestamp=1700000000)",
        ),
        ({"startTimestamp": "1700000000", "endTimestamp": "1700000010.5"}, None),
        ({"endTimestamp": "99999999999"}, None),  # below 1e11: could be seconds
        ({}, None),
    ],
)
async def test_a_bound_that_looks_like_milliseconds_gets_a_hint_header(
    client: Client, params: dict[str, str], hint: str | None
) -> None:
    camera = ScriptedCamera(client.session, str(client.make_url("")), LOGS)
    async with running(asyncio.ensure_future(camera.run())):
        await wait_until(camera_polling(relay_of(client)))
        status, headers, body = await logs_answer(client, **params)
    assert status == 200
    assert headers.get(HINT_HEADER) == hint
    answer = orjson.loads(body)
    assert list(answer) == ["cameraId", "startTimestamp", "endTimestamp", "count", "logs"]
    start, end = params.get("startTimestamp"), params.get("endTimestamp")
    assert answer["startTimestamp"] == (None if start is None else float(start))
    assert answer["endTimestamp"] == (None if end is None else float(end))
    low = float(start) if start else float("-inf")
    high = float(end) if end else float("inf")
    assert answer["logs"] == [e for e in LOGS if low <= e["timestamp"] <= high]
    assert answer["count"] == len(answer["logs"])


async def test_the_hint_rides_a_streamed_answer_too(client: Client) -> None:
    many = [{"timestamp": 1700000000 + i, "description": "x" * 200} for i in range(2000)]
    camera = ScriptedCamera(client.session, str(client.make_url("")), many)
    async with running(asyncio.ensure_future(camera.run())):
        await wait_until(camera_polling(relay_of(client)))
        status, headers, body = await logs_answer(client, endTimestamp="1800000000000")
    assert status == 200
    assert headers[HINT_HEADER].startswith("endTimestamp=1800000000000 looks like milliseconds")
    assert orjson.loads(body)["count"] == 2000


# ------------------------------------------------------------------ which 401


def camera_token_for(camera_id: str) -> str:
    return hmac.new(CAMERA_SECRET.encode(), camera_id.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
async def secured(make_client: MakeClient) -> Client:
    return await make_client(api_token=API_TOKEN, camera_secret=CAMERA_SECRET)


USER_CASES = [
    (
        {},
        "the request has no Authorization header, and this server has API_TOKEN set: send "
        "'Authorization: Bearer <API_TOKEN>' to use this endpoint",
        'Bearer realm="camrelay"',
    ),
    (
        {"Authorization": "   "},
        "the request has no Authorization header, and this server has API_TOKEN set: send "
        "'Authorization: Bearer <API_TOKEN>' to use this endpoint",
        'Bearer realm="camrelay"',
    ),
    (
        {"Authorization": API_TOKEN},
        "the Authorization header does not use the Bearer scheme: send it as "
        "'Authorization: Bearer <API_TOKEN>' (the word Bearer, a space, then the token)",
        'Bearer realm="camrelay"',
    ),
    (
        {"Authorization": f"Basic {API_TOKEN}"},
        "the Authorization header does not use the Bearer scheme: send it as "
        "'Authorization: Bearer <API_TOKEN>' (the word Bearer, a space, then the token)",
        'Bearer realm="camrelay"',
    ),
    (
        {"Authorization": f"Bearer {API_TOKEN[:-1]}X"},
        "the bearer token does not match this server's API_TOKEN: check the token sent in "
        "'Authorization: Bearer <API_TOKEN>'",
        'Bearer realm="camrelay", error="invalid_token"',
    ),
]


def leaked(text: str, sent: str) -> bool:
    """Whether ``text`` holds the token sent, or any 6-character piece of it."""
    secret = sent.split(" ", 1)[-1].strip()
    return any(secret[i : i + 6] in text for i in range(max(1, len(secret) - 5)) if secret)


@pytest.mark.parametrize("path", ["/logs", "/cameras"])
@pytest.mark.parametrize(("headers", "detail", "challenge"), USER_CASES)
async def test_a_user_401_says_which_mistake_and_echoes_no_token(
    secured: Client,
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: dict[str, str],
    detail: str,
    challenge: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    status, response_headers, problem = await problem_of(secured, path, headers=headers)
    assert status == 401
    assert problem == {
        "type": f"{PROBLEM}unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
    }
    assert response_headers["WWW-Authenticate"] == challenge
    assert f'GET {path} HTTP/1.1" 401' in caplog.text  # the logs were captured
    sent = headers.get("Authorization", "").strip()
    if sent:
        assert not leaked(orjson.dumps(problem).decode(), sent)
        assert not leaked(caplog.text, sent)
    assert not leaked(caplog.text, API_TOKEN)


def camera_cases(camera_id: str) -> list[tuple[dict[str, str], str, str]]:
    printed = f"the token printed by 'python -m server camera-token {camera_id}'"
    return [
        (
            {},
            f"camera {camera_id!r} sent no Authorization header, and this server has "
            f"CAMERA_SECRET set: send 'Authorization: Bearer <token>' with {printed}",
            'Bearer realm="camrelay-camera"',
        ),
        (
            {"Authorization": camera_token_for(camera_id)},
            f"camera {camera_id!r} sent an Authorization header that does not use the Bearer "
            f"scheme: send 'Authorization: Bearer <token>' with {printed}",
            'Bearer realm="camrelay-camera"',
        ),
        (
            {"Authorization": "Bearer"},
            f"camera {camera_id!r} sent an Authorization header that does not use the Bearer "
            f"scheme: send 'Authorization: Bearer <token>' with {printed}",
            'Bearer realm="camrelay-camera"',
        ),
        (
            {"Authorization": f"Bearer {camera_token_for('another-camera')}"},
            f"camera {camera_id!r} sent a bearer token that is not its own: send {printed} on "
            "the server (a token is valid for one cameraId and one CAMERA_SECRET)",
            'Bearer realm="camrelay-camera", error="invalid_token"',
        ),
    ]


@pytest.mark.parametrize("case", range(4))
async def test_a_camera_401_says_which_mistake_and_echoes_no_token(
    secured: Client, caplog: pytest.LogCaptureFixture, case: int
) -> None:
    caplog.set_level(logging.DEBUG)
    headers, detail, challenge = camera_cases("cam-1")[case]
    requests = [
        secured.get("/poll_for_command", params={"cameraId": "cam-1"}, headers=headers),
        secured.post(
            "/send_logs", params={"cameraId": "cam-1"}, json={"logs": []}, headers=headers
        ),
    ]
    for request in requests:
        async with request as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == challenge
            problem = await response.json(content_type=None)
        assert (problem["type"], problem["detail"]) == (f"{PROBLEM}unauthorized", detail)
        for secret in (camera_token_for("cam-1"), camera_token_for("another-camera")):
            assert not leaked(orjson.dumps(problem).decode(), secret)
            assert not leaked(caplog.text, secret)
        assert CAMERA_SECRET not in caplog.text
    assert relay_of(secured).cameras() == []
