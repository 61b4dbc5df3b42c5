"""The real camera against the real server: in one loop, and as separate processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from typing import Any

import pytest
from aiohttp import ClientSession, TCPConnector

from camera import Camera, CameraSettings, EventLog
from camera.__main__ import fleet_ids
from tests.conftest import MakeLiveServer
from tests.helpers import camera_polling, running, wait_until
from tests.processes import REPO, child_env, free_port, spawned, wait_healthy

T0 = 1_700_000_000.0


def known_log(count: int) -> EventLog:
    log = EventLog()
    for i in range(count):
        log.append({"timestamp": T0 + 10 * i, "description": f"brightness adjusted {i}"})
    return log


async def test_real_camera_serves_200_parallel_callers_exactly(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server()
    # The camera's own recording runs too; its period is long so the log stays known.
    settings = CameraSettings(server.url, log_period_seconds=3600)
    log = known_log(100)
    async with ClientSession(connector=TCPConnector(limit=0)) as http:
        camera = Camera(settings, session=http, event_log=log, min_noop_interval=0)
        async with running(asyncio.ensure_future(camera.run())):
            await wait_until(camera_polling(server.relay))
            ranges: list[tuple[float | None, float | None]] = [
                (T0 + 10 * (i % 100), T0 + 10 * (i % 100) + 5 * (i % 13)) for i in range(197)
            ]
            ranges += [(T0 + 495, T0 + 495), (T0 + 990, None), (None, T0)]

            async def call(start: float | None, end: float | None) -> dict[str, Any]:
                params = {}
                if start is not None:
                    params["startTimestamp"] = repr(start)
                if end is not None:
                    params["endTimestamp"] = repr(end)
                async with http.get(f"{server.url}/logs", params=params) as response:
                    assert response.status == 200
                    return dict(await response.json())

            bodies = await asyncio.gather(*(call(s, e) for s, e in ranges))
    everything = list(log.entries)
    for (start, end), body in zip(ranges, bodies, strict=True):
        low = -float("inf") if start is None else start
        high = float("inf") if end is None else end
        expected = [e for e in everything if low <= e["timestamp"] <= high]
        assert body["logs"] == expected
        assert (body["startTimestamp"], body["endTimestamp"]) == (start, end)
    assert [len(b["logs"]) for b in bodies[-3:]] == [0, 2, 1]
    assert camera.stats.commands_handled <= 3


@pytest.mark.process
async def test_processes_started_as_the_readme_says() -> None:
    """`MODE=api ./run.sh` and `MODE=camera API_BASE_URL=... ./run.sh`, then curl_parallel."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api_env = child_env(MODE="api", PORT=str(port), POLL_HOLD_SECONDS="5")
    camera_env = child_env(MODE="camera", API_BASE_URL=base_url, LOG_PERIOD_SECONDS="0.05")
    async with spawned([str(REPO / "run.sh")], api_env) as api:
        await wait_healthy(base_url, api)
        async with spawned([str(REPO / "run.sh")], camera_env) as camera, ClientSession() as http:
            # Wait for the camera to poll and to have recorded a few events.
            async with asyncio.timeout(20):
                while True:
                    async with http.get(f"{base_url}/logs") as response:
                        if response.status == 200 and (await response.json())["count"] >= 5:
                            break
                    await asyncio.sleep(0.05)
            async with http.get(f"{base_url}/logs") as response:
                everything = (await response.json())["logs"]
            middle = everything[2]["timestamp"]
            async with http.get(
                f"{base_url}/logs",
                params={"startTimestamp": repr(middle), "endTimestamp": repr(middle)},
            ) as response:
                assert (await response.json())["logs"] == [everything[2]]
            for entry in everything:
                assert set(entry) == {"timestamp", "description"}
            assert shutil.which("curl"), "curl_parallel.sh needs curl"
            result = await asyncio.to_thread(
                subprocess.run,
                [str(REPO / "curl_parallel.sh"), "10", f"{base_url}/logs"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout.count("HTTP 200") == 10
            camera.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(camera.process.wait(), 10) == 0
        api.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(api.process.wait(), 10) == 0


@pytest.mark.process
@pytest.mark.redis
async def test_run_sh_cluster_serves_its_fleet_and_stops_on_ctrl_c() -> None:
    """`./run.sh cluster`: Redis, 2 workers and 100 cameras; Ctrl-C (SIGINT) stops all, exit 0."""
    port, redis_port = free_port(), free_port()
    env = child_env(PORT=str(port), REDIS_PORT=str(redis_port), LOG_LEVEL="WARNING")
    env.pop("REDIS_URL", None)
    base_url = f"http://127.0.0.1:{port}"
    fleet = set(fleet_ids(100))
    async with spawned([str(REPO / "run.sh"), "cluster"], env) as cluster:
        await wait_healthy(base_url, cluster)
        # A new connection per call reaches either worker: each lists the whole fleet.
        answers_listing_all = 0
        async with ClientSession(connector=TCPConnector(force_close=True)) as http:
            async with asyncio.timeout(30):
                while answers_listing_all < 4:
                    async with http.get(f"{base_url}/cameras") as response:
                        assert response.status == 200
                        body = await response.json()
                    listed = {c["cameraId"] for c in body["cameras"] if c["polling"]}
                    answers_listing_all = answers_listing_all + 1 if listed == fleet else 0
        # run.sh prints its hints once the fleet is polling: after its start-up lines.
        async with asyncio.timeout(30):
            while "Ctrl-C stops them all." not in cluster.stderr_lines():
                await asyncio.sleep(0.05)
        cluster.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(cluster.process.wait(), 20) == 0
        lines = cluster.stderr_lines()
        # A stop on purpose says so, not "a process ended", which reads like a crash.
        assert lines[-1] == "run.sh: stopped", lines[-5:]
        assert not [line for line in lines if "exited by itself" in line]
    for stopped in (port, redis_port):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", stopped)
        except ConnectionRefusedError:
            continue
        writer.close()
        raise AssertionError(f"something still listens on {stopped}")


@pytest.mark.process
async def test_run_sh_demo_stops_quietly_on_ctrl_c() -> None:
    port = free_port()
    env = child_env(PORT=str(port), LOG_LEVEL="WARNING")
    base_url = f"http://127.0.0.1:{port}"
    async with spawned([str(REPO / "run.sh"), "demo"], env) as demo:
        await wait_healthy(base_url, demo)
        async with asyncio.timeout(30):
            while "Ctrl-C stops both." not in demo.stderr_lines():
                await asyncio.sleep(0.05)
        demo.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(demo.process.wait(), 20) == 0
        lines = demo.stderr_lines()
    assert lines[-1] == "run.sh: stopped", lines[-5:]
    assert not [line for line in lines if "exited by itself" in line or "Traceback" in line]


@pytest.mark.process
def test_run_sh_rejects_an_unknown_mode() -> None:
    result = subprocess.run(
        [str(REPO / "run.sh"), "nonsense"],
        capture_output=True,
        text=True,
        env={**os.environ, "CAMRELAY_NO_VENV": "1"},
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown mode 'nonsense'" in result.stderr


@pytest.mark.process
def test_run_sh_demo_stops_before_anything_when_its_port_is_taken() -> None:
    """Its health check would reach the other server, and its camera take the camera id
    of that server's camera (``./run.sh api`` still running, say)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(REPO / "run.sh"), "demo"],
            capture_output=True,
            text=True,
            env=child_env(PORT=str(port)),
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"run.sh: port {port} is in use (another camrelay, such as ./run.sh api?): "
        "stop it, or set PORT"
    )
    assert "camera" not in result.stderr.lower().replace("camrelay", "")


@pytest.mark.process
@pytest.mark.parametrize("taken", ["PORT", "REDIS_PORT"])
def test_run_sh_cluster_stops_before_anything_when_a_port_is_taken(taken: str) -> None:
    """The nodes must not write into another project's Redis, nor the fleet reach another
    server; and nothing it started may be left waiting (it exits at once)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        ports = {"PORT": str(free_port()), "REDIS_PORT": str(free_port())}
        ports[taken] = str(holder.getsockname()[1])
        env = child_env(**ports)
        env.pop("REDIS_URL", None)
        result = subprocess.run(
            [str(REPO / "run.sh"), "cluster"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"run.sh: port {ports[taken]} is in use (")
    assert last.endswith(f"stop it, or set {taken}")
    assert "workers" not in result.stderr
