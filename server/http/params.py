"""Checking what clients send: query parameters and the framing of result bodies."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from common.grammar import (
    CAMERA_ID_RULE,
    CAMERA_PREFIX_PATTERN,
    DECIMAL_PATTERN,
    WHOLE_NUMBER_PATTERN,
    is_camera_id,
)

from ..relay import TimeRange, shown
from ..relay.logscan import EXACT_DOUBLE_LIMIT, EXACT_INTEGERS
from .problems import ProblemError

DEFAULT_CAMERA_ID = "default"


def invalid_parameter(detail: str) -> ProblemError:
    return ProblemError(400, detail, kind="invalid-parameter")


Query = MultiDictProxy[str]


def query_of(request: web.Request) -> Query:
    """The request's query parameters, parsed as ``request.query`` parses them but not
    kept on the request, which lasts a whole hold for a held poll: parse once per
    handler and pass the result on."""
    return URL.build(query_string=request.rel_url.raw_query_string, encoded=True).query


def single_query_value(query: Query, name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise invalid_parameter(f"{name} must be given at most once, got {len(values)} values")
    return values[0] if values else None


def camera_id_param(query: Query) -> str:
    raw = single_query_value(query, "cameraId")
    if raw is None:
        return DEFAULT_CAMERA_ID
    if not is_camera_id(raw):
        raise invalid_parameter(f"cameraId must be {CAMERA_ID_RULE}, got {shown(raw)}")
    return raw


def timestamp_param(query: Query, name: str) -> float | None:
    raw = single_query_value(query, name)
    if raw is None:
        return None
    if not DECIMAL_PATTERN.fullmatch(raw):
        plus_read_as_space = raw.startswith(" ") and DECIMAL_PATTERN.fullmatch("+" + raw[1:])
        raise invalid_parameter(
            f"{name} must be a finite decimal number such as 1700000000 or 1700000000.25, "
            f"got {shown(raw)}"
            + (
                " (a + in a query string is read as a space: write it as %2B, or leave it out)"
                if plus_read_as_space
                else ""
            )
        )
    value = float(raw)
    if not math.isfinite(value):
        raise invalid_parameter(
            f"{name} must be a finite number, got {shown(raw)}, which is out of range"
        )
    if abs(value) >= EXACT_DOUBLE_LIMIT and WHOLE_NUMBER_PATTERN.fullmatch(raw):
        # An integer the camera sends is read exactly while it fits in 64 bits (orjson),
        # and compared as the integer: a bound written as one is kept exact the same way.
        digits = raw.lstrip("+-").lstrip("0")
        if len(digits) <= 20:  # 64 bits at most (int() takes no more than 4,300 digits)
            exact = -int(digits) if raw.startswith("-") else int(digits)
            if EXACT_INTEGERS[0] <= exact <= EXACT_INTEGERS[1] and float(exact) != exact:
                return exact
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


def camera_query_params(query: Query) -> CameraQuery | None:
    """The ``/cameras`` filter and page, or ``None`` when none of its parameters is given."""
    if not any(name in query for name in CAMERA_QUERY_NAMES):
        return None
    prefix = single_query_value(query, "prefix") or ""
    if not CAMERA_PREFIX_PATTERN.fullmatch(prefix):
        raise invalid_parameter(
            f"prefix must be up to 64 characters of A-Z a-z 0-9 . _ -, got {shown(prefix)}"
        )
    online_raw = single_query_value(query, "online")
    if online_raw not in (None, "true", "false"):
        raise invalid_parameter(f"online must be true or false, got {shown(online_raw)}")
    after = single_query_value(query, "after")
    if after is not None and not is_camera_id(after):
        raise invalid_parameter(
            "after must be a camera id (1-64 characters of A-Z a-z 0-9 . _ -), usually the "
            f"'next' of the previous page, got {shown(after)}"
        )
    return CameraQuery(
        prefix,
        None if online_raw is None else online_raw == "true",
        after,
        _page_size(single_query_value(query, "limit")),
    )


def _page_size(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not PAGE_SIZE_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_CAMERAS_PAGE:
        raise invalid_parameter(
            f"limit must be a whole number from 1 to {MAX_CAMERAS_PAGE}, got {shown(raw)}"
        )
    return int(raw)


#: a ``/logs`` call with neither bound (most of them): one shared range
UNBOUNDED = TimeRange()


def time_range_params(query: Query) -> TimeRange:
    if "startTimestamp" not in query and "endTimestamp" not in query:
        return UNBOUNDED
    start = timestamp_param(query, "startTimestamp")
    end = timestamp_param(query, "endTimestamp")
    if start is not None and end is not None and start > end:
        raise invalid_parameter(
            f"startTimestamp ({start!r}) must not be greater than endTimestamp ({end!r})"
        )
    return TimeRange(start, end)


#: The header a ``/logs`` answer carries when a bound looks like a finer unit than seconds.
HINT_HEADER = "X-Camrelay-Hint"
#: A bound this large (year 5138 in seconds) is no epoch second: milliseconds and finer
#: units, from their lower end up, with what to divide them by.
FINER_UNITS = (
    (1e17, "nanoseconds", 10**9),
    (1e14, "microseconds", 10**6),
    (1e11, "milliseconds", 1000),
)
FINER_UNITS_END = 1e20


def unit_hint(time_range: TimeRange) -> str | None:
    """A sentence for each bound that looks like milliseconds (or a finer unit), else ``None``.

    Timestamps are epoch seconds, as the camera's ``time.time()``: a bound of
    ``1700000000000`` finds nothing, which is easy to miss in a 200.
    """
    if time_range.start is None and time_range.end is None:
        return None
    hints = []
    for name, value in (("startTimestamp", time_range.start), ("endTimestamp", time_range.end)):
        if value is None or not FINER_UNITS[-1][0] <= abs(value) < FINER_UNITS_END:
            continue
        unit, divisor = next((u, d) for low, u, d in FINER_UNITS if abs(value) >= low)
        hints.append(
            f"{name}={_plain(value)} looks like {unit}, but timestamps are epoch seconds "
            f"(if the camera's are too, use {name}={_plain(value / divisor)})"
        )
    return "; ".join(hints) or None


def _plain(value: float) -> str:
    """A number as digits, no exponent, no trailing zeros: ``1700000000.123``."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


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
