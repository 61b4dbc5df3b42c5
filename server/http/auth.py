"""Bearer-token checks: the user token and per-camera HMAC tokens."""

from __future__ import annotations

import enum
import hashlib
import hmac

from aiohttp import web

from .problems import ProblemError


def camera_token(camera_secret: str, camera_id: str) -> str:
    """The token a camera proves its id with: hex HMAC-SHA256(key=secret, msg=cameraId)."""
    return hmac.new(camera_secret.encode(), camera_id.encode(), hashlib.sha256).hexdigest()


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _same(given: str | None, expected: str) -> bool:
    if given is None:
        return False
    # Header bytes that are not UTF-8 arrive as surrogates: compare them, do not fail.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


class AuthFault(enum.Enum):
    """What is wrong with a request's credentials. A detail names the fault, never
    any part of what was sent (``Authorization: s3cret`` has the token as its scheme)."""

    MISSING = "missing"  # no Authorization header, or an empty one
    NOT_BEARER = "not-bearer"  # a scheme other than Bearer, or Bearer with no token
    MISMATCH = "mismatch"  # a bearer token, not the expected one


def auth_fault(request: web.Request, expected: str) -> AuthFault | None:
    """``None`` when the request carries ``Authorization: Bearer <expected>``."""
    if not request.headers.get("Authorization", "").strip():
        return AuthFault.MISSING
    token = bearer_token(request)
    if token is None:
        return AuthFault.NOT_BEARER
    return None if _same(token, expected) else AuthFault.MISMATCH


def _challenge(realm: str, fault: AuthFault) -> dict[str, str]:
    """``WWW-Authenticate``: RFC 6750's ``invalid_token`` for a token that does not match;
    no error code for a request without bearer credentials."""
    value = f'Bearer realm="{realm}"'
    if fault is AuthFault.MISMATCH:
        value += ', error="invalid_token"'
    return {"WWW-Authenticate": value}


def require_user(request: web.Request, api_token: str | None) -> None:
    if api_token is None:
        return
    fault = auth_fault(request, api_token)
    if fault is None:
        return
    if fault is AuthFault.MISSING:
        detail = (
            "the request has no Authorization header, and this server has API_TOKEN set: "
            "send 'Authorization: Bearer <API_TOKEN>' to use this endpoint"
        )
    elif fault is AuthFault.NOT_BEARER:
        detail = (
            "the Authorization header does not use the Bearer scheme: send it as "
            "'Authorization: Bearer <API_TOKEN>' (the word Bearer, a space, then the token)"
        )
    else:
        detail = (
            "the bearer token does not match this server's API_TOKEN: check the token "
            "sent in 'Authorization: Bearer <API_TOKEN>'"
        )
    raise ProblemError(401, detail, kind="unauthorized", headers=_challenge("camrelay", fault))


def require_camera(request: web.Request, camera_secret: str | None, camera_id: str) -> None:
    if camera_secret is None:
        return
    fault = auth_fault(request, camera_token(camera_secret, camera_id))
    if fault is None:
        return
    printed = f"the token printed by 'python -m server camera-token {camera_id}'"
    if fault is AuthFault.MISSING:
        detail = (
            f"camera {camera_id!r} sent no Authorization header, and this server has "
            f"CAMERA_SECRET set: send 'Authorization: Bearer <token>' with {printed}"
        )
    elif fault is AuthFault.NOT_BEARER:
        detail = (
            f"camera {camera_id!r} sent an Authorization header that does not use the Bearer "
            f"scheme: send 'Authorization: Bearer <token>' with {printed}"
        )
    else:
        detail = (
            f"camera {camera_id!r} sent a bearer token that is not its own: send {printed} "
            "on the server (a token is valid for one cameraId and one CAMERA_SECRET)"
        )
    raise ProblemError(
        401, detail, kind="unauthorized", headers=_challenge("camrelay-camera", fault)
    )
