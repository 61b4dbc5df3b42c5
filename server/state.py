"""Typed application state: the keys and the getters handlers read it through."""

from __future__ import annotations

from aiohttp import web

from .http.uploads import BodiesBeingRead
from .http.writing import AnswersBeingWritten
from .observe.metrics import RelayMetrics
from .relay import RelayService
from .settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
RELAY_KEY = web.AppKey("relay", RelayService)
METRICS_KEY = web.AppKey("metrics", RelayMetrics)
UPLOADS_KEY = web.AppKey("uploads", BodiesBeingRead)
ANSWERS_KEY = web.AppKey("answers", AnswersBeingWritten)
#: ``time.monotonic()`` when the app was created
STARTED_AT_KEY = web.AppKey("started_at", float)


def get_settings(app: web.Application) -> Settings:
    return app[SETTINGS_KEY]


def get_relay(app: web.Application) -> RelayService:
    return app[RELAY_KEY]


def get_metrics(app: web.Application) -> RelayMetrics:
    return app[METRICS_KEY]


def get_uploads(app: web.Application) -> BodiesBeingRead:
    return app[UPLOADS_KEY]


def get_answers(app: web.Application) -> AnswersBeingWritten:
    return app[ANSWERS_KEY]


def get_started_at(app: web.Application) -> float:
    return app[STARTED_AT_KEY]
