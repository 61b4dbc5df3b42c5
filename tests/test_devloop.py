"""The dev loop: adev loads the same app factory that production and the tests use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.processes import REPO, child_env

pytestmark = pytest.mark.process

ADEV_LOADS_THE_FACTORY = """
import asyncio
from aiohttp import web
from aiohttp_devtools.runserver.config import Config

config = Config(app_path="server", app_factory_name="create_app", main_port=0)
factory = config.import_app_factory()
app = asyncio.run(config.load_app(factory))
assert isinstance(app, web.Application)
print(config.app_factory_name, sorted({r.name for r in app.router.routes() if r.name}))
print(config.watch_path)
"""


def test_adev_runserver_loads_create_app() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ADEV_LOADS_THE_FACTORY],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    factory_line, watch_line = result.stdout.splitlines()
    assert factory_line == (
        "create_app ['cameras', 'console', 'console-assets', 'healthz', 'logs', 'metrics', "
        "'openapi', 'poll_for_command', 'send_logs']"
    )
    assert watch_line == str(REPO / "server")
