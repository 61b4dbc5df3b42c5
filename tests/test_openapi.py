"""server/http/openapi.json: a valid OpenAPI 3.1 document matching the app and what it answers."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import openapi_spec_validator
import pytest
from aiohttp import ClientResponse
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from common.grammar import CAMERA_ID_PATTERN, CAMERA_PREFIX_PATTERN, DECIMAL_PATTERN
from server import create_app
from server.console import ROUTE_NAMES as CONSOLE_ROUTES
from server.http.auth import camera_token
from server.http.params import MAX_CAMERAS_PAGE
from server.relay import WIRE_MAX
from tests.conftest import Client, MakeClient, relay_of, settings_for
from tests.helpers import camera_polling, wait_until

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "server" / "http" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
DOCUMENT_URI = "urn:camrelay:openapi"
REGISTRY = Registry().with_resource(
    DOCUMENT_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
USER_ENDPOINTS = {"/logs", "/cameras"}
CAMERA_ENDPOINTS = {"/poll_for_command", "/send_logs"}
OPEN_ENDPOINTS = {"/healthz", "/metrics", "/openapi.json"}


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follows a local ``$ref`` (``#/components/...``) to the node it names."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation(method: str, path: str) -> dict[str, Any]:
    return DOCUMENT["paths"][path][method.lower()]


def validate(instance: object, schema: dict[str, Any]) -> None:
    """Validates against a schema that may refer into the document (``#/components/...``)."""
    absolute = json.loads(
        json.dumps(schema).replace('"#/components/', f'"{DOCUMENT_URI}#/components/')
    )
    Draft202012Validator(absolute, registry=REGISTRY).validate(instance)


async def assert_conforms(method: str, path: str, response: ClientResponse) -> Any:
    """The response's status, headers, media type and body are as the document says.

    Returns the body: decoded JSON, text, or "" for a HEAD."""
    responses = operation(method, path)["responses"]
    assert str(response.status) in responses, (
        f"{method} {path} answered {response.status}, which the document does not list"
    )
    documented = resolve(responses[str(response.status)])
    for name, header in documented.get("headers", {}).items():
        header = resolve(header)
        if header.get("required"):
            assert name in response.headers, f"{name} missing on {method} {path} {response.status}"
        if name in response.headers:
            value: object = response.headers[name]
            if header["schema"].get("type") == "integer":
                assert isinstance(value, str)
                assert value.isdigit(), value
                value = int(value)
            validate(value, header["schema"])
    if "content" not in documented:
        assert method == "HEAD"
        assert await response.read() == b""
        return ""
    ((media_type, media),) = documented["content"].items()
    assert response.content_type == media_type
    if media_type.endswith("json"):
        body = await response.json(content_type=None)
        validate(body, media["schema"])
        return body
    text = await response.text()
    validate(text, media["schema"])
    return text


# ---------------------------------------------------------------- the document itself


def test_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    openapi_spec_validator.validate(DOCUMENT, cls=openapi_spec_validator.OpenAPIV31SpecValidator)


def test_every_route_is_documented_and_every_operation_is_routed() -> None:
    app = create_app(settings_for())
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.name not in CONSOLE_ROUTES  # the web page, not the API
    }
    assert routed == documented_operations()
    # HEAD is served only where GET has no side effect on the relay.
    assert ("HEAD", "/poll_for_command") not in routed
    assert ("HEAD", "/logs") not in routed


async def test_openapi_json_serves_exactly_the_file(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == OPENAPI_PATH.read_bytes()


def test_parameter_patterns_are_the_code_patterns() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["CameraId"]["pattern"] == f"^{CAMERA_ID_PATTERN.pattern}$"
    assert schemas["DecimalString"]["pattern"] == f"^{DECIMAL_PATTERN.pattern}$"
    parameters = DOCUMENT["components"]["parameters"]
    assert {name: resolve(p["schema"]) for name, p in parameters.items()} == {
        "cameraId": schemas["CameraId"],
        "startTimestamp": schemas["DecimalString"],
        "endTimestamp": schemas["DecimalString"],
        "prefix": schemas["CameraPrefix"],
        "online": schemas["OnlineFlag"],
        "after": schemas["CameraId"],
        "limit": schemas["PageSize"],
    }
    assert schemas["CameraPrefix"]["pattern"] == f"^{CAMERA_PREFIX_PATTERN.pattern}$"
    assert schemas["PageSize"]["maximum"] == MAX_CAMERAS_PAGE
    # The same strings pass and fail in the document as in the code (README's examples).
    decimal = re.compile(schemas["DecimalString"]["pattern"])
    for good in ["1700000000", "1700000000.25", "-5", "1e9", "+3", "1E-3", "-0.5e+2"]:
        assert decimal.search(good), good
        assert DECIMAL_PATTERN.fullmatch(good), good
    for bad in ["", " ", "nan", "inf", "1_000", "0x10", "1e", ".", "١٢", "1 ", "1,5", "--1"]:
        assert not decimal.search(bad), bad
        assert not DECIMAL_PATTERN.fullmatch(bad), bad


def test_every_error_is_problem_json() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail"]
    for method, path in documented_operations():
        for status, response in operation(method, path)["responses"].items():
            response = resolve(response)
            if method == "HEAD":
                assert "content" not in response, (method, path)
            elif int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (method, path)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
            if status == "503":
                assert resolve(response["headers"]["Retry-After"])["required"] is True
            if status == "401":
                assert resolve(response["headers"]["WWW-Authenticate"])["required"] is True


def test_security_is_optional_bearer_per_side() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "userToken": ("http", "bearer"),
        "cameraToken": ("http", "bearer"),
    }
    for method, path in documented_operations():
        security = operation(method, path)["security"]
        responses = operation(method, path)["responses"]
        if path in USER_ENDPOINTS:
            assert security == [{}, {"userToken": []}], path
            assert "401" in responses
        elif path in CAMERA_ENDPOINTS:
            assert security == [{}, {"cameraToken": []}], path
            assert "401" in responses
        else:
            assert path in OPEN_ENDPOINTS
            assert security == [], path
            assert "401" not in responses


# ------------------------------------- every documented answer, produced by the real app


async def test_camera_round_trip_answers_conform(make_client: MakeClient) -> None:
    client = await make_client()
    poll = asyncio.create_task(client.get("/poll_for_command", params={"cameraId": "cam"}))
    await wait_until(camera_polling(relay_of(client), "cam"))
    logs = asyncio.create_task(client.get("/logs", params={"cameraId": "cam"}))
    command = await assert_conforms("GET", "/poll_for_command", await poll)
    assert command == {
        "command": "send_logs",
        "requestId": command["requestId"],
        "startTimestamp": -WIRE_MAX,
        "endTimestamp": WIRE_MAX,
    }
    result = {
        "requestId": command["requestId"],
        "logs": [{"timestamp": 1.5, "description": "motion detected at (1, 2)", "x": [None]}],
    }
    receipt = await client.post("/send_logs", params={"cameraId": "cam"}, json=result)
    assert (await assert_conforms("POST", "/send_logs", receipt))["duplicate"] is False
    answer = await assert_conforms("GET", "/logs", await logs)
    assert answer["logs"] == result["logs"]
    repeat = await client.post("/send_logs", params={"cameraId": "cam"}, json=result)
    assert (await assert_conforms("POST", "/send_logs", repeat))["duplicate"] is True
    cameras = await assert_conforms("GET", "/cameras", await client.get("/cameras"))
    assert [c["cameraId"] for c in cameras["cameras"]] == ["cam"]
    paged = await assert_conforms("GET", "/cameras", await client.get("/cameras?limit=1"))
    assert (paged["next"], paged["totals"]["known"]) == (None, 1)


async def test_noop_and_superseded_polls_conform(make_client: MakeClient) -> None:
    client = await make_client(poll_hold_seconds=0.1)
    first = asyncio.create_task(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay_of(client)))
    second = asyncio.create_task(client.get("/poll_for_command"))
    assert (await first).status == 409
    await assert_conforms("GET", "/poll_for_command", first.result())
    noop = await assert_conforms("GET", "/poll_for_command", await second)
    assert noop == {"command": "noop"}


@pytest.mark.parametrize(
    ("method", "path", "request_kwargs", "status"),
    [
        ("GET", "/poll_for_command", {"params": {"cameraId": "no spaces"}}, 400),
        ("POST", "/send_logs", {"params": {"cameraId": "x" * 65}, "json": {"logs": []}}, 400),
        # nobody awaits a result from this camera: 404 before the body is read
        ("POST", "/send_logs", {"json": {"logs": [{"time": 1}]}}, 404),
        ("POST", "/send_logs", {"json": {"requestId": "nope", "logs": []}}, 404),
        ("POST", "/send_logs", {"json": {"logs": []}}, 404),
        ("POST", "/send_logs", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
        ("GET", "/logs", {"params": {"startTimestamp": "1e999"}}, 400),
        ("GET", "/logs", {"params": {"startTimestamp": "2", "endTimestamp": "1"}}, 400),
        ("GET", "/logs", {"params": {"cameraId": "never-seen"}}, 503),
        ("GET", "/cameras", {"params": {"limit": "10", "online": "true"}}, 200),
        ("GET", "/cameras", {"params": {"limit": "1001"}}, 400),
        ("HEAD", "/cameras", {"params": {"online": "yes"}}, 400),
        ("GET", "/healthz", {}, 200),
        ("GET", "/metrics", {}, 200),
        ("GET", "/openapi.json", {}, 200),
    ],
)
async def test_simple_answers_conform(
    client: Client, method: str, path: str, request_kwargs: dict[str, Any], status: int
) -> None:
    response = await client.request(method, path, **request_kwargs)
    assert response.status == status, await response.text()
    await assert_conforms(method, path, response)


async def test_too_large_body_conforms(make_client: MakeClient) -> None:
    client = await make_client(max_upload_bytes=100)
    body = {"logs": [{"timestamp": 1, "description": "x" * 200}]}
    response = await client.post("/send_logs", json=body)
    assert response.status == 413
    await assert_conforms("POST", "/send_logs", response)


async def test_unauthorized_answers_conform(make_client: MakeClient) -> None:
    client = await make_client(api_token="user-secret", camera_secret="camera-secret")
    for method, path in documented_operations():
        response = await client.request(method, path, json={"logs": []})
        if path in OPEN_ENDPOINTS:
            assert response.status == 200, path
        else:
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        await assert_conforms(method, path, response)
    token = camera_token("camera-secret", "default")
    authorized = await client.post(
        "/send_logs", json={"logs": []}, headers={"Authorization": f"Bearer {token}"}
    )
    assert authorized.status == 404  # past auth: no command awaits it


async def test_camera_timeout_conforms(make_client: MakeClient) -> None:
    client = await make_client(response_timeout_seconds=0.1)
    poll = asyncio.create_task(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay_of(client)))
    logs = asyncio.create_task(client.get("/logs"))
    assert (await poll).status == 200  # the camera takes the command and never answers
    response = await logs
    assert response.status == 504
    await assert_conforms("GET", "/logs", response)


async def test_shutdown_answers_conform(make_client: MakeClient) -> None:
    client = await make_client()
    relay = relay_of(client)
    poll = asyncio.create_task(client.get("/poll_for_command"))
    await wait_until(camera_polling(relay))
    logs = asyncio.create_task(client.get("/logs"))
    assert (await poll).status == 200  # the camera took the command ...
    await wait_until(lambda: relay.cameras()[0].in_flight == 1)
    relay_of(client).close()  # ... and the server began shutting down
    await assert_conforms("GET", "/logs", await logs)
    assert logs.result().status == 503
    result = await client.post("/send_logs", json={"logs": []})
    assert result.status == 503
    await assert_conforms("POST", "/send_logs", result)
    poll = await client.get("/poll_for_command")
    assert poll.status == 503
    await assert_conforms("GET", "/poll_for_command", poll)
    health = await assert_conforms("GET", "/healthz", await client.get("/healthz"))
    assert health["status"] == "stopping"


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json", "/cameras"])
async def test_head_answers_conform(client: Client, path: str) -> None:
    response = await client.head(path)
    assert response.status == 200
    await assert_conforms("HEAD", path, response)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/logs"), ("HEAD", "/logs"), ("HEAD", "/poll_for_command"), ("GET", "/send_logs")],
)
async def test_undocumented_methods_are_405_problems(
    client: Client, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert response.status == 405
    assert response.headers["Allow"]
    assert method not in response.headers["Allow"]
    assert method.lower() not in DOCUMENT["paths"][path]
    if method != "HEAD":
        assert response.content_type == "application/problem+json"
        validate(
            await response.json(content_type=None), DOCUMENT["components"]["schemas"]["Problem"]
        )


async def test_framework_errors_are_problem_json(client: Client) -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    missing = await client.get("/nowhere")
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    validate(await missing.json(content_type=None), problem)
