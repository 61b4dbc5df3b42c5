"""The URL map."""

from __future__ import annotations

from aiohttp import web

from ..console import setup_console
from . import views
from .expect import expect_continue


def setup_routes(app: web.Application) -> None:
    router = app.router
    # No HEAD on these two: it would take a camera's poll or start a round trip.
    router.add_get(
        "/poll_for_command",
        views.poll_for_command,
        name="poll_for_command",
        allow_head=False,
        expect_handler=expect_continue,
    )
    router.add_post("/send_logs", views.send_logs, name="send_logs", expect_handler=expect_continue)
    router.add_get(
        "/logs", views.get_logs, name="logs", allow_head=False, expect_handler=expect_continue
    )
    router.add_get("/cameras", views.list_cameras, name="cameras", expect_handler=expect_continue)
    router.add_get("/healthz", views.healthz, name="healthz", expect_handler=expect_continue)
    router.add_get("/metrics", views.metrics, name="metrics", expect_handler=expect_continue)
    router.add_get("/openapi.json", views.openapi, name="openapi", expect_handler=expect_continue)
    setup_console(app, expect_continue)
