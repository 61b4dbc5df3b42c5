"""``python -m bench.repolls register|refresh ...``: drive the cluster's Redis directory
(``server.cluster.redis``) as nodes would, without sockets to cameras or HTTP.

- ``register``: cameras ``cam-<first>`` .. as a node registers a new camera's first
  poll: a claim, then the status write that follows it. With ``--seqs FILE``, the
  claims' ``seq`` are saved there (what the home remembers of each camera).
- ``refresh``: for ``--seconds`` (or until each is done once), ``--tasks`` concurrent
  loops refresh cameras ``cam-<first>`` .. ``cam-<first + count - 1>`` in order, each
  once, ``--batch`` a call, with the one directory call an idle polling camera's home
  makes per refresh interval (``refresh``: a status write, ``seq`` the registration's
  claim's, from the ``--seqs`` files of the ``register`` runs).

Prints one JSON line: cameras done, seconds, and the directory calls made. The
sizing-redis scenario runs several at once (processes: the client's CPU, not
Redis, would otherwise be the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import orjson

from server.cluster import StoreLimits
from server.cluster.backend import Directory, StatusWrite
from server.cluster.redis import RedisBackend
from server.relay import CameraStatus

__all__ = ["camera_id", "main", "refresh", "register"]

#: a registered camera's retention: long enough that none expires during a run
REGISTER_RETENTION_SECONDS: Final = 600.0
#: a refresh's: long enough that a registered entry has less than 9/10 of the refresh's
#: expiry left (``directory.RETAIN_STEPS``), so that each refresh renews it, as every
#: real refresh does (it comes ``STATUS_REFRESH_SECONDS`` after the last write, when
#: the entry has its retention left: 40 s at the defaults)
RETENTION_SECONDS: Final = 900.0


def camera_id(number: int) -> str:
    """``cam-0000001``: the fleet's ids, zero-padded so that they page in number order."""
    return f"cam-{number:07d}"


def limits(max_cameras: int, retention_seconds: float) -> StoreLimits:
    return StoreLimits(
        node_timeout_seconds=10.0,
        max_cameras=max_cameras,
        answered_retention_seconds=retention_seconds,
        unanswered_retention_seconds=retention_seconds,
        message_ttl_seconds=60.0,
    )


def _polling(camera_ids: Sequence[str], seqs: Sequence[int]) -> list[StatusWrite]:
    now = time.time()
    return [
        StatusWrite(
            CameraStatus(camera, True, now, True, 0, 0), expect=False, answered=False, seq=seq
        )
        for camera, seq in zip(camera_ids, seqs, strict=True)
    ]


async def register(directory: Directory, node: str, camera_ids: Sequence[str]) -> list[int]:
    """A new camera's first poll at ``node``: claimed, then its status written. Returns
    each camera's ``seq`` as the home knows it afterwards."""
    claims = await directory.claim(camera_ids, node, again=False)
    written = await directory.write_status(node, _polling(camera_ids, [c.seq for c in claims]))
    return [w.seq for w in written]


async def refresh(
    directory: Directory, node: str, camera_ids: Sequence[str], seqs: Sequence[int]
) -> None:
    """What an idle polling camera costs the directory per refresh interval
    (``STATUS_REFRESH_SECONDS``): its home's batched status write (``Fleet.flush``, a
    camera whose last write is that old) says it is polling, nobody waits, nothing is
    in flight, with the ``seq`` of the home's claim (``seqs``: the registration's). A
    poll at the home writes nothing (``WrittenStatus``). Keep this in step with
    ``Fleet.flush``."""
    written = await directory.write_status(node, _polling(camera_ids, seqs))
    lost = [w for w in written if w.lost_to(node)]
    if lost:
        raise RuntimeError(f"{len(lost)} refreshes did not land: {lost[0]}")


async def _register(
    directory: Directory, node: str, first: int, count: int, batch: int
) -> list[int]:
    numbers = range(first, first + count)
    slots = asyncio.Semaphore(4)
    seqs = [0] * count

    async def one(start: int) -> None:
        async with slots:
            ids = [camera_id(n) for n in numbers[start : start + batch]]
            seqs[start : start + len(ids)] = await register(directory, node, ids)

    await asyncio.gather(*(one(start) for start in range(0, count, batch)))
    return seqs


def _load_seqs(paths: Sequence[Path], first: int, count: int) -> list[int]:
    """The seqs the ``register`` runs saved of cameras ``first`` .. ``first + count - 1``."""
    seqs: dict[int, int] = {}
    for path in paths:
        saved = orjson.loads(path.read_bytes())
        start = saved["first"]
        numbers = range(max(first, start), min(first + count, start + len(saved["seqs"])))
        seqs.update((n, saved["seqs"][n - start]) for n in numbers)
    missing = count - len(seqs)
    if missing:
        raise RuntimeError(f"--seqs hold no seq for {missing} of {count} cameras")
    return [seqs[n] for n in range(first, first + count)]


async def _refresh(
    directory: Directory,
    node: str,
    first: int,
    seqs: Sequence[int],
    seconds: float,
    tasks: int,
    batch: int,
) -> int:
    """Cameras ``first`` .. in order (a home refreshes its oldest writes first), each
    once, ``batch`` a call, until ``seconds`` pass or none is left."""
    done = 0
    starts = iter(range(0, len(seqs), batch))
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        for start in starts:
            if time.monotonic() >= deadline:
                return
            ids = [camera_id(first + k) for k in range(start, min(start + batch, len(seqs)))]
            await refresh(directory, node, ids, seqs[start : start + len(ids)])
            done += len(ids)

    await asyncio.gather(*(loop() for _ in range(tasks)))
    return done


async def _main(args: argparse.Namespace) -> dict[str, object]:
    refreshing = args.action == "refresh"
    seqs = _load_seqs(args.seqs, args.first, args.count) if refreshing else []
    retention = RETENTION_SECONDS if refreshing else REGISTER_RETENTION_SECONDS
    backend = RedisBackend.from_url(
        args.url, args.prefix, limits(args.max_cameras, retention), cluster=args.cluster
    )
    started = time.perf_counter()
    try:
        if args.action == "register":
            seqs = await _register(backend.directory, args.node, args.first, args.count, args.batch)
            done = len(seqs)
        else:
            done = await _refresh(
                backend.directory,
                args.node,
                args.first,
                seqs,
                args.seconds,
                args.tasks,
                args.batch,
            )
        seconds = time.perf_counter() - started
    finally:
        await backend.close()
    if args.action == "register":
        for path in args.seqs:
            path.write_bytes(orjson.dumps({"first": args.first, "seqs": seqs}))
    return {"cameras": done, "seconds": seconds, "commands_sent": backend.commands_sent}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repolls", description=__doc__)
    parser.add_argument("action", choices=("register", "refresh"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--cluster", action="store_true", help="a Redis Cluster")
    parser.add_argument("--prefix", default="camrelay")
    parser.add_argument("--node", required=True, help="the home's incarnation")
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--max-cameras", type=int, default=20_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--seqs",
        type=Path,
        action="append",
        default=[],
        help="register: save the claims' seqs here; refresh: read them (once per register run)",
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(_main(args))
    sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
