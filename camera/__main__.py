"""``python -m camera [--fleet N]``: run one simulated camera, or N of them."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Final

import aiohttp

from camera.client import Camera
from camera.eventlog import EventLog
from camera.settings import CameraSettings, ConfigError
from common.cli import positive_int
from common.collector import settle_collector
from common.fdlimit import raise_open_file_limit
from common.version import version, version_line

__all__ = ["build_fleet", "fleet_ids", "main", "run_cameras"]

log: Final = logging.getLogger("camera")

#: The server's default POLL_HOLD_SECONDS; our poll timeout must exceed its hold.
SERVER_DEFAULT_HOLD_SECONDS: Final = 30.0


def fleet_ids(count: int, first: int = 1) -> list[str]:
    """``cam-00001`` .. ``cam-<count>`` (from ``cam-<first>`` when given)."""
    return [f"cam-{i:05d}" for i in range(first, first + count)]


def build_fleet(
    settings: CameraSettings, count: int, session: aiohttp.ClientSession, first: int = 1
) -> list[Camera]:
    """``count`` cameras sharing ``session``, each with its own id and EventLog."""
    return [
        Camera(
            dataclasses.replace(settings, camera_id=camera_id),
            session=session,
            event_log=EventLog(),
            lifecycle_level=logging.DEBUG,
        )
        for camera_id in fleet_ids(count, first)
    ]


async def run_cameras(settings: CameraSettings, fleet: int | None = None, first: int = 1) -> None:
    """Run one camera (or a fleet) until SIGTERM/SIGINT, then close everything."""
    # limit=0: a fleet holds one long poll per camera at all times.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if fleet is None:
            cameras = [Camera(settings, session=session)]
        else:
            cameras = build_fleet(settings, fleet, session, first)
            log.info(
                "camrelay %s: a fleet of %d cameras (%s .. %s) polling %s; CAMERA_ID is "
                "ignored (LOG_LEVEL=DEBUG shows each camera)",
                version(),
                fleet,
                cameras[0].camera_id,
                cameras[-1].camera_id,
                settings.api_base_url,
            )

        loop = asyncio.get_running_loop()

        def stop_all(signame: str) -> None:
            log.info("received %s: stopping %d camera(s)", signame, len(cameras))
            for camera in cameras:
                camera.stop()

        settle_collector()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop_all, sig.name)
            except (NotImplementedError, RuntimeError):  # not on this platform/thread
                continue
            installed.append(sig)
        try:
            async with asyncio.TaskGroup() as group:
                for camera in cameras:
                    group.create_task(camera.run(), name=f"camera-{camera.camera_id}")
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        if fleet is not None:
            log.info("fleet of %d cameras stopped", len(cameras))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camera",
        description=(
            "Simulated camera for the camrelay server. Configured by environment: "
            "API_BASE_URL (required), CAMERA_ID, LOG_PERIOD_SECONDS, "
            "POLL_TIMEOUT_SECONDS, CAMERA_TOKEN, LOG_LEVEL."
        ),
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument(
        "--fleet",
        type=positive_int,
        metavar="N",
        help="run N cameras in this process, ids cam-00001..cam-N (for benchmarks)",
    )
    parser.add_argument(
        "--fleet-first",
        type=positive_int,
        default=1,
        metavar="K",
        help="number the fleet's ids from K (cam-K..): several fleet processes, distinct ids",
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status (2: bad configuration)."""
    args = _parser().parse_args(argv)
    try:
        settings = CameraSettings.from_env(os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"camera: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.poll_timeout_seconds <= SERVER_DEFAULT_HOLD_SECONDS:
        log.warning(
            "POLL_TIMEOUT_SECONDS=%g is not above the server's default POLL_HOLD_SECONDS "
            "(%g): polls will time out unless the server holds them for less",
            settings.poll_timeout_seconds,
            SERVER_DEFAULT_HOLD_SECONDS,
        )
    if args.fleet is not None:
        _make_room_for(args.fleet)
    asyncio.run(run_cameras(settings, fleet=args.fleet, first=args.fleet_first))
    return 0


def _make_room_for(cameras: int) -> None:
    """Each fleet camera holds one socket: lift the soft open-file limit if it is short."""
    needed = cameras + 64
    limit = raise_open_file_limit(needed)
    if limit.raised:
        log.info(
            "raised the open-file limit from %d to %d for %d cameras",
            limit.before,
            limit.now,
            cameras,
        )
    if limit.now < needed:
        log.warning(
            "the hard open-file limit %d is short of the %d sockets needed", limit.hard, needed
        )


if __name__ == "__main__":
    sys.exit(main())
