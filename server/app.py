"""The application factory used by ``python -m server``, adev and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .cluster import ClusterConfig, ClusterRelay
from .eventlog import EventLogger
from .metrics import ClusterMetrics, RelayMetrics
from .middlewares import logs_outcomes, problem_errors, request_context
from .relay import FanOutObserver, Relay
from .routes import setup_routes
from .settings import Settings
from .state import (
    METRICS_KEY,
    REDIS_STATE_KEY,
    RELAY_KEY,
    SETTINGS_KEY,
    STARTED_AT_KEY,
    get_relay,
    get_settings,
)

logger = logging.getLogger("camrelay")
SWEEP_INTERVAL_SECONDS = 5.0


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings if settings is not None else Settings.from_env()
    app = web.Application(
        client_max_size=settings.max_upload_bytes,
        middlewares=[request_context, logs_outcomes, problem_errors],
    )
    metrics = RelayMetrics()
    observer = FanOutObserver(metrics, EventLogger())
    relay: Relay
    if settings.redis_url is None:
        relay = Relay(settings.relay_config, observer=observer)
        app[REDIS_STATE_KEY] = lambda: "unused"
    else:
        relay = cluster_relay(settings, observer, metrics)
        app.cleanup_ctx.append(_cluster_membership)
    metrics.read_state_from(relay.stats)
    app[SETTINGS_KEY] = settings
    app[RELAY_KEY] = relay
    app[METRICS_KEY] = metrics
    app[STARTED_AT_KEY] = time.monotonic()
    setup_routes(app)
    app.on_startup.append(_warn_when_auth_is_off)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_close_relay)
    return app


def cluster_relay(
    settings: Settings, observer: FanOutObserver, metrics: RelayMetrics
) -> ClusterRelay:
    assert settings.redis_url is not None
    cluster = ClusterConfig(
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        node=settings.node_name,
        node_timeout_seconds=settings.node_timeout_seconds,
        shutdown_timeout_seconds=settings.shutdown_timeout_seconds,
    )
    cluster_metrics = ClusterMetrics(metrics.registry)
    relay = ClusterRelay(settings.relay_config, cluster, observer, cluster_metrics)
    cluster_metrics.read_nodes_alive_from(relay.nodes_alive)
    return relay


async def _cluster_membership(app: web.Application) -> AsyncIterator[None]:
    """The node joins the cluster for the app's lifetime (``close`` hands its work over)."""
    relay = get_relay(app)
    assert isinstance(relay, ClusterRelay)
    app[REDIS_STATE_KEY] = lambda: "up" if relay.redis_up else "down"
    logger.info("node %s: cluster mode on %s", relay.node, get_settings(app).redis_url_redacted)
    await relay.start()
    yield
    await relay.detach()


async def _warn_when_auth_is_off(app: web.Application) -> None:
    settings = get_settings(app)
    if settings.api_token is None:
        logger.warning("API_TOKEN is not set: /logs and /cameras are open to anyone")
    if settings.camera_secret is None:
        logger.warning("CAMERA_SECRET is not set: any client can act as any camera")


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Runs the relay's periodic sweep for the app's lifetime."""
    relay = get_relay(app)
    interval = min(SWEEP_INTERVAL_SECONDS, relay.config.connect_timeout_seconds)

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            await relay.sweep()

    task = asyncio.create_task(sweep_forever(), name="camrelay-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_relay(app: web.Application) -> None:
    """Shutdown: held polls get noop, waiting callers get 503, before connections close."""
    get_relay(app).close()
