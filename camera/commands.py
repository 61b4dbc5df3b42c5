"""Parsing what ``GET /poll_for_command`` answers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Command", "CommandError", "Noop", "SendLogs", "parse_command"]


class CommandError(ValueError):
    """The poll answer is not a command this camera understands."""


@dataclass(frozen=True, slots=True)
class Noop:
    """Nothing to do: poll again."""


@dataclass(frozen=True, slots=True)
class SendLogs:
    """Upload the entries with ``start <= timestamp <= end``."""

    request_id: str | None
    start: float
    end: float


Command = Noop | SendLogs


def parse_command(body: bytes) -> Command:
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CommandError(f"poll answer is not JSON: {_preview(body)}") from None
    if not isinstance(payload, dict):
        raise CommandError(f"poll answer is not a JSON object: {_preview(body)}")
    name = payload.get("command")
    if name == "noop":
        return Noop()
    if name != "send_logs":
        raise CommandError(f"unknown command {name!r}")
    request_id = payload.get("requestId")
    if request_id is not None and not isinstance(request_id, str):
        raise CommandError(f"requestId must be a string, got {request_id!r}")
    return SendLogs(
        request_id=request_id,
        start=_bound(payload, "startTimestamp"),
        end=_bound(payload, "endTimestamp"),
    )


def _bound(payload: dict[str, Any], key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise CommandError(f"send_logs needs a numeric {key}, got {value!r}")
    return value


def _preview(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(body) > limit else ""))
