"""``python -m tools.screenshots [--out DIR]``: a PNG of each console view from a live demo.

Starts the server on a free loopback port with a small fleet of simulated
cameras (``camera.Camera``, each with an hour or two of events already
recorded, a few of them stopped so that they show offline), opens the console
in headless Chromium and writes ``fleet.png``, ``log-view.png``, ``error.png``
(a camera that never connected) and ``fleet-phone.png`` into ``DIR``
(default ``docs/screenshots``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from camera.client import Camera
from camera.eventlog import EventLog, LogEntry, random_description
from camera.settings import CameraSettings
from server import Settings, create_app
from server.serve.runner import make_runner
from server.state import get_relay
from tools.browser import chromium_path, launch, missing_browser_reason

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_OUT: Final = REPO / "docs" / "screenshots"
HOST: Final = "127.0.0.1"
DEMO_SETTINGS: Final = Settings(
    host=HOST,
    port=0,
    poll_hold_seconds=5.0,
    connect_timeout_seconds=1.0,
    response_timeout_seconds=5.0,
)
ONLINE_CAMERAS: Final = (
    "back-door",
    "car-park-east",
    "car-park-west",
    "front-door",
    "garage",
    "hall",
    "loading-bay",
    "lobby",
    "office-1",
    "office-2",
    "reception",
    "stairs-north",
    "stairs-south",
    "warehouse",
    "yard",
)
STOPPED_CAMERAS: Final = ("attic", "basement", "roof")
LOG_CAMERA: Final = "front-door"
DESKTOP: Final = {"width": 1280, "height": 800}
PHONE: Final = {"width": 390, "height": 844}


def recorded_history(seed: int, now: float, hours: float = 2.0) -> list[LogEntry]:
    """Events over the last ``hours``: a steady trickle with a few busy spells."""
    rng = random.Random(seed)
    entries: list[LogEntry] = []
    t = now - hours * 3600
    while t < now:
        busy = int(t / 600) % 4 == 1
        t += rng.expovariate(1 / (8 if busy else 45))
        entries.append({"timestamp": round(t, 3), "description": random_description(rng)})
    return entries[:-1]


@contextlib.asynccontextmanager
async def demo_server() -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(DEMO_SETTINGS)
    runner = make_runner(app, DEMO_SETTINGS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://{HOST}:{port}", app
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fleet(url: str, app: web.Application) -> AsyncIterator[None]:
    now = time.time()
    relay = get_relay(app)
    async with aiohttp.ClientSession() as session:
        cameras = [
            Camera(
                CameraSettings(api_base_url=url, camera_id=camera_id, log_period_seconds=10.0),
                session=session,
                event_log=EventLog(recorded_history(index, now)),
            )
            for index, camera_id in enumerate(ONLINE_CAMERAS + STOPPED_CAMERAS)
        ]
        tasks = [asyncio.create_task(camera.run()) for camera in cameras]
        try:
            await until(lambda: relay.stats().polls_held == len(cameras))
            for camera in cameras:
                if camera.camera_id in STOPPED_CAMERAS:
                    camera.stop()
            await until(lambda: relay.stats().online == len(ONLINE_CAMERAS))
            yield
        finally:
            for camera in cameras:
                camera.stop()
            await asyncio.gather(*tasks)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def shoot(url: str, out: Path) -> list[Path]:
    written: list[Path] = []
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
            await page.goto(url)
            await expect(page.locator("#fleet-rows tr")).to_have_count(
                len(ONLINE_CAMERAS) + len(STOPPED_CAMERAS)
            )
            written.append(await save(page, out / "fleet.png"))

            await page.goto(f"{url}/#/camera/{LOG_CAMERA}")
            await page.get_by_role("button", name="Last hour").click()
            await expect(page.locator("#logs-result")).to_be_visible()
            written.append(await save(page, out / "log-view.png"))

            await page.goto(f"{url}/#/camera/never-seen")
            await page.get_by_role("button", name="Last hour").click()
            await expect(page.locator("#logs-problem")).to_be_visible()
            written.append(await save(page, out / "error.png"))

            await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
            await page.goto(f"{url}/#/")
            await expect(page.locator("#fleet-rows tr").first).to_be_visible()
            written.append(await save(page, out / "fleet-phone.png"))
        finally:
            await browser.close()
    return written


async def save(page: Page, path: Path) -> Path:
    await page.mouse.move(0, 0)  # no hover state in the picture
    await page.screenshot(path=str(path))
    return path


async def run(out: Path) -> list[Path]:
    async with demo_server() as (url, app), fleet(url, app):
        return await shoot(url, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the PNGs")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        print(f"screenshots: {missing_browser_reason()}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(run(args.out)):
        print(f"screenshots: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
