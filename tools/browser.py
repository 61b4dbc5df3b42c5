"""Headless Chromium for the console's browser tests, screenshots and benchmark.

Playwright drives the distribution's ``chromium`` (Debian's package) through
``executable_path``: Playwright's own browser download is not used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Final

from playwright.async_api import Browser, Playwright

__all__ = ["CHROMIUM_ENV", "LAUNCH_ARGS", "chromium_path", "launch", "missing_browser_reason"]

#: Names the Chromium binary to use instead of the one found on PATH.
CHROMIUM_ENV: Final = "CAMRELAY_CHROMIUM"
CANDIDATES: Final = ("chromium", "chromium-browser")
LAUNCH_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> Path | None:
    """``$CAMRELAY_CHROMIUM`` when set, else the first Chromium on ``PATH``."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        path = Path(given)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def missing_browser_reason() -> str:
    given = os.environ.get(CHROMIUM_ENV)
    where = f"{CHROMIUM_ENV}={given} is not an executable file" if given else "no chromium on PATH"
    return (
        f"the console's browser tests need Chromium ({where}): install it with "
        f"'apt-get update && apt-get install -y chromium' (Debian), or set {CHROMIUM_ENV} "
        "to a Chromium binary"
    )


async def launch(playwright: Playwright, **options: Any) -> Browser:
    """Launch headless Chromium; each launch gets a fresh temporary profile."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(missing_browser_reason())
    headless = options.setdefault("headless", True)
    args = [arg for arg in LAUNCH_ARGS if headless or arg != "--headless"]
    return await playwright.chromium.launch(executable_path=str(path), args=args, **options)
