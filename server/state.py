"""Typed application state: the keys and the getters handlers read it through."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .metrics import RelayMetrics
from .relay import Relay
from .settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
RELAY_KEY = web.AppKey("relay", Relay)
METRICS_KEY = web.AppKey("metrics", RelayMetrics)
#: Redis as this node sees it: "up", "down", or "unused" (one process, no cluster)
REDIS_STATE_KEY: web.AppKey[Callable[[], str]] = web.AppKey("redis_state")
#: ``time.monotonic()`` when the app was created
STARTED_AT_KEY = web.AppKey("started_at", float)


def get_settings(app: web.Application) -> Settings:
    return app[SETTINGS_KEY]


def get_relay(app: web.Application) -> Relay:
    return app[RELAY_KEY]


def get_metrics(app: web.Application) -> RelayMetrics:
    return app[METRICS_KEY]


def get_started_at(app: web.Application) -> float:
    return app[STARTED_AT_KEY]


def get_redis_state(app: web.Application) -> str:
    return app[REDIS_STATE_KEY]()
