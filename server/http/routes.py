"""The URL map."""

from __future__ import annotations

from aiohttp import web

from ..console import setup_console
from . import views


def setup_routes(app: web.Application) -> None:
    # No HEAD on these two: it would take a camera's poll or start a round trip.
    app.router.add_get(
        "/poll_for_command", views.poll_for_command, name="poll_for_command", allow_head=False
    )
    app.router.add_post("/send_logs", views.send_logs, name="send_logs")
    app.router.add_get("/logs", views.get_logs, name="logs", allow_head=False)
    app.router.add_get("/cameras", views.list_cameras, name="cameras")
    app.router.add_get("/healthz", views.healthz, name="healthz")
    app.router.add_get("/metrics", views.metrics, name="metrics")
    app.router.add_get("/openapi.json", views.openapi, name="openapi")
    setup_console(app)
