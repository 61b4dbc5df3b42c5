"""Hostile or odd input found in review: never a 500, never a stray round trip."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import os
import time

import orjson
import pytest
from aiohttp import ClientSession, TCPConnector
from yarl import URL

from tests.conftest import Client, MakeClient, MakeLiveServer, relay_of
from tests.helpers import camera_polling, wait_until


async def raw_request(url: str, raw: bytes) -> bytes:
    target = URL(url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_burst_after_a_long_hold_is_all_200(make_live_server: MakeLiveServer) -> None:
    server = await make_live_server(connect_timeout_seconds=0.3, poll_hold_seconds=5.0)
    async with ClientSession(connector=TCPConnector(limit=0)) as http:

        async def camera() -> None:
            while True:
                async with http.get(f"{server.url}/poll_for_command") as response:
                    command = await response.json()
                if command["command"] == "send_logs":
                    result = {"requestId": command["requestId"], "logs": [{"timestamp": 1}]}
                    async with http.post(f"{server.url}/send_logs", json=result) as posted:
                        await posted.read()

        async def call() -> int:
            async with http.get(f"{server.url}/logs") as response:
                await response.read()
                return response.status

        camera_task = asyncio.ensure_future(camera())
        try:
            await wait_until(camera_polling(server.relay))
            await asyncio.sleep(0.4)  # held longer than the connect timeout
            statuses = await asyncio.gather(*(call() for _ in range(30)))
        finally:
            camera_task.cancel()
            await asyncio.gather(camera_task, return_exceptions=True)
    assert statuses == [200] * 30


async def test_nesting_is_limited_as_orjson_limits_it(client: Client) -> None:
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    caller = asyncio.ensure_future(client.get("/logs"))
    command = await (await poll).json()
    too_deep = "[" * 1100 + "]" * 1100
    body = (
        f'{{"requestId": "{command["requestId"]}", "logs": [{{"timestamp": 1, "x": {too_deep}}}]}}'
    )
    headers = {"Content-Type": "application/json"}
    async with client.post("/send_logs", data=body, headers=headers) as response:
        assert response.status == 400
        assert "nested too deeply" in (await response.json(content_type=None))["detail"]
    deep = "[" * 300 + "]" * 300  # deeper than orjson writes, as deep as it reads
    entry = f'{{"timestamp": 1, "x": {deep}}}'
    good = f'{{"requestId": "{command["requestId"]}", "logs": [{entry}]}}'
    async with client.post("/send_logs", data=good, headers=headers) as response:
        assert response.status == 200
    answer = await (await caller).read()
    assert answer.endswith(b'"logs":[' + entry.encode() + b"]}")


@pytest.mark.parametrize(
    ("path", "overrides"),
    [
        ("/logs", {"api_token": "t0ken"}),
        ("/cameras", {"api_token": "t0ken"}),
        ("/poll_for_command", {"camera_secret": "s3cret"}),
    ],
)
async def test_non_utf8_bearer_is_401(
    make_live_server: MakeLiveServer, path: str, overrides: dict[str, str]
) -> None:
    server = await make_live_server(**overrides)
    answer = await raw_request(
        server.url,
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401 ")


async def test_head_cannot_take_a_poll_or_start_a_round_trip(client: Client) -> None:
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    for path in ("/poll_for_command", "/logs"):
        async with client.head(path) as response:
            assert response.status == 405
    assert relay.cameras()[0].polling  # the real poll is still held
    assert relay.cameras()[0].in_flight == 0
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    async with client.head("/healthz") as response:
        assert response.status == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_undecodable_body_is_400(client: Client, encoding: str) -> None:
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    caller = asyncio.ensure_future(client.get("/logs"))
    command = await (await poll).json()
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    async with client.post("/send_logs", data=b"not compressed", headers=headers) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        assert "could not be read" in (await response.json(content_type=None))["detail"]
    answer = {"requestId": command["requestId"], "logs": []}
    async with client.post("/send_logs", json=answer) as response:
        assert response.status == 200
    assert (await caller).status == 200


async def test_rejected_send_logs_still_marks_the_camera_seen(make_client: MakeClient) -> None:
    client = await make_client()
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    await wait_until(lambda: not relay.cameras()[0].polling)
    before = relay.cameras()[0].last_seen
    headers = {"Content-Type": "application/json"}
    async with client.post("/send_logs", data=b'{"logs": 5}', headers=headers) as response:
        assert response.status == 404  # nobody awaits a result: refused before its body
    after = relay.cameras()[0].last_seen
    assert before is not None
    assert after is not None
    assert after > before


async def test_404_detail_does_not_echo_a_huge_request_id(client: Client) -> None:
    body = io.BytesIO(orjson.dumps({"requestId": "x" * 1_000_000, "logs": []}))
    headers = {"Content-Type": "application/json"}
    async with client.post("/send_logs", data=body, headers=headers) as response:
        assert response.status == 404
        assert len(await response.read()) < 2_000


async def test_uploads_nobody_asked_for_cost_a_bounded_number_of_log_lines(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused uploads cost no body read, and no log line each either: a client
    without credentials (CAMERA_SECRET off) must not be able to flood the log."""
    caplog.set_level(logging.INFO, logger="camrelay")
    headers = {"Content-Type": "application/json"}
    started = time.monotonic()
    for n in range(200):
        async with client.post(
            "/send_logs", params={"cameraId": f"nobody-{n % 3}"}, data=b"{}", headers=headers
        ) as response:
            assert response.status == 404
    seconds = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("camrelay.relay")]
    # at most 20 lines a second for each of the two kinds of line
    assert len(lines) <= 2 * 20 * (int(seconds) + 1), f"{len(lines)} lines, e.g. {lines[:2]}"


@pytest.mark.parametrize("entries", [10, 20_000])
async def test_gzip_result_is_accepted_whatever_its_compressed_length(
    client: Client, entries: int
) -> None:
    """aiohttp decompresses a ``Content-Encoding: gzip`` body: its Content-Length
    is the compressed size, not what the scanner receives."""
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    caller = asyncio.ensure_future(client.get("/logs"))
    command = await (await poll).json()
    logs = [{"timestamp": i, "noise": os.urandom(16).hex()} for i in range(entries)]
    body = gzip.compress(orjson.dumps({"requestId": command["requestId"], "logs": logs}))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with client.post("/send_logs", data=body, headers=headers) as response:
        assert response.status == 200, await response.text()
    async with await caller as answer:
        assert answer.status == 200
        assert (await answer.json())["logs"] == logs
