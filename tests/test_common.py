"""What the server, the camera and the benchmarks share (``common``)."""

from __future__ import annotations

import subprocess
import sys

from common.fdlimit import hard_open_file_limit
from tools.procs import REPO

#: Starts at a soft limit of 256, then asks for 300, for 200, and for the most.
RAISE_AND_PRINT = (
    "import resource\n"
    "from common.fdlimit import raise_open_file_limit as lift\n"
    "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
    "wanted = lift(300)\n"
    "print(wanted.before, wanted.now)\n"
    "print(lift(200).now, lift().now)\n"
)


def test_the_open_file_limit_is_raised_to_what_is_wanted_within_the_hard_limit() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", RAISE_AND_PRINT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # 256 -> 300 as asked; asking for less leaves it; no argument lifts it to the hard limit.
    assert completed.stdout.split() == ["256", "300", "300", str(hard_open_file_limit())]
