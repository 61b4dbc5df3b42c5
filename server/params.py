"""Checking what clients send: query parameters and the framing of result bodies."""

from __future__ import annotations

import math
import re

from aiohttp import web

from .problems import ProblemError
from .relay import TimeRange, shown

DEFAULT_CAMERA_ID = "default"
CAMERA_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# ASCII digits only: Python's float() also takes other scripts' digits and "1_000".
DECIMAL_PATTERN = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def invalid_parameter(detail: str) -> ProblemError:
    return ProblemError(400, detail, kind="invalid-parameter")


def single_query_value(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise invalid_parameter(f"{name} must be given at most once, got {len(values)} values")
    return values[0] if values else None


def camera_id_param(request: web.Request) -> str:
    raw = single_query_value(request, "cameraId")
    if raw is None:
        return DEFAULT_CAMERA_ID
    if not CAMERA_ID_PATTERN.fullmatch(raw):
        raise invalid_parameter(
            f"cameraId must be 1-64 characters of A-Z a-z 0-9 . _ -, got {shown(raw)}"
        )
    return raw


def timestamp_param(request: web.Request, name: str) -> float | None:
    raw = single_query_value(request, name)
    if raw is None:
        return None
    if not DECIMAL_PATTERN.fullmatch(raw):
        raise invalid_parameter(
            f"{name} must be a finite decimal number such as 1700000000 or 1700000000.25, "
            f"got {shown(raw)}"
        )
    value = float(raw)
    if not math.isfinite(value):
        raise invalid_parameter(
            f"{name} must be a finite number, got {shown(raw)}, which is out of range"
        )
    return value


def time_range_params(request: web.Request) -> TimeRange:
    start = timestamp_param(request, "startTimestamp")
    end = timestamp_param(request, "endTimestamp")
    if start is not None and end is not None and start > end:
        raise invalid_parameter(
            f"startTimestamp ({start:g}) must not be greater than endTimestamp ({end:g})"
        )
    return TimeRange(start, end)


def invalid_body(detail: str) -> ProblemError:
    return ProblemError(400, detail, kind="invalid-body")


def require_json_body(request: web.Request) -> None:
    """A result must be sent as ``application/json`` (415 otherwise)."""
    given = request.headers.get("Content-Type")
    if given is None or request.content_type.lower() != "application/json":
        raise ProblemError(
            415,
            f"send the body as Content-Type: application/json, got {given or 'no Content-Type'}",
            kind="unsupported-media-type",
        )


def declared_body_size(request: web.Request, max_upload_bytes: int) -> int | None:
    """The body's ``Content-Length`` (``None`` when chunked); 413 when over the limit."""
    declared = request.content_length
    if declared is not None and declared > max_upload_bytes:
        raise body_too_large(max_upload_bytes, declared)
    return declared


def body_too_large(max_upload_bytes: int, size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=max_upload_bytes, actual_size=size)
