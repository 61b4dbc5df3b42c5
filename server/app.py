"""The application factory used by ``python -m server``, adev and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .cluster import ClusterConfig, ClusterNode, StoreLimits
from .cluster.redis import RedisBackend
from .http.middlewares import serve_request
from .http.routes import setup_routes
from .http.uploads import BodiesBeingRead
from .http.writing import AnswersBeingWritten
from .observe.events import EventLogger
from .observe.metrics import ClusterMetrics, RelayMetrics
from .relay import FanOutObserver, Relay, RelayService, ShuttingDown
from .settings import Settings
from .state import (
    ANSWERS_KEY,
    METRICS_KEY,
    RELAY_KEY,
    SETTINGS_KEY,
    STARTED_AT_KEY,
    UPLOADS_KEY,
    get_answers,
    get_relay,
    get_settings,
    get_uploads,
)

logger = logging.getLogger("camrelay")
SWEEP_INTERVAL_SECONDS = 5.0
#: The level of this app's start-up lines: DEBUG in a supervised worker, whose supervisor
#: logs one summary (and the auth warnings) for all of them.
STARTUP_LOG_LEVEL_KEY = web.AppKey("startup_log_level", int)


def create_app(
    settings: Settings | None = None, *, startup_log_level: int = logging.INFO
) -> web.Application:
    settings = settings if settings is not None else Settings.from_env()
    app = web.Application(
        client_max_size=settings.max_upload_bytes,
        middlewares=[serve_request],
    )
    metrics = RelayMetrics()
    observer = FanOutObserver(metrics, EventLogger())
    relay: RelayService
    if settings.redis_url is None:
        relay = Relay(settings.relay_config, observer=observer)
    else:
        relay = cluster_node(settings, observer, metrics)
    app.cleanup_ctx.append(_relay_lifetime)
    metrics.read_state_from(relay.stats)
    app[SETTINGS_KEY] = settings
    app[RELAY_KEY] = relay
    app[METRICS_KEY] = metrics
    app[STARTED_AT_KEY] = time.monotonic()
    app[UPLOADS_KEY] = BodiesBeingRead()
    app[ANSWERS_KEY] = AnswersBeingWritten()
    app[STARTUP_LOG_LEVEL_KEY] = startup_log_level
    setup_routes(app)
    app.on_startup.append(_warn_when_auth_is_off)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_close_relay)
    return app


def cluster_node(
    settings: Settings, observer: FanOutObserver, metrics: RelayMetrics
) -> ClusterNode:
    assert settings.redis_url is not None
    config = settings.relay_config
    cluster = ClusterConfig(
        prefix=settings.redis_prefix,
        node=settings.node_name,
        node_timeout_seconds=settings.node_timeout_seconds,
        shutdown_timeout_seconds=settings.shutdown_timeout_seconds,
    )
    limits = StoreLimits(
        node_timeout_seconds=settings.node_timeout_seconds,
        max_cameras=config.max_cameras,
        answered_retention_seconds=config.session_retention_seconds,
        unanswered_retention_seconds=config.unanswered_retention_seconds,
        message_ttl_seconds=max(config.longest_logs_wait * 2, 60.0),
    )
    backend = RedisBackend.from_url(
        settings.redis_url, settings.redis_prefix, limits, cluster=settings.redis_cluster
    )
    cluster_metrics = ClusterMetrics(metrics.registry)
    node = ClusterNode(config, cluster, backend, observer=observer, events=cluster_metrics)
    cluster_metrics.read_nodes_alive_from(node.nodes_alive)
    return node


async def _relay_lifetime(app: web.Application) -> AsyncIterator[None]:
    """The relay service is started with the app and stopped at its end (in cluster mode:
    joins the cluster; ``close`` at shutdown hands its work over first)."""
    relay = get_relay(app)
    if isinstance(relay, ClusterNode):
        redis_url = get_settings(app).redis_url_redacted
        logger.log(
            app[STARTUP_LOG_LEVEL_KEY],
            "node %s: cluster mode on %s",
            relay.incarnation,
            redis_url,
        )
    await relay.start()
    yield
    await relay.stop()


def auth_warnings(settings: Settings) -> list[str]:
    """What start-up warns about when an auth switch is off."""
    warnings = []
    if settings.api_token is None:
        warnings.append("API_TOKEN is not set: /logs and /cameras are open to anyone")
    if settings.camera_secret is None:
        warnings.append("CAMERA_SECRET is not set: any client can act as any camera")
    return warnings


async def _warn_when_auth_is_off(app: web.Application) -> None:
    # A supervised worker's supervisor has warned already, once for all its workers.
    level = logging.WARNING if app[STARTUP_LOG_LEVEL_KEY] >= logging.INFO else logging.DEBUG
    for warning in auth_warnings(get_settings(app)):
        logger.log(level, "%s", warning)


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
    """Shutdown: held polls get noop, waiting callers get 503, uploads whose body has not
    all come 503 (no more of it is read), before connections close; answers still being
    written are cut once the stop's timeout has passed."""
    stop_at = asyncio.get_running_loop().time() + get_settings(app).shutdown_timeout_seconds
    get_answers(app).stop_by(stop_at)
    get_uploads(app).stop_unfinished(
        ShuttingDown(
            "the server is shutting down and reads no more of this body; poll again "
            "(a command left unanswered is sent again)"
        )
    )
    get_relay(app).close()
