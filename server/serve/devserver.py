"""``python -m server.serve.devserver COMMAND...``: what ``./run.sh dev`` execs around adev.

Ctrl-C in a terminal signals the whole foreground process group. adev's runserver then
gets SIGINT, and so does the app process it forked, which adev goes on to stop with a
SIGINT of its own: the second one lands while the app shuts down (or still imports) and
prints a KeyboardInterrupt traceback. Here COMMAND runs in a process group of its own, so
that it only hears of a stop from this wrapper: one SIGINT to adev, which stops its app
process as it would on reload. A second Ctrl-C is passed on as SIGTERM. The exit status
is COMMAND's, 0 when it was stopped on purpose.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print("usage: python -m server.serve.devserver COMMAND [ARGS...]", file=sys.stderr)
        return 2
    stops = 0
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if child is None:  # not started yet: it will not be
            return
        # The first: SIGINT, adev's own way to stop. A second: SIGTERM (adev stops too).
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT if stops == 1 else signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    if stops:
        return 0
    # process_group=0: out of the terminal's foreground group, Ctrl-C reaches only us.
    child = subprocess.Popen(command, process_group=0)
    if stops:  # a signal came while it was being started
        os.kill(child.pid, signal.SIGINT)
    code = child.wait()
    if stops and code in (0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT):
        return 0
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
