"""``python -m common.devserver [--ready HOST:PORT] COMMAND...``: what ``./run.sh dev`` execs
around adev, so that Ctrl-C stops it without a traceback. (In ``common``, whose import costs
nothing: a Ctrl-C right after the start must find the handlers installed.)

Ctrl-C in a terminal signals the whole foreground process group. adev's runserver got
SIGINT then, and so did the app process it starts, which adev goes on to stop with a
SIGINT of its own: one of the two lands while the app shuts down (or still imports) and
prints a KeyboardInterrupt traceback. Here COMMAND runs in a process group of its own,
so it hears of a stop from this wrapper only: one SIGINT to adev, which stops its app
process as it does on a reload. With ``--ready``, a stop asked for while the app is
still starting waits (``READY_TIMEOUT_SECONDS`` at most) until HOST:PORT accepts a
connection (probed while it starts, not after): an app interrupted in its imports
prints a traceback too. A second
Ctrl-C is passed on at once, as SIGTERM. The exit status is COMMAND's, and 0 when it
was stopped on purpose.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
READY_TIMEOUT_SECONDS: Final = 5.0
POLL_SECONDS: Final = 0.1
PROBE_INTERVAL_SECONDS: Final = 0.5
SETTLE_SECONDS: Final = 0.2
#: a wildcard bind address is reached on loopback
WILDCARDS: Final = {"", "0.0.0.0", "::", "[::]"}


def accepts(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=POLL_SECONDS).close()
    except OSError:
        return False
    return True


def parse_ready(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return ("127.0.0.1" if host in WILDCARDS else host.strip("[]"), int(port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.devserver")
    parser.add_argument("--ready", type=parse_ready, metavar="HOST:PORT")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("no COMMAND to run")
    stops = 0
    forwarded = 0

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1

    for signum in STOP_SIGNALS:
        signal.signal(signum, request_stop)
    # process_group=0: out of the terminal's foreground group, Ctrl-C reaches only us.
    child = subprocess.Popen(args.command, process_group=0)
    ready = args.ready is None
    next_probe = time.monotonic()
    first_stop_at: float | None = None
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = child.wait(POLL_SECONDS)
            break
        now = time.monotonic()
        if not ready and now >= next_probe:
            ready = accepts(args.ready)
            next_probe = now + PROBE_INTERVAL_SECONDS
            if ready:
                time.sleep(SETTLE_SECONDS)  # let the app be done with the probe
        if stops <= forwarded:
            continue
        first_stop_at = now if first_stop_at is None else first_stop_at
        if forwarded == 0 and not (
            ready or stops > 1 or now - first_stop_at >= READY_TIMEOUT_SECONDS
        ):
            continue
        # The first: SIGINT, adev's own way to stop. A second: SIGTERM (adev stops too).
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT if forwarded == 0 else signal.SIGTERM)
        forwarded = max(forwarded + 1, min(stops, 2))
    if stops and code in (0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT):
        return 0
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
