"""How every error reads over HTTP: the one table from an error to its problem.

Relay errors map through ``RELAY_PROBLEMS`` (status, problem type, Retry-After);
the framework's own HTTP errors (no route, wrong method, body too large) get a
detail a person can act on. The error middleware asks ``problem_for`` and
nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ..cluster.unavailable import ClusterUnavailable
from ..relay import (
    CameraOffline,
    CameraTimeout,
    CameraUnknown,
    PollSuperseded,
    QueueFull,
    RegistryFull,
    RelayError,
    ShuttingDown,
    TooManyUploads,
    UnknownRequest,
)
from ..state import get_settings
from .problems import ProblemError


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """A status, a problem type name, and the seconds to send as Retry-After (if any)."""

    status: int
    kind: str
    retry_after: int | None = None


RELAY_PROBLEMS: Final[Mapping[type[RelayError], ProblemKind]] = {
    CameraOffline: ProblemKind(503, "camera-offline", retry_after=5),
    # Its own type, so that a client can tell a typo from a camera that went away; the
    # contract asks for Retry-After on every 503: a long one, since retrying fixes no typo.
    CameraUnknown: ProblemKind(503, "camera-unknown", retry_after=30),
    QueueFull: ProblemKind(503, "queue-full", retry_after=1),
    ShuttingDown: ProblemKind(503, "shutting-down", retry_after=5),
    RegistryFull: ProblemKind(503, "registry-full", retry_after=30),
    CameraTimeout: ProblemKind(504, "camera-timeout"),
    PollSuperseded: ProblemKind(409, "poll-superseded"),
    UnknownRequest: ProblemKind(404, "unknown-request"),
    TooManyUploads: ProblemKind(429, "too-many-uploads", retry_after=1),
    ClusterUnavailable: ProblemKind(503, "cluster-unavailable", retry_after=2),
}


def problem_for(
    request: web.Request, error: ProblemError | RelayError | web.HTTPException
) -> ProblemError:
    """The problem an error answers with (an ``HTTPException`` here is a 4xx/5xx)."""
    if isinstance(error, ProblemError):
        return error
    if isinstance(error, RelayError):
        return relay_problem(error)
    return _framework_problem(request, error)


def relay_problem(error: RelayError) -> ProblemError:
    for cls in type(error).__mro__:
        kind = RELAY_PROBLEMS.get(cls)
        if kind is not None:
            headers = {} if kind.retry_after is None else {"Retry-After": str(kind.retry_after)}
            return ProblemError(kind.status, error.detail, kind=kind.kind, headers=headers)
    raise TypeError(f"no HTTP mapping for {type(error).__name__}: add it to RELAY_PROBLEMS")


def _framework_problem(request: web.Request, error: web.HTTPException) -> ProblemError:
    headers = {
        k: v
        for k, v in error.headers.items()
        if k.lower() not in {"content-type", "content-length"}
    }
    if error.status == 404:
        detail = f"there is no endpoint at {request.path}; see /openapi.json for the API"
    elif error.status == 405:
        allowed = headers.get("Allow", "")
        detail = f"{request.method} is not allowed on {request.path}; use {allowed}"
    elif error.status == 413:
        limit = get_settings(request.app).max_upload_bytes
        detail = f"the body is larger than MAX_UPLOAD_BYTES ({limit} bytes); send less per request"
    else:
        detail = error.text or error.reason
    return ProblemError(error.status, detail, headers=headers)
