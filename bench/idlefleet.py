"""Idle camera fleets: what the fleet, console, renewal, cluster-fleet and sizing
scenarios share.

``held_fleet`` starts one fleet process against one server and waits for its polls;
``split`` sizes the ``python -m camera --fleet`` processes a fleet needs under the
fd limit, ``fleets_on`` starts them spread over the nodes (distinct ids, from
``cam-<first>``), ``held`` and ``wait_held`` count the polls the nodes hold, and
``SLOW_FLEET_SETTINGS`` are the node settings that let a slow-starting fleet send
its first polls (see the fleet scenario).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import aiohttp

from bench.fixtures import RelayServer, camera_fleet, polls_held, wait_all_held
from bench.http import client_session, wait_for
from bench.plan import Context
from bench.result import ScenarioResult
from tools.procs import Child

__all__ = [
    "FD_RESERVE",
    "FLEET_CONNECTION_TIMEOUT",
    "FLEET_POLL_TIMEOUT",
    "SLOW_FLEET_SETTINGS",
    "fleets_on",
    "held",
    "held_fleet",
    "ramp_limit",
    "split",
    "wait_held",
]

#: fds kept free in each process beyond one socket per camera: stdio, epoll, the
#: listener, and sockets a moment away from closing.
FD_RESERVE: Final = 500
#: The fleet's client timeout. Its own start-up is CPU-bound (all cameras start
#: at once in one loop): ~20,000 take over a minute to send their first polls,
#: and at the default 60 s the first ones would time out and reconnect while the
#: server still holds the old sockets, running both processes out of fds.
FLEET_POLL_TIMEOUT: Final = "120"
#: For the same reason, a fleet camera may connect well over 10 s before its first
#: poll's headers go out: the server would cut such a connection at
#: HEADER_TIMEOUT_SECONDS (10 s by default: some 13,000 of 19,500 cut) and, as
#: aiohttp's keep-alive timer also runs from a connection's opening, at
#: KEEPALIVE_TIMEOUT_SECONDS (15 s by default: some 5,700 of 19,500 cut).
FLEET_CONNECTION_TIMEOUT: Final = FLEET_POLL_TIMEOUT
#: a fleet process starts every camera at once and is slow to send its first polls:
#: the nodes must not cut those connections before their first request
SLOW_FLEET_SETTINGS: Final = {
    "HEADER_TIMEOUT_SECONDS": FLEET_CONNECTION_TIMEOUT,
    "KEEPALIVE_TIMEOUT_SECONDS": FLEET_CONNECTION_TIMEOUT,
}


@contextlib.asynccontextmanager
async def held_fleet(
    ctx: Context, server: RelayServer, count: int, result: ScenarioResult, tag: str
) -> AsyncIterator[tuple[Child, aiohttp.ClientSession]]:
    """A fleet of ``count`` cameras holding their polls on ``server`` (an error in
    ``result`` if some never do), and a client session; the fleet stops after the block."""
    async with (
        camera_fleet(ctx, server, count, {"POLL_TIMEOUT_SECONDS": FLEET_POLL_TIMEOUT}) as fleet,
        client_session() as http,
    ):
        problem = await wait_all_held(http, server, count)
        if problem is not None:
            result.error(f"{tag}: {problem}")
        yield fleet, http


def split(count: int, parts: int, most: int) -> list[int]:
    """``count`` as ``parts`` (or a multiple of it) near-equal shares of at most ``most``."""
    fleets = parts
    while -(-count // fleets) > most:
        fleets += parts
    return [count // fleets + (1 if i < count % fleets else 0) for i in range(fleets)]


def ramp_limit(count: int) -> float:
    """How long a fleet of ``count`` may take to hold all its polls."""
    return 60.0 + count / 100


@contextlib.asynccontextmanager
async def fleets_on(
    ctx: Context, servers: list[RelayServer], shares: list[int], first: int = 1
) -> AsyncIterator[None]:
    """Fleets of ``shares`` cameras (distinct ids from ``cam-<first>``), spread over
    ``servers`` in turn."""
    env = {"POLL_TIMEOUT_SECONDS": FLEET_POLL_TIMEOUT}
    async with contextlib.AsyncExitStack() as stack:
        for index, share in enumerate(shares):
            server = servers[index % len(servers)]
            await stack.enter_async_context(camera_fleet(ctx, server, share, env, first))
            first += share
        yield None


async def held(servers: list[RelayServer]) -> int:
    """Polls the servers hold, together."""
    async with client_session() as http:
        counts = await asyncio.gather(*(polls_held(http, server) for server in servers))
    return sum(counts)


async def wait_held(servers: list[RelayServer], count: int) -> str | None:
    """Wait for ``count`` polls held over ``servers``; an error message if they are not."""

    async def enough() -> bool:
        return await held(servers) >= count

    if await wait_for(enough, ramp_limit(count), interval=0.5):
        return None
    return f"only {await held(servers)} of {count} polls held"
