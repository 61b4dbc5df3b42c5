"""A simulated camera for the camrelay long-polling relay.

Run it with ``python -m camera`` (see :mod:`camera.__main__`).
"""

from camera.backoff import Backoff
from camera.client import Camera, CameraStats, CommandOutcome
from camera.commands import Command, CommandError, Noop, SendLogs, parse_command
from camera.eventlog import EventLog, LogEntry
from camera.settings import CameraSettings, ConfigError

__all__ = [
    "Backoff",
    "Camera",
    "CameraSettings",
    "CameraStats",
    "Command",
    "CommandError",
    "CommandOutcome",
    "ConfigError",
    "EventLog",
    "LogEntry",
    "Noop",
    "SendLogs",
    "parse_command",
]
