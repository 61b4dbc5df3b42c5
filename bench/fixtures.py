"""The processes a scenario runs against: the server (one process, N workers, or N nodes
sharing a Redis), a bench camera, a camera fleet; ``redis_server`` starts an empty Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar

import aiohttp
import orjson

from bench.http import client_session, gauge, wait_for
from bench.plan import Context
from bench.procstat import Memory, children, cpu_seconds, listening_on, memory, open_fds
from tools.procs import (
    HOST,
    Child,
    child_env,
    free_port,
    python,
    spawn,
    stop,
    wait_healthy,
)
from tools.redis_server import redis_server

T = TypeVar("T")

__all__ = [
    "BenchCamera",
    "RelayServer",
    "as_list",
    "camera_fleet",
    "cameras_polling",
    "enter_together",
    "floor_server",
    "log_camera",
    "redis_server",
    "relay_nodes",
    "relay_server",
    "relay_workers",
    "wait_all_held",
]

#: Warnings every server logs at start-up when auth is off (as in a benchmark).
EXPECTED_SERVER_LINES: Final = ("API_TOKEN is not set", "CAMERA_SECRET is not set")
POLLS_HELD: Final = "camrelay_polls_held"


@dataclass(slots=True)
class RelayServer:
    """``python -m server`` on 127.0.0.1; ``url`` is its base URL.

    With ``workers`` > 1, ``pid`` is the supervisor's and ``node_pids()`` the workers'.
    """

    url: str
    child: Child
    port: int
    workers: int = 1

    @property
    def pid(self) -> int:
        return self.child.pid

    def node_pids(self) -> list[int]:
        """The processes that serve: the workers, or the one server."""
        return sorted(children(self.pid)) if self.workers > 1 else [self.pid]

    def memory(self) -> Memory:
        return memory(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time of the server and, under a supervisor, of its live workers too."""
        pids = {self.pid, *self.node_pids()}
        return sum(cpu_seconds(pid) for pid in pids)

    def open_fds(self) -> int:
        return open_fds(self.pid)

    def problems(self, *expected: str) -> list[str]:
        """Lines on its stderr (it logs at WARNING) but the start-up ones and ``expected``."""
        allowed = (*EXPECTED_SERVER_LINES, *expected)
        return [
            line
            for line in self.child.stderr_lines()
            if not any(fragment in line for fragment in allowed)
        ]


@contextlib.asynccontextmanager
async def relay_server(
    ctx: Context, *, fd_limit: int | None = None, **env: str
) -> AsyncIterator[RelayServer]:
    """A fresh server for one scenario; ``env`` adds settings (``POLL_HOLD_SECONDS=...``)."""
    async with _served(ctx, "server", 1, env, fd_limit=fd_limit) as server:
        yield server


@contextlib.asynccontextmanager
async def relay_workers(ctx: Context, workers: int, **env: str) -> AsyncIterator[RelayServer]:
    """``python -m server --workers N`` (pass ``REDIS_URL``), ready once every worker listens."""
    async with _served(ctx, "workers", workers, env) as server:
        yield server


@contextlib.asynccontextmanager
async def _served(
    ctx: Context, name: str, workers: int, env: Mapping[str, str], *, fd_limit: int | None = None
) -> AsyncIterator[RelayServer]:
    async with _spawned(ctx, name, workers, env, fd_limit=fd_limit) as server:
        await _ready(server)
        yield server


@contextlib.asynccontextmanager
async def _spawned(
    ctx: Context, name: str, workers: int, env: Mapping[str, str], *, fd_limit: int | None = None
) -> AsyncIterator[RelayServer]:
    """The server started (not yet ready); stopped with SIGTERM, which it must exit 0 on."""
    port = free_port()
    settings = {"HOST": HOST, "PORT": str(port), "LOG_LEVEL": "WARNING", **env}
    argv = python("-m", "server", *([f"--workers={workers}"] if workers > 1 else []))
    child = await spawn(name, argv, child_env(settings), ctx.workdir, fd_limit=fd_limit)
    try:
        yield RelayServer(f"http://{HOST}:{port}", child, port, workers)
    finally:
        code = await stop(child)
    if code != 0:
        raise RuntimeError(f"{name} exited with {code} on SIGTERM")


@contextlib.asynccontextmanager
async def floor_server(ctx: Context) -> AsyncIterator[RelayServer]:
    """``python -m bench.floorserver``: the least aiohttp can do for the same exchanges."""
    port = free_port()
    argv = python("-m", "bench.floorserver", f"--host={HOST}", f"--port={port}")
    child = await spawn("floor", argv, child_env({}), ctx.workdir)
    try:
        server = RelayServer(f"http://{HOST}:{port}", child, port, 1)
        await _ready(server)
        yield server
    finally:
        code = await stop(child)
    if code != 0:
        raise RuntimeError(f"the floor server exited with {code} on SIGTERM")


async def _ready(server: RelayServer) -> None:
    """Wait until it answers ``/healthz`` and, under a supervisor, every worker listens."""
    await wait_healthy(server.url, server.child)
    if server.workers > 1 and not await wait_for(
        lambda: _all_workers_up(server), timeout=30.0, interval=0.05
    ):
        raise RuntimeError(f"{server.child.name}: fewer than {server.workers} workers came up")


async def enter_together(
    stack: contextlib.AsyncExitStack, *managers: contextlib.AbstractAsyncContextManager[T]
) -> list[T]:
    """Enter ``managers`` on ``stack`` side by side (processes that start at once). Every
    one is entered, or has failed, before the first failure is raised: what started is
    on the stack, and stopped with it."""
    entered = await asyncio.gather(
        *(stack.enter_async_context(manager) for manager in managers), return_exceptions=True
    )
    for item in entered:
        if isinstance(item, BaseException):
            raise item
    return entered  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def as_list(manager: contextlib.AbstractAsyncContextManager[T]) -> AsyncIterator[list[T]]:
    """``manager``'s value in a list: one server entered beside ``relay_nodes``' list."""
    async with manager as value:
        yield [value]


async def _all_workers_up(server: RelayServer) -> bool:
    pids = server.node_pids()
    return len(pids) == server.workers and all(listening_on(pid, server.port) for pid in pids)


@contextlib.asynccontextmanager
async def relay_nodes(
    ctx: Context, count: int, redis_url: str, **env: str
) -> AsyncIterator[list[RelayServer]]:
    """``count`` single-process nodes on distinct ports, sharing the Redis at ``redis_url``."""
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for index in range(1, count + 1):
            name = f"node-{index}"
            settings = {**env, "REDIS_URL": redis_url, "NODE_NAME": name}
            nodes.append(await stack.enter_async_context(_spawned(ctx, name, 1, settings)))
        await asyncio.gather(*(_ready(node) for node in nodes))  # they start side by side
        yield nodes


@dataclass(slots=True)
class BenchCamera:
    """A ``python -m bench.logcam`` process and what it reported on stdout."""

    camera_id: str
    child: Child
    commands: int = 0
    #: results the server answered 404 because every caller had left
    late: int = 0
    bytes_sent: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def problems(self) -> list[str]:
        """Errors it reported, and late results (a fault where no caller hangs up)."""
        late = [f"{self.late} results answered 404 (late)"] if self.late else []
        return [*self.errors, *late]

    def note(self, line: bytes) -> None:
        event = orjson.loads(line)
        if event["event"] == "command":
            self.commands += 1
            self.bytes_sent.append(int(event["bytes"]))
        elif event["event"] == "late":
            self.late += 1
        elif event["event"] == "error":
            self.errors.append(str(event["detail"]))
        self._changed.set()

    async def wait_commands(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until the camera has answered ``count`` commands in all."""
        try:
            async with asyncio.timeout(timeout):
                while self.commands < count:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True


async def _read_events(camera: BenchCamera) -> None:
    stdout = camera.child.process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        camera.note(line)


@contextlib.asynccontextmanager
async def log_camera(
    ctx: Context,
    server: RelayServer,
    entries: int,
    camera_id: str = "bench",
    *,
    spaced: bool = False,
) -> AsyncIterator[BenchCamera]:
    """A bench camera serving ``entries`` deterministic entries, polling once we return;
    ``spaced``: its bodies as ``json.dumps`` writes them by default (``", "``)."""
    argv = python(
        "-m",
        "bench.logcam",
        f"--base-url={server.url}",
        f"--camera-id={camera_id}",
        f"--entries={entries}",
        *(["--spaced"] if spaced else []),
    )
    child = await spawn(
        f"logcam-{camera_id}", argv, child_env({}), ctx.workdir, capture_stdout=True
    )
    camera = BenchCamera(camera_id, child)
    reader = asyncio.create_task(_read_events(camera), name=f"logcam-{camera_id}-reader")
    try:
        async with client_session() as http:
            if not await wait_for(
                lambda: _polling(http, server.url, camera_id), timeout=30.0, interval=0.05
            ):
                raise RuntimeError(f"bench camera {camera_id!r} did not start polling")
        yield camera
    finally:
        await stop(child)
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _polling(http: aiohttp.ClientSession, base_url: str, camera_id: str) -> bool:
    async with http.get(f"{base_url}/cameras") as response:
        cameras = orjson.loads(await response.read())["cameras"]
    return any(c["cameraId"] == camera_id and c["polling"] for c in cameras)


@contextlib.asynccontextmanager
async def camera_fleet(
    ctx: Context,
    server: RelayServer,
    count: int,
    env: Mapping[str, str] | None = None,
    first: int = 1,
) -> AsyncIterator[Child]:
    """``python -m camera --fleet count`` (ids cam-00001.., from cam-<first> if given);
    stopped before the server."""
    settings = {
        "API_BASE_URL": server.url,
        "LOG_LEVEL": "WARNING",
        # Idle cameras: one event at start, none during the measurement.
        "LOG_PERIOD_SECONDS": "3600",
        **(env or {}),
    }
    child = await spawn(
        f"fleet-{first}-{count}",
        python("-m", "camera", f"--fleet={count}", f"--fleet-first={first}"),
        child_env(settings),
        ctx.workdir,
    )
    try:
        yield child
    finally:
        await stop(child)


async def cameras_polling(http: aiohttp.ClientSession, server: RelayServer) -> int:
    """Cameras holding a poll, fleet-wide (``/cameras``: in cluster mode, whichever node
    answers; ``/metrics`` counts only that node's)."""
    async with http.get(f"{server.url}/cameras") as response:
        if response.status != 200:
            return 0
        cameras = orjson.loads(await response.read())["cameras"]
    return sum(1 for camera in cameras if camera["polling"])


async def polls_held(http: aiohttp.ClientSession, server: RelayServer) -> int:
    return int(await gauge(http, server.url, POLLS_HELD))


async def wait_all_held(http: aiohttp.ClientSession, server: RelayServer, count: int) -> str | None:
    """Wait for a fleet of ``count`` to hold its polls; an error message if it does not."""
    ramp_limit = 30.0 + count / 250

    async def all_held() -> bool:
        return await polls_held(http, server) >= count

    if await wait_for(all_held, ramp_limit, interval=0.25):
        return None
    held = await polls_held(http, server)
    return f"only {held} of {count} polls held after {ramp_limit:.0f} s"
