"""Access control: the user token, per-camera HMAC tokens, and what stays open."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import subprocess
import sys

import orjson
import pytest

from server.http.auth import camera_token
from tests.conftest import Client, MakeClient, relay_of
from tests.helpers import camera_polling, running, wait_until

API_TOKEN = "user-token-0123456789"
CAMERA_SECRET = "camera-secret-abcdef"


def token_for(camera_id: str) -> str:
    return hmac.new(CAMERA_SECRET.encode(), camera_id.encode(), hashlib.sha256).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def secured(make_client: MakeClient) -> Client:
    return await make_client(api_token=API_TOKEN, camera_secret=CAMERA_SECRET)


def test_camera_token_is_hex_hmac_sha256_of_the_id() -> None:
    assert camera_token(CAMERA_SECRET, "cam-1") == token_for("cam-1")
    assert len(token_for("cam-1")) == 64
    assert token_for("cam-1") == token_for("cam-1").lower()


@pytest.mark.parametrize("path", ["/logs", "/cameras"])
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), {"Authorization": API_TOKEN}, {"Authorization": f"Basic {API_TOKEN}"}],
)
async def test_user_endpoints_need_the_api_token(
    secured: Client, path: str, headers: dict[str, str]
) -> None:
    # A bad query too: 401 comes before any 400 on the user side.
    async with secured.get(f"{path}?startTimestamp=nan&cameraId=%20", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert API_TOKEN not in orjson.dumps(problem).decode()


async def test_right_api_token_passes(secured: Client) -> None:
    async with secured.get("/cameras", headers=bearer(API_TOKEN)) as response:
        assert response.status == 200
    async with secured.get("/logs?startTimestamp=nan", headers=bearer(API_TOKEN)) as response:
        assert response.status == 400
    async with secured.get("/logs", headers={"Authorization": f"bearer {API_TOKEN}"}) as response:
        assert response.status == 503  # scheme is case-insensitive; no camera yet


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_health_and_metrics_stay_open(secured: Client, path: str) -> None:
    async with secured.get(path) as response:
        assert response.status == 200


async def test_camera_needs_its_own_token(secured: Client) -> None:
    for headers in ({}, bearer(token_for("other")), bearer(API_TOKEN)):
        async with secured.get("/poll_for_command?cameraId=cam-1", headers=headers) as response:
            assert response.status == 401
            assert "camera-token" in (await response.json(content_type=None))["detail"]
        async with secured.post(
            "/send_logs?cameraId=cam-1", json={"logs": []}, headers=headers
        ) as response:
            assert response.status == 401
    assert relay_of(secured).cameras() == []


async def test_camera_check_order_is_camera_id_then_auth_then_content_type(
    secured: Client,
) -> None:
    async with secured.post("/send_logs?cameraId=bad%20id", data=b"x") as response:
        assert response.status == 400
    async with secured.post("/send_logs?cameraId=cam-1", data=b"x") as response:
        assert response.status == 401
    async with secured.post(
        "/send_logs?cameraId=cam-1", data=b"x", headers=bearer(token_for("cam-1"))
    ) as response:
        assert response.status == 415


async def test_result_only_from_the_camera_the_command_went_to(secured: Client) -> None:
    relay = relay_of(secured)
    poll = asyncio.ensure_future(
        secured.get("/poll_for_command?cameraId=cam-1", headers=bearer(token_for("cam-1")))
    )
    await wait_until(camera_polling(relay, "cam-1"))
    caller = asyncio.ensure_future(secured.get("/logs?cameraId=cam-1", headers=bearer(API_TOKEN)))
    command = await (await poll).json()
    stolen = {"requestId": command["requestId"], "logs": [{"timestamp": 666}]}
    async with secured.post(
        "/send_logs?cameraId=cam-2", json=stolen, headers=bearer(token_for("cam-2"))
    ) as response:
        assert response.status == 404
    real = {"requestId": command["requestId"], "logs": [{"timestamp": 1}]}
    async with secured.post(
        "/send_logs?cameraId=cam-1", json=real, headers=bearer(token_for("cam-1"))
    ) as response:
        assert response.status == 200
    response = await caller
    assert (await response.json())["logs"] == [{"timestamp": 1}]


async def test_secrets_never_reach_the_log_or_metrics(
    secured: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = relay_of(secured)
    async with running(
        asyncio.ensure_future(
            secured.get("/poll_for_command?cameraId=cam-1", headers=bearer(token_for("cam-1")))
        )
    ):
        await wait_until(camera_polling(relay, "cam-1"))
    async with secured.get("/logs", headers=bearer("wrong-" + API_TOKEN)):
        pass
    async with secured.get("/metrics") as response:
        metrics = await response.text()
    for secret in (API_TOKEN, CAMERA_SECRET, token_for("cam-1")):
        assert secret not in caplog.text
        assert secret not in metrics


async def test_auth_off_is_warned_at_start_up(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await make_client()
    assert "API_TOKEN is not set" in caplog.text
    assert "CAMERA_SECRET is not set" in caplog.text


@pytest.mark.process
def test_camera_token_command_prints_the_token() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "camera-token", "cam-1"],
        env={**os.environ, "CAMERA_SECRET": CAMERA_SECRET},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == token_for("cam-1") + "\n"
    missing = subprocess.run(
        [sys.executable, "-m", "server", "camera-token", "cam-1"],
        env={k: v for k, v in os.environ.items() if k != "CAMERA_SECRET"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 2
    assert "CAMERA_SECRET" in missing.stderr


@pytest.mark.parametrize("path", ["/logs", "/cameras"])
async def test_a_token_that_only_begins_with_the_api_token_is_refused(
    secured: Client, path: str
) -> None:
    async with secured.get(path, headers=bearer(API_TOKEN + "x")) as response:
        assert response.status == 401


async def test_a_camera_token_with_a_character_more_is_refused(secured: Client) -> None:
    async with secured.get(
        "/poll_for_command", params={"cameraId": "cam-1"}, headers=bearer(token_for("cam-1") + "0")
    ) as response:
        assert response.status == 401


async def test_tokens_are_compared_in_constant_time(
    secured: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a test can check of "compared in constant time": hmac.compare_digest does it."""
    compared: list[bytes] = []
    compare_digest = hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append(expected)
        return compare_digest(given, expected)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    async with secured.get("/cameras", headers=bearer("wrong")) as response:
        assert response.status == 401
    async with secured.get(
        "/poll_for_command", params={"cameraId": "cam-1"}, headers=bearer("wrong")
    ) as response:
        assert response.status == 401
    assert {API_TOKEN.encode(), token_for("cam-1").encode()} <= set(compared)
