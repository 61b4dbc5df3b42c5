"""Parsing and validating what clients send: query parameters and result bodies."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from aiohttp import web

from common.grammar import CAMERA_ID_RULE, CAMERA_PREFIX_PATTERN, DECIMAL_PATTERN, is_camera_id

from .problems import ProblemError
from .relay import LogEntry, TimeRange, shown

DEFAULT_CAMERA_ID = "default"


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
    if not is_camera_id(raw):
        raise invalid_parameter(f"cameraId must be {CAMERA_ID_RULE}, got {shown(raw)}")
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


@dataclass(frozen=True, slots=True)
class CameraQuery:
    """``GET /cameras``'s filter and page: ids starting with ``prefix``, in ``online``
    state when given, after the id ``after``, at most ``limit`` of them."""

    prefix: str
    online: bool | None
    after: str | None
    limit: int | None


CAMERA_QUERY_NAMES = ("prefix", "online", "after", "limit")
MAX_CAMERAS_PAGE = 1000
PAGE_SIZE_PATTERN = re.compile(r"[0-9]{1,7}")


def camera_query_params(request: web.Request) -> CameraQuery | None:
    """The ``/cameras`` filter and page, or ``None`` when none of its parameters is given."""
    if not any(name in request.query for name in CAMERA_QUERY_NAMES):
        return None
    prefix = single_query_value(request, "prefix") or ""
    if not CAMERA_PREFIX_PATTERN.fullmatch(prefix):
        raise invalid_parameter(
            f"prefix must be up to 64 characters of A-Z a-z 0-9 . _ -, got {shown(prefix)}"
        )
    online_raw = single_query_value(request, "online")
    if online_raw not in (None, "true", "false"):
        raise invalid_parameter(f"online must be true or false, got {shown(online_raw)}")
    after = single_query_value(request, "after")
    if after is not None and not is_camera_id(after):
        raise invalid_parameter(
            "after must be a camera id (1-64 characters of A-Z a-z 0-9 . _ -), usually the "
            f"'next' of the previous page, got {shown(after)}"
        )
    return CameraQuery(
        prefix,
        None if online_raw is None else online_raw == "true",
        after,
        _page_size(single_query_value(request, "limit")),
    )


def _page_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not PAGE_SIZE_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_CAMERAS_PAGE:
        raise invalid_parameter(
            f"limit must be a whole number from 1 to {MAX_CAMERAS_PAGE}, got {shown(raw)}"
        )
    return int(raw)


def time_range_params(request: web.Request) -> TimeRange:
    start = timestamp_param(request, "startTimestamp")
    end = timestamp_param(request, "endTimestamp")
    if start is not None and end is not None and start > end:
        raise invalid_parameter(
            f"startTimestamp ({start:g}) must not be greater than endTimestamp ({end:g})"
        )
    return TimeRange(start, end)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def invalid_body(detail: str) -> ProblemError:
    return ProblemError(400, detail, kind="invalid-body")


def parse_result_body(body: bytes) -> tuple[str | None, list[LogEntry]]:
    """``(requestId or None, logs)`` from a ``/send_logs`` body, or a 400 naming the fault."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise invalid_body(f"the body must be valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise invalid_body(
            f'the body must be a JSON object like {{"requestId": "...", "logs": [...]}}, '
            f"got {json_type(data)}"
        )
    request_id = data.get("requestId")
    if request_id is not None and not isinstance(request_id, str):
        raise invalid_body(f"requestId must be a string, got {json_type(request_id)}")
    if "logs" not in data:
        raise invalid_body("logs is required: an array of log entries")
    logs = data["logs"]
    if not isinstance(logs, list):
        raise invalid_body(f"logs must be an array of log entries, got {json_type(logs)}")
    for index, entry in enumerate(logs):
        # The exact-type test is the fast path; the slow one words the error.
        timestamp = entry.get("timestamp") if type(entry) is dict else None
        if type(timestamp) is int or (type(timestamp) is float and math.isfinite(timestamp)):
            continue
        _reject_entry(index, entry)
    try:
        orjson.dumps(logs)  # what /logs will render: orjson writes less nesting than it reads
    except orjson.JSONEncodeError:
        raise invalid_body("a log entry is nested too deeply (at most 250 levels)") from None
    return request_id, logs


def _reject_entry(index: int, entry: object) -> NoReturn:
    if not isinstance(entry, dict):
        raise invalid_body(f"logs[{index}] must be an object, got {json_type(entry)}")
    if "timestamp" not in entry:
        raise invalid_body(f"logs[{index}] has no timestamp: every entry needs a numeric timestamp")
    raise invalid_body(
        f"logs[{index}].timestamp must be a finite number, got {json_type(entry['timestamp'])}"
    )
