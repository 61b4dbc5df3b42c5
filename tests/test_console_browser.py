"""The console in a real browser: headless Chromium driven by Playwright.

The server is the real app on a loopback port (``make_live_server``) with
scripted cameras polling it over HTTP; the page talks to it as an operator's
browser would. Without Chromium these tests skip (and fail under ``CI=true``).

One Chromium serves the whole module (starting Playwright's driver and the browser
takes a second or two): the tests share the module's event loop, and each gets a
browser context of its own (its own cookies, storage and cache) and its own servers.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    async_playwright,
    expect,
)

from tests.conftest import LiveServer, MakeLiveServer, live_servers
from tests.helpers import LogEntries, ScriptedCamera, camera_polling, running, wait_until
from tools.browser import chromium_path, launch, missing_browser_reason

#: One worker runs them all, on one browser and one loop.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.xdist_group("browser"),
]

#: Short server timeouts: a stopped camera is offline within a second of its last poll.
FAST = {"poll_hold_seconds": 0.5, "connect_timeout_seconds": 0.5}
#: A camera that never answered a command is forgotten POLL_HOLD + CONNECT after it
#: was last seen: hold long enough for the page to show it offline first.
SLOW_TO_FORGET = {"poll_hold_seconds": 8.0, "connect_timeout_seconds": 0.5}
#: The page refreshes the fleet every 2 s: a change shows within this long.
FLEET_CHANGE_SECONDS = 6.0
NOW = 1_764_000_000.0
BUCKET_WIDTHS = {
    1,
    2,
    3,
    5,
    10,
    15,
    20,
    30,
    60,
    120,
    180,
    300,
    600,
    900,
    1200,
    1800,
    3600,
    7200,
    10800,
}
#: Not UTC, so that a mix-up of local and UTC time shows.
BROWSER_ZONE = ZoneInfo("Asia/Kolkata")
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")

expect.set_options(timeout=5_000)


@dataclass
class Watched:
    """A page, and what it said on its console and through dialogs."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    #: HTTP statuses the test provokes on purpose: Chromium logs each failed load.
    expected_statuses: set[int] = field(default_factory=set)

    def unexpected_errors(self) -> list[str]:
        unexpected = []
        for error in self.errors:
            failed = FAILED_LOAD.match(error)
            if failed is None or int(failed.group(1)) not in self.expected_statuses:
                unexpected.append(error)
        return unexpected


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(browser_type_launch_args: dict[str, Any]) -> AsyncIterator[Browser]:
    """pytest-playwright's launch options (``--headed``, ``--slowmo``) on the system Chromium,
    launched once for the module."""
    if chromium_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(missing_browser_reason())
        pytest.skip(missing_browser_reason())
    async with async_playwright() as playwright:
        launched = await launch(playwright, **browser_type_launch_args)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def make_live_server() -> AsyncIterator[MakeLiveServer]:
    """conftest's ``make_live_server``, in the module's event loop (the browser's)."""
    async with live_servers() as make:
        yield make


@pytest_asyncio.fixture(loop_scope="module")
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id=BROWSER_ZONE.key
    )
    page = await context.new_page()
    state = Watched(page)

    def on_dialog(dialog: Dialog) -> Awaitable[None]:
        state.dialogs.append(dialog.message)
        return dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            state.errors.append(message.text)

    def on_page_error(error: Error) -> None:
        state.errors.append(f"uncaught: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("dialog", on_dialog)
    yield state
    await context.close()
    assert state.unexpected_errors() == [], "the page logged errors"
    assert state.dialogs == [], "the page opened a dialog"


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def start_cameras(
    server: LiveServer, http: aiohttp.ClientSession, ids: list[str], logs: LogEntries | None = None
) -> dict[str, asyncio.Task[None]]:
    tasks = {}
    for camera_id in ids:
        camera = ScriptedCamera(http, server.url, logs or [], camera_id=camera_id)
        tasks[camera_id] = asyncio.create_task(camera.run(), name=f"camera-{camera_id}")
    for camera_id in ids:
        await wait_until(camera_polling(server.relay, camera_id))
    return tasks


async def stop_all(tasks: dict[str, asyncio.Task[None]]) -> None:
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)


async def known_then_offline(
    server: LiveServer, http: aiohttp.ClientSession, camera_id: str
) -> None:
    """A camera that answered one command and went away: known (kept for the
    retention of cameras that answered), offline."""
    camera = ScriptedCamera(http, server.url, [], camera_id=camera_id)
    async with running(asyncio.create_task(camera.run())):
        await wait_until(camera_polling(server.relay, camera_id))
        async with http.get(f"{server.url}/logs", params={"cameraId": camera_id}) as answered:
            assert answered.status == 200

    def offline() -> bool:
        session = server.relay.session(camera_id)
        return session is not None and not session.status().online

    await wait_until(offline)


def fleet_ids(page: Page) -> Any:
    return page.locator("#fleet-rows tr th a")


def badge(page: Page, camera_id: str) -> Any:
    return page.locator(f'#fleet-rows tr[data-camera-id="{camera_id}"] .badge')


# ------------------------------------------------------------------ the fleet view


async def test_fleet_lists_cameras_and_one_turns_offline_when_it_stops(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**SLOW_TO_FORGET)
    cameras = await start_cameras(server, http, ["cam-a", "cam-b", "cam-c"])
    try:
        page = watched.page
        await page.goto(server.url)
        await expect(fleet_ids(page)).to_have_text(["cam-a", "cam-b", "cam-c"])
        await expect(page.locator("#total-known")).to_have_text("3")
        await expect(page.locator("#total-online")).to_have_text("3")
        await expect(badge(page, "cam-b")).to_have_text("online")
        await expect(page.locator('tr[data-camera-id="cam-a"] td').nth(1)).to_have_text(
            re.compile(r"^\d+ s ago$")
        )
        cameras.pop("cam-b").cancel()
        await expect(badge(page, "cam-b")).to_have_text(
            "offline", timeout=FLEET_CHANGE_SECONDS * 1000
        )
        await expect(page.locator("#total-online")).to_have_text("2")
        await expect(badge(page, "cam-a")).to_have_text("online")
    finally:
        await stop_all(cameras)


async def test_fleet_filters_by_prefix_and_state_and_pages(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST)
    await known_then_offline(server, http, "gone-1")
    cameras = await start_cameras(server, http, ["door-1", "door-2", "door-3", "yard-1", "yard-2"])
    try:
        page = watched.page
        await page.goto(f"{server.url}/?pageSize=2")
        ids = fleet_ids(page)
        await expect(ids).to_have_text(["door-1", "door-2"])
        await expect(page.locator("#fleet-prev")).to_be_disabled()
        await page.click("#fleet-next")
        await expect(ids).to_have_text(["door-3", "gone-1"])
        await expect(page.locator("#fleet-page")).to_have_text("Page 2")
        await page.click("#fleet-next")
        await expect(ids).to_have_text(["yard-1", "yard-2"])
        await expect(page.locator("#fleet-next")).to_be_disabled()
        await page.click("#fleet-prev")
        await expect(ids).to_have_text(["door-3", "gone-1"])

        await page.fill("#filter-prefix", "door")
        await expect(ids).to_have_text(["door-1", "door-2"])
        await expect(page.locator("#fleet-page")).to_have_text("Page 1")
        await page.click("#fleet-next")
        await expect(ids).to_have_text(["door-3"])
        await expect(page.locator("#fleet-next")).to_be_disabled()

        await page.select_option("#filter-online", "false")
        await expect(page.locator("#fleet-caption")).to_have_text("No camera matches")
        await expect(ids).to_have_count(0)
        await page.fill("#filter-prefix", "")
        await expect(ids).to_have_text(["gone-1"])
        await expect(badge(page, "gone-1")).to_have_text("offline")
        await page.select_option("#filter-online", "true")
        await expect(ids).to_have_text(["door-1", "door-2"])
        # The totals stay fleet-wide whatever the filter.
        await expect(page.locator("#total-known")).to_have_text("6")
        await expect(page.locator("#total-online")).to_have_text("5")

        watched.expected_statuses.add(400)
        await page.fill("#filter-prefix", "no spaces")
        await expect(page.locator("#fleet-problem")).to_have_text(
            re.compile(r"^400 Bad Request: prefix must be up to 64 characters")
        )
    finally:
        await stop_all(cameras)


# ------------------------------------------------------------------ the log view


def camera_log(count: int = 150) -> LogEntries:
    """Entries 20 s apart, ending 20 s before NOW; some with an integer JavaScript would round."""
    entries: LogEntries = []
    for i in range(count):
        entry: dict[str, Any] = {"timestamp": NOW - 20 * (count - i) + (i % 3) * 0.25}
        entry["description"] = f"motion detected at ({i}, {i * 2})"
        if i % 10 == 0:
            entry["zone"] = {"name": "porch", "id": 2**63 + i}
        entries.append(entry)
    return entries


def utc_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def local_input(seconds: float) -> str:
    """What a person types into the page's date-time field, in the browser's time zone."""
    return datetime.fromtimestamp(seconds, BROWSER_ZONE).strftime("%Y-%m-%d %H:%M:%S")


async def descriptions(page: Page) -> list[str]:
    return await page.locator("#logs-rows td.description").all_text_contents()


async def test_log_view_shows_exactly_the_logs_answer_with_one_bar_per_bucket(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched, tmp_path: Path
) -> None:
    server = await make_live_server(**FAST)
    log = camera_log(450)
    cameras = await start_cameras(server, http, ["cam-1"], logs=log)
    try:
        page = watched.page
        await page.goto(f"{server.url}/#/camera/cam-1")
        await expect(page.locator("#camera-name")).to_have_text("cam-1")
        await page.get_by_role("button", name="All").click()
        await expect(page.locator("#logs-count")).to_have_text("450 entries from camera cam-1")
        async with http.get(f"{server.url}/logs?cameraId=cam-1") as response:
            raw = await response.read()
        wanted = [entry["description"] for entry in orjson.loads(raw)["logs"]]
        assert wanted == [entry["description"] for entry in log]
        # A page of 200 at a time, in the camera's order.
        await expect(page.locator("#logs-page")).to_have_text("Entries 1 to 200 of 450")
        assert await descriptions(page) == wanted[:200]
        await page.click("#logs-next")
        await expect(page.locator("#logs-page")).to_have_text("Entries 201 to 400 of 450")
        assert await descriptions(page) == wanted[200:400]
        await page.click("#logs-next")
        assert await descriptions(page) == wanted[400:]
        await expect(page.locator("#logs-next")).to_be_disabled()
        first_time = page.locator("#logs-rows td.time").first
        await expect(first_time).to_have_attribute("title", utc_iso(log[400]["timestamp"]))
        zone = await page.locator("#logs-rows td.others").first.text_content()
        assert zone == '{"zone":{"name":"porch","id":9223372036854776000}}'  # rounded on screen

        bars = await page.locator("#timeline rect.bar").evaluate_all(
            "bars => bars.map(b => [b.dataset.start, b.dataset.width, b.dataset.count].map(Number))"
        )
        width = bars[0][1]
        assert width in BUCKET_WIDTHS
        assert 31 <= len(bars) <= 62
        stamps = [entry["timestamp"] for entry in log]
        for index, (start, bar_width, count) in enumerate(bars):
            assert (bar_width, start) == (width, bars[0][0] + index * width)
            assert count == sum(start <= t < start + width for t in stamps), index
        assert sum(count for _, _, count in bars) == 450
        assert bars[0][0] <= min(stamps)
        assert max(stamps) < bars[-1][0] + width

        await page.select_option("#logs-order", "desc")
        await expect(page.locator("#logs-page")).to_have_text("Entries 1 to 200 of 450")
        assert await descriptions(page) == wanted[::-1][:200]
        await page.select_option("#logs-order", "asc")
        assert await descriptions(page) == wanted[:200]
        async with page.expect_download() as download_info:
            await page.click("#logs-download")
        download = await download_info.value
        saved = tmp_path / "download.json"
        await download.save_as(saved)
        assert saved.read_bytes() == raw  # the big integers exactly as the camera sent them

        # A custom range typed in local time reaches the server as epoch seconds.
        start, end = log[100]["timestamp"] - 0.25, log[109]["timestamp"] + 0.5
        await page.fill("#range-start", local_input(start))
        await page.fill("#range-end", local_input(end))
        await page.click("#range-fetch")
        inside = [e for e in log if int(start) <= e["timestamp"] <= int(end)]
        await expect(page.locator("#logs-count")).to_have_text(
            f"{len(inside)} entries from camera cam-1"
        )
        assert await descriptions(page) == [e["description"] for e in inside]

        # Readable on a phone: nothing wider than the screen but the tables' own scrollers.
        await page.set_viewport_size({"width": 390, "height": 844})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        await stop_all(cameras)


#: The browser's "now" in the default-range test: mid-afternoon, so a 12-hour clock shows.
AFTERNOON = datetime(2025, 11, 24, 15, 30, 45, tzinfo=BROWSER_ZONE).timestamp()
TIME_24H = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


async def test_a_camera_opens_on_the_last_hour_in_24_hour_time(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST)
    log = [
        {"timestamp": AFTERNOON + offset, "description": f"at {offset:+d} s"}
        for offset in (-7200, -3700, -1800, -600, -60, 600)
    ]
    cameras = await start_cameras(server, http, ["cam-1"], logs=log)
    try:
        page = watched.page
        await page.clock.set_fixed_time(AFTERNOON)
        await page.goto(f"{server.url}/#/camera/cam-1")
        # No range picked: the last hour is fetched on open.
        await expect(page.locator("#logs-count")).to_have_text("3 entries from camera cam-1")
        assert await descriptions(page) == ["at -1800 s", "at -600 s", "at -60 s"]
        # The range reads as the table does: 24-hour local time, no AM/PM.
        await expect(page.locator("#range-start")).to_have_value("2025-11-24 14:30:45")
        await expect(page.locator("#range-end")).to_have_value("2025-11-24 15:30:45")
        await expect(page.locator("#logs-rows td.time").first).to_have_text(
            "2025-11-24 15:00:45.000"
        )
        for field in ("#range-start", "#range-end"):
            assert TIME_24H.match(await page.locator(field).input_value())
            assert await page.locator(field).get_attribute("type") == "text"
        assert not re.search(r"\b[AP]M\b", await page.locator("#camera-view").inner_text())

        # A range typed in 24-hour time; minutes alone will do.
        await page.fill("#range-start", "2025-11-24 15:00")
        await page.fill("#range-end", "2025-11-24 15:25:00")
        await page.click("#range-fetch")
        await expect(page.locator("#logs-count")).to_have_text("2 entries from camera cam-1")
        assert await descriptions(page) == ["at -1800 s", "at -600 s"]
        # A 12-hour time is refused, with the format to use.
        await page.fill("#range-start", "2025-11-24 3:00 PM")
        await page.click("#range-fetch")
        await expect(page.locator("#logs-problem")).to_have_text(
            "Start must be a local time as YYYY-MM-DD HH:MM:SS (24-hour), or empty."
        )
        await expect(page.locator("#range-start")).to_be_focused()
        await page.fill("#range-start", "")
        await page.fill("#range-end", "2025-11-24 25:00")
        await page.click("#range-fetch")
        await expect(page.locator("#logs-problem")).to_have_text(
            "End must be a local time as YYYY-MM-DD HH:MM:SS (24-hour), or empty."
        )
    finally:
        await stop_all(cameras)


async def test_camera_text_is_shown_as_text_and_runs_nothing(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST)
    attack = "<img src=x onerror=alert(1)>"
    log = [{"timestamp": NOW, "description": attack, "<script>alert(2)</script>": attack}]
    cameras = await start_cameras(server, http, ["cam-x"], logs=log)
    try:
        page = watched.page
        await page.goto(f"{server.url}/#/camera/cam-x")
        await page.get_by_role("button", name="All").click()
        await expect(page.locator("#logs-rows td.description")).to_have_text(attack)
        await expect(page.locator("#logs-rows td.others")).to_have_text(
            orjson.dumps({"<script>alert(2)</script>": attack}).decode()
        )
        assert await page.locator("#logs-rows img, #logs-rows script").count() == 0
        assert watched.dialogs == []
    finally:
        await stop_all(cameras)


async def test_offline_cameras_show_the_problem_with_retry_after(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST)
    await known_then_offline(server, http, "gone")
    watched.expected_statuses.add(503)
    page = watched.page
    problem = page.locator("#logs-problem")
    await page.goto(f"{server.url}/#/camera/gone")
    await page.get_by_role("button", name="Last hour").click()
    await expect(problem.locator("strong")).to_have_text("503 Service Unavailable")
    await expect(problem).to_contain_text(
        re.compile(r": camera 'gone' is offline: last seen \d+ s ago; retry once it polls again")
    )
    await expect(problem.locator(".retry")).to_have_text("Retry after 5 s.")
    await expect(page.locator("#logs-waiting")).to_be_hidden()
    # A camera that never connected reads differently: no retry, a way to the fleet.
    await page.goto(f"{server.url}/#/camera/never-seen")
    await expect(problem).to_contain_text(
        ": camera 'never-seen' has not connected: no camera with that id has polled this "
        "server recently; check the id against GET /cameras (ids are case-sensitive)"
    )
    await expect(problem.locator(".retry")).to_have_text(
        "No camera with this id has polled recently: find its id in the fleet."
    )
    await problem.get_by_role("link", name="find its id in the fleet").click()
    await expect(page.locator("#fleet-view")).to_be_visible()


async def test_a_waiting_call_shows_elapsed_seconds_and_can_be_cancelled(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST, response_timeout_seconds=10.0)
    never = asyncio.Event()

    async def hold_the_command() -> None:
        await never.wait()

    camera = ScriptedCamera(http, server.url, [], camera_id="slow", before_answer=hold_the_command)
    async with running(asyncio.create_task(camera.run())):
        await wait_until(camera_polling(server.relay, "slow"))
        page = watched.page
        # The page opens on the last hour: its call waits for the camera at once.
        await page.goto(f"{server.url}/#/camera/slow")
        await expect(page.locator("#logs-elapsed")).to_have_text(
            re.compile(r"^Waiting for camera slow: \d+ s$")
        )
        await wait_until(lambda: bool(camera.commands))  # the camera holds the command
        await page.click("#logs-cancel")
        await expect(page.locator("#logs-problem")).to_have_text("Cancelled: nothing was fetched.")
        await expect(page.locator("#logs-waiting")).to_be_hidden()
        session = server.relay.session("slow")
        assert session is not None
        await wait_until(lambda: session.status().in_flight == 0)  # the server forgot the call


# ------------------------------------------------------------------ auth and keyboard


async def test_the_token_is_asked_for_once_and_a_wrong_one_shows_the_401(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST, api_token="open-sesame")
    cameras = await start_cameras(server, http, ["cam-1"])
    watched.expected_statuses.add(401)
    try:
        page = watched.page
        await page.goto(server.url)
        await expect(page.locator("#token-view")).to_be_visible()
        await expect(page.locator("#token-problem")).to_be_hidden()
        await page.get_by_label("API token", exact=True).fill("wrong")
        await page.keyboard.press("Enter")
        await expect(page.locator("#token-problem")).to_have_text(
            "401 Unauthorized: the bearer token does not match this server's API_TOKEN: "
            "check the token sent in 'Authorization: Bearer <API_TOKEN>'"
        )
        await page.get_by_label("API token", exact=True).fill("open-sesame")
        await page.get_by_role("button", name="Use this token").click()
        await expect(fleet_ids(page)).to_have_text(["cam-1"])
        assert await page.evaluate("sessionStorage.getItem('camrelay.apiToken')") == "open-sesame"
        await page.reload()
        await expect(fleet_ids(page)).to_have_text(["cam-1"])
        await expect(page.locator("#token-view")).to_be_hidden()
    finally:
        await stop_all(cameras)


CONTROLS = "a[href], button:not([disabled]), input, select"


async def tab_through(page: Page, presses: int = 50) -> set[str]:
    """The controls the Tab key reaches (a date input takes a press per field)."""
    reached: set[str] = set()
    for _ in range(presses):
        await page.keyboard.press("Tab")
        reached.add(
            await page.evaluate(
                "() => { const e = document.activeElement;"
                " return e === document.body ? '' : (e.id || e.textContent.trim()); }"
            )
        )
    return reached - {""}


async def visible_controls(page: Page) -> set[str]:
    keys: list[str] = await page.locator(CONTROLS).evaluate_all(
        "els => els.filter(e => e.checkVisibility()).map(e => e.id || e.textContent.trim())"
    )
    return set(keys)


async def test_keyboard_alone_reaches_every_control(
    make_live_server: MakeLiveServer, http: aiohttp.ClientSession, watched: Watched
) -> None:
    server = await make_live_server(**FAST)
    cameras = await start_cameras(server, http, ["cam-1", "cam-2", "cam-3"], logs=camera_log())
    try:
        page = watched.page
        await page.goto(f"{server.url}/?pageSize=2")
        await page.locator("#fleet-next").click()
        await expect(fleet_ids(page)).to_have_text(["cam-3"])
        controls = await visible_controls(page)
        assert {"filter-prefix", "filter-online", "fleet-prev", "cam-3"} <= controls
        assert await tab_through(page) == controls

        # Into the log view by keyboard: focus the camera's link and press Enter.
        await page.get_by_role("link", name="cam-3").focus()
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="All").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#logs-count")).to_have_text("150 entries from camera cam-3")
        controls = await visible_controls(page)
        assert {"range-start", "range-end", "logs-download", "logs-order", "back-link"} <= controls
        assert await tab_through(page) == controls
        # Every control has a label (its text, a <label for>, or its pressed name).
        unlabelled = await page.locator("input, select").evaluate_all(
            "els => els.filter(e => e.labels.length === 0).map(e => e.id)"
        )
        assert unlabelled == []
    finally:
        await stop_all(cameras)
