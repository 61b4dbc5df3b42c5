"""``python -m server --workers N``: N node processes on one port under one supervising parent.

Each worker is ``python -m server --reuse-port``: a whole node (its own event loop,
relay and Redis connections) whose listening socket shares ``PORT`` with the others
through SO_REUSEPORT; the kernel spreads new connections over the workers' sockets.
Workers share the fleet through Redis, so N > 1 requires ``REDIS_URL``.

The parent serves nothing itself. It
- names each worker ``<name>-w<index>`` (``<name>`` is ``NODE_NAME``, or host name and
  parent pid), with ``.<restart>`` appended for a restarted worker: a new process never
  takes over the name of one the cluster may still believe alive;
- restarts a worker that exits, after a backoff that doubles with each quick failure
  (one warning line each); a worker that exits 2 (bad configuration, port taken) is not
  restarted: the parent stops the others and exits 2;
- forwards SIGTERM and SIGINT to every worker, restarts nothing once stopping, kills a
  worker still running ``STOP_GRACE_SECONDS`` past the shutdown timeout, and exits 0
  when every worker exited 0 (1 otherwise);
- if it is killed itself (SIGKILL), its workers get SIGTERM from the kernel and stop
  (``stop_with_supervisor``): no orphan keeps serving on the port.

Connections already queued on a stopping worker's socket: each worker has its own
accept queue, and closing a listening socket resets what waits in it. A stopping
worker therefore keeps accepting and answering until its queue is empty and only then
closes its socket (``server.serve.listener``); from then on the kernel routes new connections
to the remaining workers. ``sysctl net.ipv4.tcp_migrate_req=1`` (Linux >= 5.14) also
hands the few that arrive in the instant of the close to another worker, and covers a
worker that dies without stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..settings import Settings

logger = logging.getLogger("camrelay.supervisor")

#: The exit status of a worker that cannot start (configuration, address in use).
EXIT_CANNOT_START: Final = 2
FIRST_BACKOFF_SECONDS: Final = 0.1
MAX_BACKOFF_SECONDS: Final = 5.0
#: A worker that ran this long before exiting is restarted after the first backoff again.
STABLE_AFTER_SECONDS: Final = 10.0
STOP_GRACE_SECONDS: Final = 5.0
FORWARDED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
#: prctl(2): the signal the calling process gets when its parent dies
PR_SET_PDEATHSIG: Final = 1


def worker_name(base: str, index: int, restart: int) -> str:
    return f"{base}-w{index}" + (f".{restart}" if restart else "")


def backoff_seconds(quick_failures: int) -> float:
    if quick_failures <= 0:
        return 0.0
    return min(FIRST_BACKOFF_SECONDS * 2.0 ** (quick_failures - 1), MAX_BACKOFF_SECONDS)


def worker_argv() -> list[str]:
    return [sys.executable, "-m", "server", "--reuse-port", f"--supervisor-pid={os.getpid()}"]


def stop_with_supervisor(supervisor_pid: int) -> None:
    """In a worker: have the kernel send SIGTERM when the supervisor dies (Linux), so that
    a supervisor killed with SIGKILL leaves no orphan serving on its port."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        logger.warning("cannot follow the supervisor's death: errno %d", ctypes.get_errno())
    if os.getppid() != supervisor_pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Supervisor:
    """Runs ``count`` workers until a signal; ``run()`` returns the exit status."""

    count: int
    base_name: str
    environ: Mapping[str, str]
    argv: Sequence[str]
    shutdown_timeout_seconds: float
    _processes: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    _final_codes: dict[int, int] = field(default_factory=dict)
    _first_started: dict[int, str] = field(default_factory=dict)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: the signal passed on to the workers when stopping
    _stop_signal: int = signal.SIGTERM
    _cannot_start: bool = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, self.stop, signum)
        try:
            tasks = [
                asyncio.create_task(self._keep_running(index), name=f"camrelay-worker-{index}")
                for index in range(1, self.count + 1)
            ]
            await self._stopping.wait()
            _, late = await asyncio.wait(
                tasks, timeout=self.shutdown_timeout_seconds + STOP_GRACE_SECONDS
            )
            if late:
                for index, process in self._processes.items():
                    if process.returncode is None:
                        logger.warning("worker %d did not stop in time: killing it", index)
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
            await asyncio.gather(*tasks)
        finally:
            for signum in FORWARDED_SIGNALS:
                loop.remove_signal_handler(signum)
        if self._cannot_start:
            return EXIT_CANNOT_START
        # A worker ended by the signal itself had not set its handlers up: it was still
        # starting (a restart just before the stop), so it held nothing to lose.
        failed = {
            index: code
            for index, code in self._final_codes.items()
            if code not in (0, -self._stop_signal)
        }
        if failed:
            logger.warning("workers that did not exit 0: %s", failed)
            return 1
        logger.info("all %d workers stopped", self.count)
        return 0

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop restarting and pass ``signum`` on to every running worker."""
        if not self._stopping.is_set():
            self._stop_signal = signum
        self._stopping.set()
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def _keep_running(self, index: int) -> None:
        restart = 0
        quick_failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            name = worker_name(self.base_name, index, restart)
            process = await asyncio.create_subprocess_exec(
                *self.argv, env={**self.environ, "NODE_NAME": name, "WORKERS": "1"}
            )
            self._processes[index] = process
            if self._stopping.is_set():  # a signal came while it was being spawned
                process.send_signal(self._stop_signal)
            started = loop.time()
            # First starts: one line once all are up; a restart has a line of its own.
            logger.log(
                logging.INFO if restart else logging.DEBUG,
                "worker %s started (pid %d)",
                name,
                process.pid,
            )
            if not restart:
                self._first_started[index] = f"{name} (pid {process.pid})"
                if len(self._first_started) == self.count:
                    logger.info(
                        "%d workers started: %s",
                        self.count,
                        ", ".join(started for _, started in sorted(self._first_started.items())),
                    )
            code = await process.wait()
            if self._stopping.is_set():
                self._final_codes[index] = code
                return
            if code == EXIT_CANNOT_START:
                logger.error("worker %s cannot start (exit %d): stopping all", name, code)
                self._cannot_start = True
                self.stop()
                return
            ran = loop.time() - started
            quick_failures = 1 if ran >= STABLE_AFTER_SECONDS else quick_failures + 1
            delay = backoff_seconds(quick_failures)
            logger.warning(
                "worker %s (pid %d) exited with status %d after %.1f s; restarting in %.1f s",
                name,
                process.pid,
                code,
                ran,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            restart += 1


def run_workers(count: int, settings: Settings, announce: Callable[[], None] | None = None) -> int:
    """``python -m server --workers count``: supervise until stopped; the exit status.
    ``announce`` logs the start-up summary, once the settings are known to allow workers."""
    environ = dict(os.environ)
    port = settings.port
    if settings.redis_url is None:
        print(
            f"camrelay: --workers {count} needs REDIS_URL (workers share the fleet through "
            "Redis), e.g. REDIS_URL=redis://127.0.0.1:6379",
            file=sys.stderr,
        )
        return 2
    if port == 0:
        print(f"camrelay: --workers {count} needs a fixed PORT, got 0", file=sys.stderr)
        return 2
    supervisor = Supervisor(
        count=count,
        base_name=settings.node_name,
        environ=environ,
        argv=worker_argv(),
        shutdown_timeout_seconds=settings.shutdown_timeout_seconds,
    )
    if announce is not None:
        announce()
    logger.debug("starting %d workers on port %d", count, port)
    return asyncio.run(supervisor.run())
