"""The benchmark harness's cluster fixtures: a server as N workers, or N nodes, on one Redis."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bench.fixtures import relay_nodes, relay_workers
from bench.plan import QUICK, Context
from bench.procstat import cpu_seconds, listening_on
from tools.redis_server import RedisServer

pytestmark = [pytest.mark.bench, pytest.mark.process, pytest.mark.redis]


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


async def test_a_server_as_two_workers(redis_server: RedisServer, tmp_path: Path) -> None:
    ctx = Context(QUICK, tmp_path)
    async with relay_workers(ctx, 2, REDIS_URL=redis_server.url) as server:
        workers = server.node_pids()
        assert len(workers) == 2
        assert server.pid not in workers
        assert all(listening_on(pid, server.port) for pid in workers)
        assert not listening_on(server.pid, server.port)
        assert server.cpu_seconds() >= sum(cpu_seconds(pid) for pid in workers)
        for pid in workers:
            assert environment_of(pid)["REDIS_URL"] == redis_server.url


async def test_nodes_on_distinct_ports_share_one_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    ctx = Context(QUICK, tmp_path)
    async with relay_nodes(ctx, 2, redis_server.url) as nodes, aiohttp.ClientSession() as http:
        assert len({node.url for node in nodes}) == 2
        for index, node in enumerate(nodes, 1):
            assert node.node_pids() == [node.pid]
            env = environment_of(node.pid)
            assert (env["REDIS_URL"], env["NODE_NAME"]) == (redis_server.url, f"node-{index}")
            async with http.get(f"{node.url}/healthz") as response:
                assert response.status == 200
