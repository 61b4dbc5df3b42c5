"""``--profile DIR``: py-spy samples the server during a scenario; a summary says where time went.

py-spy writes collapsed stacks (``frame;frame;... count``); we add up the
samples by the component of the innermost frame (self time) and by handler
(inclusive time). Idle samples (the loop waiting in epoll) are not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.plan import Context

__all__ = ["Profile", "profiled", "summarize"]

SAMPLE_RATE: Final = 250
FRAME: Final = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")
#: A frame's file path names its component; the first match wins.
COMPONENTS: Final = (
    ("/server/relay/", "server.relay (core)"),
    ("/server/", "server (http layer)"),
    ("/bench/", "bench"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "yarl/multidict"),
    ("multidict/", "yarl/multidict"),
    ("prometheus_client/", "prometheus_client"),
    ("asyncio/", "asyncio"),
    ("logging/", "logging"),
)
#: The loop waiting for events: py-spy --nonblocking cannot tell it from work.
IDLE_FUNCTION: Final = "EpollSelector.select"
INCLUSIVE_OF: Final = frozenset(
    {
        "get_logs",
        "poll_for_command",
        "send_logs",
        "healthz",
        "list_cameras",
        "receive_result",
        "feed",
        "stream_logs",
        "json_response",
        "fetch_logs",
        "submit_result",
        "select",
        "serve_request",
        "_handle_request",
        "data_received",
        "finish_response",
        "write",
        "_read_ready",
    }
)


def component(file: str) -> str:
    for marker, name in COMPONENTS:
        if marker in file:
            return name
    return "python/other"


@dataclass(slots=True)
class Profile:
    label: str
    output: Path | None = None
    lines: list[str] = field(default_factory=list)


def _pyspy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def profiled(ctx: Context, label: str, pid: int) -> AsyncIterator[Profile]:
    """Sample ``pid`` with py-spy while the block runs (a no-op without ``--profile``)."""
    profile = Profile(label)
    if ctx.profile_dir is None:
        yield profile
        return
    pyspy = _pyspy()
    if pyspy is None:
        profile.lines.append("py-spy not found: pip install py-spy to profile")
        yield profile
        return
    ctx.profile_dir.mkdir(parents=True, exist_ok=True)
    output = ctx.profile_dir / f"{label}.collapsed"
    log = ctx.profile_dir / f"{label}.py-spy.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            pyspy,
            "record",
            f"--pid={pid}",
            "--format=raw",
            f"--output={output}",
            f"--rate={SAMPLE_RATE}",
            "--nonblocking",
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    await asyncio.sleep(1.0)  # attaching takes a moment
    try:
        yield profile
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    if output.exists():
        profile.output = output
        profile.lines = summarize(output)
        (ctx.profile_dir / f"{label}.summary.txt").write_text("\n".join(profile.lines) + "\n")
    else:
        profile.lines.append(f"py-spy wrote no profile; see {log}")


def summarize(path: Path, top: int = 12) -> list[str]:
    """Self time by component and by function, inclusive time of the handlers."""
    self_by_component: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(frame) for frame in stack.split(";")]
        func, file = frames[-1]
        if func.endswith(IDLE_FUNCTION):
            idle += count
            continue
        total += count
        self_by_component[component(file)] += count
        self_by_function[f"{func} ({_short(file)})"] += count
        for name in {_method(func) for func, _ in frames} & INCLUSIVE_OF:
            inclusive[name] += count
    if total == 0:
        return ["no samples (the process was idle)"]
    lines = [f"{total} samples busy ({idle} more waiting in epoll, left out)"]
    lines.append("self time by component: " + _shares(self_by_component, total, top))
    lines.append("self time by function: " + _shares(self_by_function, total, top))
    lines.append("inclusive: " + _shares(inclusive, total, len(INCLUSIVE_OF)))
    return lines


def _method(func: str) -> str:
    """``RequestHandler.start`` -> ``start``."""
    return func.rpartition(".")[2]


def _parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["func"], match["file"]


def _short(file: str) -> str:
    parts = Path(file).parts
    return "/".join(parts[-2:]) if parts else file


def _shares(counter: Counter[str], total: int, top: int) -> str:
    return ", ".join(f"{name} {100 * n / total:.1f}%" for name, n in counter.most_common(top))
