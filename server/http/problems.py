"""RFC 9457 problem details: every 4xx/5xx body the server sends."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

import orjson
from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:camrelay:problem:"


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A problem+json response; ``kind`` names the problem type (``about:blank`` if unset)."""
    body = {
        "type": f"{PROBLEM_TYPE_BASE}{kind}" if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    return web.Response(
        status=status,
        body=json_bytes(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


class ProblemError(Exception):
    """Raised by request parsing; the error middleware turns it into a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = dict(headers or {})

    def to_response(self) -> web.Response:
        return problem_response(self.status, self.detail, kind=self.kind, headers=self.headers)


#: bodies up to this size are copied out of orjson's buffer; bigger ones fill most of it
SMALL_BODY_BYTES = 2048


def json_bytes(data: object) -> bytes:
    """``data`` as JSON, a small document in an allocation of its own size.

    orjson hands back its working buffer (4 KiB for the smallest document), and a
    keep-alive connection keeps its last response until the next request: a camera's
    small answer would hold 4 KiB until its next poll ends.
    """
    body = orjson.dumps(data)
    return bytes(memoryview(body)) if len(body) <= SMALL_BODY_BYTES else body


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json_bytes(data), content_type="application/json")
