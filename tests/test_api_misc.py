"""/cameras, /healthz, /metrics, framework errors as problem+json, request ids."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from importlib import metadata

import pytest

from common.version import version
from server.http.error_map import relay_problem
from server.http.problems import json_bytes
from server.relay import RelayError
from tests.conftest import Client, MakeClient, relay_of
from tests.helpers import callers_waiting, camera_polling, running, scrape, wait_until


async def test_cameras_lists_state(client: Client) -> None:
    relay = relay_of(client)
    before = time.time()
    async with running(asyncio.ensure_future(client.get("/poll_for_command?cameraId=cam-1"))):
        await wait_until(camera_polling(relay, "cam-1"))
        async with client.get("/cameras") as response:
            assert response.status == 200
            body = await response.json()
    [camera] = body["cameras"]
    assert camera.pop("lastSeen") >= before
    assert camera == {
        "cameraId": "cam-1",
        "online": True,
        "polling": True,
        "waiting": 0,
        "inFlight": 0,
    }


async def test_cameras_is_empty_before_any_poll(client: Client) -> None:
    async with client.get("/cameras") as response:
        assert (response.status, await response.json()) == (200, {"cameras": []})


async def test_healthz(client: Client) -> None:
    async with client.get("/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["uptimeSeconds"] >= 0
    # The existing fields stay; the version says which build answers.
    assert {"status", "uptimeSeconds", "node", "redis"} <= set(body)
    assert body["version"] == version() == metadata.version("camrelay")


async def test_metrics_name_the_build_and_the_process(client: Client) -> None:
    samples = await scrape(client)
    assert samples[f"camrelay_build_info{{version={version()}}}"] == 1
    # prometheus-client's ProcessCollector, on the app's own registry (Linux /proc).
    assert samples["process_resident_memory_bytes"] > 0
    assert samples["process_open_fds"] > 0
    assert samples["process_cpu_seconds_total"] >= 0


async def test_unknown_path_and_method_are_problems(client: Client) -> None:
    async with client.get("/nothing-here") as response:
        assert (response.status, response.content_type) == (404, "application/problem+json")
        problem = await response.json(content_type=None)
    assert problem == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "there is no endpoint at /nothing-here; see /openapi.json for the API",
    }
    async with client.put("/logs") as response:
        assert (response.status, response.content_type) == (405, "application/problem+json")
        assert "GET" in response.headers["Allow"]
        assert "PUT is not allowed on /logs" in (await response.json(content_type=None))["detail"]


async def test_request_id_is_echoed_or_made(client: Client) -> None:
    async with client.get("/healthz", headers={"X-Request-ID": "abc-123"}) as response:
        assert response.headers["X-Request-ID"] == "abc-123"
    async with client.get("/healthz", headers={"X-Request-ID": "bad id\u2603"}) as response:
        assert response.headers["X-Request-ID"] != "bad id\u2603"
        assert len(response.headers["X-Request-ID"]) == 16


async def test_metrics_move_with_the_relay(make_client: MakeClient) -> None:
    client = await make_client(response_timeout_seconds=0.2)
    relay = relay_of(client)
    start = await scrape(client)
    assert start["camrelay_cameras_online"] == 0
    assert start["camrelay_commands_delivered_total"] == 0

    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    held = await scrape(client)
    assert (held["camrelay_polls_held"], held["camrelay_cameras_online"]) == (1, 1)

    served = asyncio.ensure_future(client.get("/logs"))
    command = await (await poll).json()
    queued = asyncio.ensure_future(client.get("/logs"))
    await wait_until(callers_waiting(relay, 1))
    busy = await scrape(client)
    assert busy["camrelay_callers_waiting"] == 1
    assert busy["camrelay_commands_in_flight"] == 1
    assert busy["camrelay_commands_delivered_total"] == 1

    async with client.get("/poll_for_command") as again:  # redelivered
        assert (await again.json())["requestId"] == command["requestId"]
    result = {"requestId": command["requestId"], "logs": [{"timestamp": 1}]}
    for _ in range(2):  # accepted, then duplicate
        async with client.post("/send_logs", json=result):
            pass
    async with client.post("/send_logs", json={"requestId": "gone", "logs": []}):
        pass
    assert (await served).status == 200
    async with client.get("/poll_for_command") as second:  # the queued caller's command
        assert (await second.json())["command"] == "send_logs"
    assert (await queued).status == 504  # nobody answers it
    async with client.get("/logs?startTimestamp=x"):
        pass

    end = await scrape(client)
    assert end["camrelay_commands_delivered_total"] == 2
    assert end["camrelay_commands_redelivered_total"] == 1
    assert end["camrelay_commands_timed_out_total"] == 1
    assert end["camrelay_results_total{outcome=accepted}"] == 1
    assert end["camrelay_results_total{outcome=duplicate}"] == 1
    assert end["camrelay_results_total{outcome=late}"] == 1
    assert end["camrelay_logs_requests_total{status=200}"] == 1
    assert end["camrelay_logs_requests_total{status=504}"] == 1
    assert end["camrelay_logs_requests_total{status=400}"] == 1
    assert end["camrelay_relay_latency_seconds_count"] == 1
    assert end["camrelay_callers_per_command_count"] == 2
    assert end["camrelay_polls_held"] == 0


def test_every_relay_error_has_an_http_mapping() -> None:
    """A relay error missing from the one table would reach a client as a 500."""
    pending = list(RelayError.__subclasses__())
    assert pending
    while pending:
        error_class = pending.pop()
        pending.extend(error_class.__subclasses__())
        problem = relay_problem(error_class("detail for a person"))
        assert 400 <= problem.status < 600
        assert problem.detail == "detail for a person"
        assert problem.kind
        if problem.status == 503:
            assert int(problem.headers["Retry-After"]) > 0


def test_a_small_json_body_holds_no_more_than_its_size() -> None:
    # A keep-alive connection keeps its last response for as long as the next request
    # takes (an idle camera's noop: a whole hold), so a body is held once per camera.
    tracemalloc.start()
    try:
        bodies = [json_bytes({"command": "noop"}) for _ in range(1000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bodies[0] == b'{"command":"noop"}'
    assert held < 1000 * 100


@pytest.mark.parametrize(
    "path", ["/healthz", "/logs", "/cameras", "/poll_for_command", "/metrics", "/", "/openapi.json"]
)
async def test_an_expectation_the_server_cannot_meet_is_a_417_problem(
    client: Client, path: str
) -> None:
    async with client.get(path, headers={"Expect": "<b>echo-me</b>"}) as response:
        assert response.status == 417
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem == {
        "type": "urn:camrelay:problem:expectation-failed",
        "title": "Expectation Failed",
        "status": 417,
        "detail": "the server meets no expectation but 100-continue, got Expect: "
        "'<b>echo-me</b>'; send the request without that header",
    }


async def test_expect_100_continue_lets_a_camera_send_its_result(client: Client) -> None:
    """curl sends ``Expect: 100-continue`` before a body over 1 MiB and waits for the
    ``100 Continue``: the upload goes through as any other."""
    relay = relay_of(client)
    poll = asyncio.ensure_future(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    caller = asyncio.ensure_future(client.get("/logs"))
    async with await poll as response:
        command = await response.json()
    body = json_bytes({"requestId": command["requestId"], "logs": [{"timestamp": 1.5}]})
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /send_logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-Continue\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    async with await caller as answer:
        assert (await answer.json())["logs"] == [{"timestamp": 1.5}]


async def test_an_unexpected_failure_is_a_500_problem_naming_the_request_id(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_client()

    async def failing(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(relay_of(client), "fleet_stats", failing)
    async with client.get("/cameras?limit=5", headers={"X-Request-ID": "req-123"}) as response:
        assert response.status == 500
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["status"] == 500
    assert "req-123" in problem["detail"]
    assert "a bug" not in problem["detail"]
