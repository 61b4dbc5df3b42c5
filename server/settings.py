"""Server settings: read from the environment once, validated, then frozen."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import secrets
import socket
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from common.grammar import DECIMAL_PATTERN, WHOLE_NUMBER_PATTERN

from .relay import RelayConfig

Number = TypeVar("Number", int, float)

#: The original camera's client timeout: a held poll must end before it.
CAMERA_CLIENT_TIMEOUT_SECONDS = 60.0
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
#: the default result budget, in uploads of the largest size
RESULT_BUDGET_UPLOADS = 8
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: node processes ``--workers``/``WORKERS`` may ask for at most (each is a process)
MAX_WORKERS = 1024
#: a number longer than this is refused unread (int() itself refuses 4,300 digits)
MAX_NUMBER_CHARACTERS = 400
#: a node name goes into Redis keys and log lines
NODE_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")


def default_node_name() -> str:
    """Host name, pid and a random suffix: unique even for two nodes in one container."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:60] or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


def redact_redis_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, errors and /healthz)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(unparseable URL)"
    netloc = parts.netloc
    if password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class EnvVar:
    """One environment variable ``Settings.from_env`` reads: for ``--help`` and .env.example."""

    name: str
    default: str
    description: str


#: Every variable ``Settings.from_env`` reads, in the order ``python -m server --help`` lists
#: them (tests/test_deploy.py checks this list, .env.example and from_env agree).
ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("HOST", "0.0.0.0", "address to listen on"),
    EnvVar("PORT", "8080", "TCP port to listen on"),
    EnvVar("API_TOKEN", "unset (auth off)", "bearer token /logs and /cameras require"),
    EnvVar("CAMERA_SECRET", "unset (auth off)", "secret camera tokens derive from (camera-token)"),
    EnvVar("POLL_HOLD_SECONDS", "30", "how long a camera's poll is held open"),
    EnvVar(
        "POLL_TIMEOUT_SECONDS", "60", "the cameras' client timeout: the hold must stay below it"
    ),
    EnvVar("CONNECT_TIMEOUT_SECONDS", "10", "how long /logs waits for a poll to take its work"),
    EnvVar("RESPONSE_TIMEOUT_SECONDS", "30", "how long a delivered command's result may take"),
    EnvVar("MAX_UPLOAD_BYTES", "67108864", "largest /send_logs body (64 MiB)"),
    EnvVar("MAX_WAITING_PER_CAMERA", "10000", "/logs callers queued per camera; more get 503"),
    EnvVar("MAX_CAMERAS", "100000", "camera ids held; a poll from one more new id gets 503"),
    EnvVar("CAMERA_RETENTION_SECONDS", "3600", "an idle camera is forgotten once unseen this long"),
    EnvVar(
        "MAX_RESULT_BYTES_IN_FLIGHT",
        "8 x MAX_UPLOAD_BYTES",
        "bytes of results held or being read at once",
    ),
    EnvVar("BODY_TIMEOUT_SECONDS", "30", "longest pause between two chunks of an upload"),
    EnvVar("WRITE_TIMEOUT_SECONDS", "30", "longest a /logs answer waits for a slow reader"),
    EnvVar(
        "MIN_TRANSFER_BYTES_PER_SECOND", "65536", "slowest average upload/download rate allowed"
    ),
    EnvVar("HEADER_TIMEOUT_SECONDS", "10", "a new connection's request head must be in by then"),
    EnvVar("KEEPALIVE_TIMEOUT_SECONDS", "15", "an idle keep-alive connection is closed after"),
    EnvVar("SHUTDOWN_TIMEOUT_SECONDS", "3", "a stop answers every poll and caller within this"),
    EnvVar("LOG_LEVEL", "INFO", "CRITICAL, ERROR, WARNING, INFO or DEBUG"),
    EnvVar("LOG_FORMAT", "text", "text or json (one JSON object a line)"),
    EnvVar(
        "WORKERS",
        "1",
        "node processes on PORT under a supervisor (more than 1: REDIS_URL; at most 1024)",
    ),
    EnvVar("REDIS_URL", "unset (single node)", "cluster mode: redis://, rediss:// or unix://"),
    EnvVar("REDIS_CLUSTER", "0", "1: REDIS_URL names any node of a Redis Cluster"),
    EnvVar("REDIS_PREFIX", "camrelay", "prefix of every Redis key (one cluster per prefix)"),
    EnvVar("NODE_NAME", "host-pid-random", "this node's name in Redis keys and log lines"),
    EnvVar("NODE_TIMEOUT_SECONDS", "5", "a node silent this long is taken for dead"),
)


def settings_help(width: int = 79) -> str:
    """The ``ENVIRONMENT`` table as plain text: each name, then its description and default."""
    indent = 2 + max(len(var.name) for var in ENVIRONMENT) + 2
    lines = []
    for var in ENVIRONMENT:
        text = f"  {var.name:<{indent - 2}}{var.description}; default {var.default}"
        lines.append(
            textwrap.fill(text, width, subsequent_indent=" " * indent, break_on_hyphens=False)
        )
    return "\n".join(lines)


class ConfigError(ValueError):
    """A bad environment value; the message is one line naming the variable."""


@dataclass(frozen=True, repr=False)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    poll_hold_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    response_timeout_seconds: float = 30.0
    max_upload_bytes: int = 64 * 1024 * 1024
    max_waiting_per_camera: int = 10_000
    #: camera ids the registry holds; a poll from one more new id gets 503
    max_cameras: int = 100_000
    #: an idle camera that has answered a command is forgotten once unseen this long
    camera_retention_seconds: float = 3600.0
    #: results held or being read, in bytes; None: 8x max_upload_bytes
    max_result_bytes_in_flight: int | None = None
    #: the longest a /send_logs body may pause between two chunks
    body_timeout_seconds: float = 30.0
    #: the longest one piece of a /logs answer may wait for the caller to read
    write_timeout_seconds: float = 30.0
    #: the slowest average rate a body is read or an answer written at (after the
    #: grace of BODY_TIMEOUT_SECONDS / WRITE_TIMEOUT_SECONDS): 64 KiB/s lets a 64 MiB
    #: transfer take 1024 s more than its grace, yet no trickle holds memory for hours
    min_transfer_bytes_per_second: int = 64 * 1024
    #: secrets stay out of the repr (start-up logs it); auth being off is logged on its own
    api_token: str | None = field(default=None, repr=False)
    camera_secret: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "text"
    #: node processes ``python -m server`` runs on PORT (more than 1 needs REDIS_URL)
    workers: int = 1
    #: the cameras' client timeout (the camera's POLL_TIMEOUT_SECONDS): the hold must be shorter
    camera_poll_timeout_seconds: float = CAMERA_CLIENT_TIMEOUT_SECONDS
    #: a graceful stop (SIGTERM) ends within this: held polls get noop at once, callers
    #: their result if it comes in time, else 503
    shutdown_timeout_seconds: float = 3.0
    #: a new connection's first request line and headers must be in by then
    header_timeout_seconds: float = 10.0
    #: between requests (never during one): a camera polls again about 1 s after each
    #: answer and a script calls again within seconds, so both keep their connection;
    #: an idle one is closed in seconds, not at aiohttp's 3630 s
    keepalive_timeout_seconds: float = 15.0
    #: pending connections the kernel queues: a burst of users must not see SYN drops
    listen_backlog: int = 4096
    #: how late a refused new camera id is answered (not read from the environment)
    camera_refusal_delay_seconds: float = 1.0
    #: cluster mode when set; may hold a password, so it never goes into the repr
    redis_url: str | None = field(default=None, repr=False)
    #: REDIS_URL names a node of a Redis Cluster (the fleet is spread over its shards)
    redis_cluster: bool = False
    redis_prefix: str = "camrelay"
    node_name: str = field(default_factory=default_node_name)
    node_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.poll_hold_seconds >= self.camera_poll_timeout_seconds:
            raise ConfigError(
                "POLL_HOLD_SECONDS must be below the cameras' client timeout "
                f"(POLL_TIMEOUT_SECONDS, {self.camera_poll_timeout_seconds:g} s), "
                f"got {self.poll_hold_seconds:g}"
            )
        if self.header_timeout_seconds > self.keepalive_timeout_seconds:
            # aiohttp starts its keep-alive timer when a connection opens, so it cuts a
            # first head that is late by KEEPALIVE_TIMEOUT_SECONDS whatever this says.
            raise ConfigError(
                "HEADER_TIMEOUT_SECONDS must be at most KEEPALIVE_TIMEOUT_SECONDS "
                f"({self.keepalive_timeout_seconds:g} s), which bounds a new connection's "
                "first request head as well: raise both for clients that connect long "
                f"before they send, got {self.header_timeout_seconds:g}"
            )
        unanswered = self.poll_hold_seconds + self.connect_timeout_seconds
        if self.camera_retention_seconds < unanswered:
            raise ConfigError(
                "CAMERA_RETENTION_SECONDS must be at least POLL_HOLD_SECONDS + "
                f"CONNECT_TIMEOUT_SECONDS ({unanswered:g} s, how long a camera that never "
                f"answered a command is kept), got {self.camera_retention_seconds:g}"
            )
        if self.redis_url is not None:
            _check_redis_url(self.redis_url, cluster=self.redis_cluster)
        elif self.redis_cluster:
            raise ConfigError(
                "REDIS_CLUSTER=1 needs REDIS_URL, the address of any node of the Redis "
                "Cluster (redis://host:port); without REDIS_URL the server runs as one "
                "process: unset REDIS_CLUSTER for that"
            )
        if not NODE_NAME_PATTERN.fullmatch(self.node_name):
            raise ConfigError(
                f"NODE_NAME must be 1-100 characters of A-Z a-z 0-9 . _ -, got {self.node_name!r}"
            )
        if not NODE_NAME_PATTERN.fullmatch(self.redis_prefix):
            raise ConfigError(
                "REDIS_PREFIX must be 1-100 characters of A-Z a-z 0-9 . _ -, "
                f"got {self.redis_prefix!r}"
            )

        if self.result_budget_bytes < self.max_upload_bytes:
            raise ConfigError(
                "MAX_RESULT_BYTES_IN_FLIGHT must be at least MAX_UPLOAD_BYTES "
                f"({self.max_upload_bytes}): one upload must fit, got {self.result_budget_bytes}"
            )

    @property
    def result_budget_bytes(self) -> int:
        if self.max_result_bytes_in_flight is None:
            return RESULT_BUDGET_UPLOADS * self.max_upload_bytes
        return self.max_result_bytes_in_flight

    @property
    def redis_url_redacted(self) -> str | None:
        return None if self.redis_url is None else redact_redis_url(self.redis_url)

    def __repr__(self) -> str:
        # The dataclass repr leaves redis_url out (a password); show where it points.
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"Settings({fields}, redis={self.redis_url_redacted!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        return cls(
            host=reader.text("HOST", cls.host),
            port=reader.number("PORT", int, cls.port, minimum=0, maximum=65535),
            poll_hold_seconds=reader.number("POLL_HOLD_SECONDS", float, cls.poll_hold_seconds),
            connect_timeout_seconds=reader.number(
                "CONNECT_TIMEOUT_SECONDS", float, cls.connect_timeout_seconds
            ),
            response_timeout_seconds=reader.number(
                "RESPONSE_TIMEOUT_SECONDS", float, cls.response_timeout_seconds
            ),
            max_upload_bytes=reader.number("MAX_UPLOAD_BYTES", int, cls.max_upload_bytes),
            max_waiting_per_camera=reader.number(
                "MAX_WAITING_PER_CAMERA", int, cls.max_waiting_per_camera
            ),
            max_cameras=reader.number("MAX_CAMERAS", int, cls.max_cameras),
            camera_retention_seconds=reader.number(
                "CAMERA_RETENTION_SECONDS", float, cls.camera_retention_seconds
            ),
            # 0 (unset) leaves the default: 8x MAX_UPLOAD_BYTES
            max_result_bytes_in_flight=reader.number("MAX_RESULT_BYTES_IN_FLIGHT", int, 0) or None,
            body_timeout_seconds=reader.number(
                "BODY_TIMEOUT_SECONDS", float, cls.body_timeout_seconds
            ),
            write_timeout_seconds=reader.number(
                "WRITE_TIMEOUT_SECONDS", float, cls.write_timeout_seconds
            ),
            min_transfer_bytes_per_second=reader.number(
                "MIN_TRANSFER_BYTES_PER_SECOND", int, cls.min_transfer_bytes_per_second
            ),
            api_token=reader.secret("API_TOKEN"),
            camera_secret=reader.secret("CAMERA_SECRET"),
            log_level=reader.choice("LOG_LEVEL", LOG_LEVELS, cls.log_level),
            log_format=reader.choice("LOG_FORMAT", LOG_FORMATS, cls.log_format),
            header_timeout_seconds=reader.number(
                "HEADER_TIMEOUT_SECONDS", float, cls.header_timeout_seconds
            ),
            keepalive_timeout_seconds=reader.number(
                "KEEPALIVE_TIMEOUT_SECONDS", float, cls.keepalive_timeout_seconds
            ),
            shutdown_timeout_seconds=reader.number(
                "SHUTDOWN_TIMEOUT_SECONDS", float, cls.shutdown_timeout_seconds
            ),
            workers=reader.number("WORKERS", int, cls.workers, minimum=1, maximum=MAX_WORKERS),
            camera_poll_timeout_seconds=reader.number(
                "POLL_TIMEOUT_SECONDS", float, cls.camera_poll_timeout_seconds
            ),
            redis_url=reader.secret("REDIS_URL"),
            redis_cluster=reader.flag("REDIS_CLUSTER", cls.redis_cluster),
            redis_prefix=reader.text("REDIS_PREFIX", cls.redis_prefix),
            node_name=reader.text("NODE_NAME", "") or default_node_name(),
            node_timeout_seconds=reader.number(
                "NODE_TIMEOUT_SECONDS", float, cls.node_timeout_seconds
            ),
        )

    def transfer_seconds(self, grace_seconds: float, size: int) -> float:
        """The longest a transfer of ``size`` bytes may take: ``grace_seconds`` plus
        ``size`` at ``MIN_TRANSFER_BYTES_PER_SECOND``."""
        return grace_seconds + size / self.min_transfer_bytes_per_second

    @property
    def relay_config(self) -> RelayConfig:
        return RelayConfig(
            poll_hold_seconds=self.poll_hold_seconds,
            connect_timeout_seconds=self.connect_timeout_seconds,
            response_timeout_seconds=self.response_timeout_seconds,
            max_waiting_per_camera=self.max_waiting_per_camera,
            max_cameras=self.max_cameras,
            refusal_delay_seconds=self.camera_refusal_delay_seconds,
            session_retention_seconds=self.camera_retention_seconds,
            max_result_bytes_in_flight=self.result_budget_bytes,
        )

    @property
    def log_level_number(self) -> int:
        return logging.getLevelNamesMapping()[self.log_level]


def _check_redis_url(url: str, *, cluster: bool) -> None:
    shown = redact_redis_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ConfigError(f"REDIS_URL is not a valid URL: {shown!r}") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"REDIS_URL must start with redis://, rediss:// or unix://, got {shown!r}"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(f"REDIS_URL needs a socket path (unix:///path/redis.sock), got {shown!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"REDIS_URL needs a host (redis://host:6379/0), got {shown!r}")
    if cluster and parts.scheme == "unix":
        raise ConfigError(
            "REDIS_CLUSTER=1 needs a redis:// or rediss:// REDIS_URL (a node of the "
            "Redis Cluster), not a unix socket"
        )
    # Imported here: a single process (no REDIS_URL) has no use for redis-py at start-up.
    from redis.asyncio.connection import parse_url

    try:  # the options in its query, as redis-py reads them when it connects
        options = parse_url(url)
    except ValueError as error:
        raise ConfigError(f"REDIS_URL {shown!r}: {error}") from None
    if cluster and options.get("db") not in (None, 0):
        raise ConfigError(
            f"REDIS_CLUSTER=1 needs database 0 in REDIS_URL (a Redis Cluster has no other), "
            f"got {shown!r}"
        )


class _EnvReader:
    """Parses one variable at a time; an empty value counts as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def secret(self, name: str) -> str | None:
        return self._raw(name)

    def flag(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.upper() in allowed:
            return raw.upper()
        if raw.lower() in allowed:
            return raw.lower()
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")

    def number(
        self,
        name: str,
        kind: Callable[[str], Number],
        default: Number,
        *,
        minimum: Number | None = None,
        maximum: Number | None = None,
    ) -> Number:
        raw = self._raw(name)
        if raw is None:
            return default
        noun = "a whole number" if kind is int else "a number"
        pattern = WHOLE_NUMBER_PATTERN if kind is int else DECIMAL_PATTERN
        if not pattern.fullmatch(raw):
            raise ConfigError(f"{name} must be {noun}, got {raw!r}")
        if len(raw) > MAX_NUMBER_CHARACTERS:
            raise ConfigError(f"{name} is far out of range: {len(raw)} characters long")
        value = kind(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
        if minimum is None and value <= 0:
            raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{name} must be at most {maximum}, got {raw!r}")
        return value
