"""Bearer-token checks: the user token and per-camera HMAC tokens."""

from __future__ import annotations

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


def require_user(request: web.Request, api_token: str | None) -> None:
    if api_token is None:
        return
    if not _same(bearer_token(request), api_token):
        raise ProblemError(
            401,
            "send 'Authorization: Bearer <API_TOKEN>' to use this endpoint",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="camrelay"'},
        )


def require_camera(request: web.Request, camera_secret: str | None, camera_id: str) -> None:
    if camera_secret is None:
        return
    if not _same(bearer_token(request), camera_token(camera_secret, camera_id)):
        raise ProblemError(
            401,
            f"camera {camera_id!r} must send 'Authorization: Bearer <token>' with the token "
            "printed by 'python -m server camera-token <cameraId>'",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="camrelay-camera"'},
        )
