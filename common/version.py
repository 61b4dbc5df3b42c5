"""camrelay's version: the installed distribution's, else setup.cfg's (a bare checkout)."""

from __future__ import annotations

import configparser
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "camrelay"
SETUP_CFG: Final = Path(__file__).resolve().parent.parent / "setup.cfg"
#: when neither the metadata nor setup.cfg can be read
UNKNOWN: Final = "unknown"


@cache
def version() -> str:
    """``0.2.0``: from ``importlib.metadata``, else setup.cfg's ``[metadata] version``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return setup_cfg_version()


def setup_cfg_version(path: Path = SETUP_CFG) -> str:
    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read(path, encoding="utf-8")
        return config["metadata"]["version"].strip() or UNKNOWN
    except (OSError, KeyError, configparser.Error):
        return UNKNOWN


def version_line() -> str:
    """What ``--version`` prints: ``camrelay 0.2.0``."""
    return f"{DISTRIBUTION} {version()}"
