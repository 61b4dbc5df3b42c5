"""python -m server: run the relay (--workers N: N nodes on one port under a supervisor);
python -m server camera-token ID: print a camera's token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from common.cli import positive_int
from common.fdlimit import raise_open_file_limit
from common.grammar import CAMERA_ID_RULE, is_camera_id
from common.version import version, version_line

from .app import auth_warnings, create_app
from .http.auth import camera_token
from .observe.logging_setup import configure_logging
from .serve.httpguard import UnsupportedAiohttp
from .serve.runner import ListenError, serve
from .serve.supervisor import run_workers, stop_with_supervisor
from .settings import MAX_WORKERS, ConfigError, Settings, settings_help

logger = logging.getLogger("camrelay")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description=__doc__,
        epilog="settings (environment variables; unset or empty means the default):\n"
        + settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="run N node processes on PORT under a supervisor (needs REDIS_URL; "
        "default: WORKERS, else 1)",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind PORT with SO_REUSEPORT (how the supervisor starts its workers)",
    )
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the relay server (the default)")
    token_parser = commands.add_parser(
        "camera-token", help="print the bearer token a camera sends (needs CAMERA_SECRET)"
    )
    token_parser.add_argument("camera_id", metavar="CAMERA_ID")
    args = parser.parse_args(argv)

    if args.command == "camera-token":
        return _print_camera_token(args.camera_id)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"camrelay: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level_number, settings.log_format, settings.node_name)
    workers = settings.workers if args.workers is None else args.workers
    if workers > MAX_WORKERS:
        print(
            f"camrelay: configuration error: --workers must be at most {MAX_WORKERS}, "
            f"got {workers}",
            file=sys.stderr,
        )
        return 2
    if workers > 1:

        def announce() -> None:
            logger.info("%s", startup_summary(settings, workers))
            logger.debug("settings: %r", settings)
            for warning in auth_warnings(settings):
                logger.warning("%s", warning)

        return run_workers(workers, settings, announce)
    # A supervised worker: its supervisor logged the summary for all of them.
    startup_level = logging.INFO if args.supervisor_pid is None else logging.DEBUG
    if args.supervisor_pid is not None:
        stop_with_supervisor(args.supervisor_pid)
    logger.log(startup_level, "%s", startup_summary(settings))
    logger.debug("settings: %r", settings)
    _raise_open_file_limit(startup_level)
    try:
        asyncio.run(
            serve(
                create_app(settings, startup_log_level=startup_level),
                settings,
                reuse_port=args.reuse_port,
                startup_log_level=startup_level,
            )
        )
    except (ListenError, UnsupportedAiohttp) as error:
        # One write: workers failing at once must not run their lines together.
        sys.stderr.write(f"camrelay: {error}\n")
        return 2
    logger.info("stopped")
    return 0


def startup_summary(settings: Settings, workers: int = 1) -> str:
    """One short line: the version, where, single node or cluster, auth on or off."""
    redis = settings.redis_url_redacted
    mode = "single node" if redis is None else f"cluster on {redis}"
    if workers > 1:
        mode += f", {workers} workers"
    users, cameras = settings.api_token is not None, settings.camera_secret is not None
    if users == cameras:
        auth = "auth on" if users else "auth off"
    else:
        auth = f"auth on for {'users' if users else 'cameras'} only"
    return (
        f"starting with camrelay {version()} on {settings.host}:{settings.port}, {mode}, "
        f"{auth} (LOG_LEVEL=DEBUG shows every setting)"
    )


def _raise_open_file_limit(level: int = logging.INFO) -> None:
    """Every held poll is one socket: lift the soft fd limit to the hard one."""
    try:
        limit = raise_open_file_limit()
    except (OSError, ValueError) as error:
        logger.warning("could not raise the open-file limit: %s", error)
        return
    if limit.raised:
        logger.log(level, "raised the open-file limit from %d to %d", limit.before, limit.now)
    else:
        logger.log(
            level, "open-file limit %d: about that many cameras can hold a poll at once", limit.now
        )


def _print_camera_token(camera_id: str) -> int:
    secret = os.environ.get("CAMERA_SECRET", "").strip()
    if not secret:
        print("camrelay: set CAMERA_SECRET to the server's secret first", file=sys.stderr)
        return 2
    if not is_camera_id(camera_id):
        print(f"camrelay: a cameraId is {CAMERA_ID_RULE}", file=sys.stderr)
        return 2
    print(camera_token(secret, camera_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
