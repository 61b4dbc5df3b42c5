"""console: the operator console against the largest fleet one server holds.

N idle cameras (``python -m camera --fleet N``) each hold a poll. Measured:

- ``GET /cameras?limit=50`` (the fleet view's page, which is also one live
  update: the page re-fetches it every 2 s): body size, wall time and server
  CPU per call, for the first page, a later page (``after``), a prefix filter,
  and ``online=false`` (the filter that must look at every camera when all
  are online); the unpaged ``GET /cameras`` for comparison.
- With Chromium (skipped, with a note, when there is none): the time from
  navigation until the fleet view shows its first page, and the server CPU per
  live update while the page stays open (CPU over a window, less the idle CPU
  over an equal window, divided by the refreshes the page made in it); then
  the log view of a bench camera with 100,000 entries: from the click on
  "All" to the count on screen, to the next page of 200, and to the entries
  sorted newest first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final

import aiohttp
from playwright.async_api import Page, Request, async_playwright

from bench.fixtures import RelayServer, log_camera
from bench.idlefleet import FD_RESERVE, held_fleet
from bench.plan import Context, Scenario
from bench.result import ScenarioResult
from bench.scenarios.fleet import (
    KB,
    fleet_server,
    time_cameras,
)
from common.fdlimit import hard_open_file_limit
from tools.browser import chromium_path, launch, missing_browser_reason

__all__ = ["FULL", "NAME", "QUICK", "SCENARIO", "Params", "run"]

NAME: Final = "console"
PAGE: Final = 50
#: Calls per measured query: /proc counts CPU in 10 ms ticks.
CALLS: Final = 50
#: The fleet view's first page: rows on screen.
FIRST_PAGE_LIMIT_MS: Final = 3000.0
PAGE_BODY_LIMIT_KB: Final = 16.0
UPDATE_CPU_LIMIT_MS: Final = 50.0
#: The log view: click "All" until the count shows (camera round trip, transfer, parse, render).
LOG_VIEW_LIMIT_MS: Final = 5000.0


@dataclass(frozen=True, slots=True)
class Params:
    """The console scenario's size: ``FULL`` by default, ``QUICK`` for ``--quick``."""

    #: cameras (at least; True: as many as the fd hard limit allows), and the
    #: window over which the open page's live updates are measured
    cameras: int
    fill_fd_limit: bool
    window_seconds: float
    #: entries in the log the log view shows
    log_entries: int


FULL: Final = Params(cameras=10_000, fill_fd_limit=True, window_seconds=10.0, log_entries=100_000)
QUICK: Final = Params(cameras=60, fill_fd_limit=False, window_seconds=0.5, log_entries=1_000)


def fleet_size(params: Params) -> int:
    if params.fill_fd_limit:
        return max(params.cameras, hard_open_file_limit() - FD_RESERVE)
    return params.cameras


async def run(ctx: Context, params: Params) -> ScenarioResult:
    result = ScenarioResult(NAME)
    count = fleet_size(params)
    tag = f"N={count}"
    async with fleet_server(ctx) as server:
        async with held_fleet(ctx, server, count, result, tag) as (fleet, http):
            await measure_queries(http, server, result, count)
            if chromium_path() is None:
                result.notes.append(f"browser part skipped: {missing_browser_reason()}")
            else:
                await measure_page(ctx, params, server, result, tag)
        result.errors_from(f"{tag} fleet", fleet.stderr_lines())
        result.errors_from(f"{tag} server", server.problems())
    return result


async def measure_queries(
    http: aiohttp.ClientSession, server: RelayServer, result: ScenarioResult, count: int
) -> None:
    tag = f"N={count}"
    queries = {
        "first page": {"limit": str(PAGE)},
        "later page": {"limit": str(PAGE), "after": f"cam-{count // 2:05d}"},
        # cam-00100.. cam-00199 in a large fleet, cam-00010.. cam-00019 in a small one
        "prefix page": {"limit": str(PAGE), "prefix": "cam-001" if count >= 200 else "cam-0001"},
        "online=false page": {"limit": str(PAGE), "online": "false"},
    }
    for label, params in queries.items():
        wall_ms, cpu_ms, size = await time_cameras(http, server, params, CALLS)
        result.figure(f"{tag} /cameras {label} KB", round(size / KB, 2))
        result.figure(f"{tag} /cameras {label} ms (median of {CALLS})", round(wall_ms, 2))
        result.figure(f"{tag} /cameras {label} server CPU ms", round(cpu_ms, 2))
        if label == "first page":
            result.target(f"{tag} page body", round(size / KB, 2), "<=", PAGE_BODY_LIMIT_KB, "KB")
            result.target(
                f"{tag} server CPU per page", round(cpu_ms, 2), "<=", UPDATE_CPU_LIMIT_MS, "ms"
            )
    wall_ms, cpu_ms, size = await time_cameras(http, server, calls=5)
    result.figure(f"{tag} /cameras unpaged KB", round(size / KB))
    result.figure(f"{tag} /cameras unpaged ms (median of 5)", round(wall_ms, 1))
    result.figure(f"{tag} /cameras unpaged server CPU ms", round(cpu_ms, 1))


async def measure_page(
    ctx: Context, params: Params, server: RelayServer, result: ScenarioResult, tag: str
) -> None:
    window = params.window_seconds
    idle_before = server.cpu_seconds()
    await asyncio.sleep(window)
    idle_cpu = server.cpu_seconds() - idle_before
    async with async_playwright() as playwright:
        browser = await launch(playwright)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            refreshes = 0

            def count(request: Request) -> None:
                nonlocal refreshes
                if "/cameras?" in request.url:
                    refreshes += 1

            first_page_ms = await timed(
                page,
                page.goto(server.url),
                f"document.querySelectorAll('#fleet-rows tr').length === {PAGE}",
            )
            page.on("request", count)
            cpu_before = server.cpu_seconds()
            await asyncio.sleep(window)
            open_cpu = server.cpu_seconds() - cpu_before
            page.remove_listener("request", count)
            await measure_log_view(ctx, params.log_entries, server, page, result)
        finally:
            await browser.close()
    result.target(
        f"{tag} fleet view first page", round(first_page_ms), "<=", FIRST_PAGE_LIMIT_MS, "ms"
    )
    result.figure(f"{tag} live updates in {window:g} s", refreshes)
    if refreshes:
        per_update = 1000 * max(0.0, open_cpu - idle_cpu) / refreshes
        result.figure(
            f"{tag} server CPU per live update ms (page open, less idle)", round(per_update, 1)
        )
    result.figure(f"{tag} server idle CPU ms over {window:g} s", round(1000 * idle_cpu))


async def measure_log_view(
    ctx: Context, entries: int, server: RelayServer, page: Page, result: ScenarioResult
) -> None:
    tag = f"log of {entries}"
    async with log_camera(ctx, server, entries) as camera:
        await page.goto(f"{server.url}/#/camera/{camera.camera_id}")
        shown = await timed(
            page,
            page.get_by_role("button", name="All").click(),
            f"document.getElementById('logs-count').textContent.startsWith('{entries:,} ')",
        )
        next_page = await timed(
            page,
            page.click("#logs-next"),
            "document.getElementById('logs-page').textContent.startsWith('Entries 201 ')",
        )
        newest_first = await timed(
            page,
            page.select_option("#logs-order", "desc"),
            "document.getElementById('logs-page').textContent.startsWith('Entries 1 ')",
        )
        result.errors_from(f"{tag} camera", camera.problems())
    result.target(
        f"{tag}: click to table, with the round trip", round(shown), "<=", LOG_VIEW_LIMIT_MS, "ms"
    )
    result.figure(f"{tag}: next page of 200 ms", round(next_page))
    result.figure(f"{tag}: sort newest first ms", round(newest_first))


async def timed(page: Page, action: Awaitable[object], shown: str) -> float:
    """Milliseconds from starting ``action`` until ``shown`` holds on a painted frame."""
    started = time.perf_counter()
    await action
    # A function, not a bare expression: the page's CSP forbids evaluating strings.
    await page.wait_for_function(f"() => {shown}", polling="raf", timeout=60_000)
    return 1000 * (time.perf_counter() - started)


SCENARIO: Final = Scenario(NAME, run, FULL, QUICK)
