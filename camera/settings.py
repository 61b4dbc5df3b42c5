"""Camera configuration, read once from the environment and validated."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from yarl import URL

from common.grammar import CAMERA_ID_RULE, DECIMAL_PATTERN, is_camera_id

__all__ = ["CameraSettings", "ConfigError"]

# Header-safe bearer token characters (RFC 6750 b64token and then some):
# visible ASCII, no spaces.  Anything else could not be sent in a header.
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")

_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Upper bound for the two durations: a day is already absurd for either.
MAX_SECONDS: Final = 86400.0


class ConfigError(ValueError):
    """A configuration value is missing or invalid.

    The message is a single line that names the offending variable and never
    contains a secret.
    """


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """Validated camera settings.

    ``api_base_url`` never ends with ``/``; the endpoint paths are appended
    to it.  The token is left out of ``repr()``.
    """

    api_base_url: str
    camera_id: str = "default"
    log_period_seconds: float = 10.0
    poll_timeout_seconds: float = 60.0
    camera_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check_url("API_BASE_URL", self.api_base_url)
        if self.api_base_url.endswith("/"):
            raise ConfigError("API_BASE_URL must not end with '/' (from_env() strips it)")
        _check_camera_id("CAMERA_ID", self.camera_id)
        _check_seconds("LOG_PERIOD_SECONDS", self.log_period_seconds)
        _check_seconds("POLL_TIMEOUT_SECONDS", self.poll_timeout_seconds)
        if self.camera_token is not None and not _TOKEN.fullmatch(self.camera_token):
            # Never echo the value: it is a secret.
            raise ConfigError(
                "CAMERA_TOKEN must be printable ASCII without spaces "
                "(it is sent in an Authorization header)"
            )
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CameraSettings:
        """Build settings from environment variables (see the README/contract).

        Raises :class:`ConfigError` naming the first bad variable.
        """
        base = environ.get("API_BASE_URL")
        if base is None or base == "":
            raise ConfigError("API_BASE_URL is required, e.g. API_BASE_URL=http://localhost:8080")
        _check_url("API_BASE_URL", base)
        token = environ.get("CAMERA_TOKEN") or None  # empty means unset
        return cls(
            api_base_url=base.rstrip("/"),
            camera_id=environ.get("CAMERA_ID", "default"),
            log_period_seconds=_parse_seconds(environ, "LOG_PERIOD_SECONDS", 10.0),
            poll_timeout_seconds=_parse_seconds(environ, "POLL_TIMEOUT_SECONDS", 60.0),
            camera_token=token,
            log_level=_parse_level(environ, "LOG_LEVEL", "INFO"),
        )

    @property
    def poll_url(self) -> str:
        return f"{self.api_base_url}/poll_for_command"

    @property
    def send_logs_url(self) -> str:
        return f"{self.api_base_url}/send_logs"


def _check_url(name: str, value: str) -> None:
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{name} is not a valid URL: {value!r}") from None
    if url.user is not None or url.password is not None:
        # Do not echo it: the userinfo may hold a password.
        raise ConfigError(f"{name} must not contain credentials; use CAMERA_TOKEN")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{name} must be an http:// or https:// URL with a host, got {value!r}")
    if url.query_string or url.fragment:
        raise ConfigError(f"{name} must not have a query or fragment, got {value!r}")


def _check_camera_id(name: str, value: str) -> None:
    if not is_camera_id(value):
        raise ConfigError(f"{name} must be {CAMERA_ID_RULE}, got {value!r}")


def _check_seconds(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    if value > MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {MAX_SECONDS:g} seconds, got {value!r}")


def _parse_seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None:
        return default
    if not DECIMAL_PATTERN.fullmatch(raw):
        raise ConfigError(f"{name} must be a number of seconds > 0, got {raw!r}")
    value = float(raw)
    _check_seconds(name, value)
    return value


def _parse_level(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = environ.get(name)
    if raw is None:
        return default
    level = raw.upper()
    if level == "WARN":
        level = "WARNING"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"{name} must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return level
