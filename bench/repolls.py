"""``python -m bench.repolls register|repoll ...``: drive the cluster's Redis directory
(``server.cluster.redis``) as nodes would, without sockets to cameras or HTTP.

- ``register``: cameras ``cam-<first>`` .. as a node registers a new camera's first
  poll: a claim, then the status write that follows it.
- ``repoll``: for ``--seconds``, ``--tasks`` concurrent loops each re-poll a batch of
  ``--batch`` random cameras among ``cam-1`` .. ``cam-<count>`` at a time, with the
  directory calls one idle camera's re-poll costs a node (``idle_repoll``).

Prints one JSON line: cameras done, seconds, and the directory calls made. The
sizing-redis scenario runs several at once (processes: the client's CPU, not
Redis, would otherwise be the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from typing import Final

import orjson

from server.cluster import StoreLimits
from server.cluster.backend import Claim, Directory, StatusWrite
from server.cluster.redis import RedisBackend
from server.relay import CameraStatus

__all__ = ["camera_id", "idle_repoll", "main", "register"]

#: long enough that no registered camera expires during a run (a real one re-polls
#: within a hold, which renews it), short enough that a re-poll after the first 90 s
#: renews its expiry (less than 9/10 of it left: ``directory.RETAIN_STEPS``), as every
#: re-poll of a real idle camera does (retention 40 s at the defaults, renewed in 4 s
#: steps, polled every 30 s)
RETENTION_SECONDS: Final = 900.0
#: directory calls per re-poll of ``idle_repoll``
CALLS_PER_REPOLL: Final = 2


def camera_id(number: int) -> str:
    """``cam-0000001``: the fleet's ids, zero-padded so that they page in number order."""
    return f"cam-{number:07d}"


def limits(max_cameras: int) -> StoreLimits:
    return StoreLimits(
        node_timeout_seconds=10.0,
        max_cameras=max_cameras,
        answered_retention_seconds=RETENTION_SECONDS,
        unanswered_retention_seconds=RETENTION_SECONDS,
        message_ttl_seconds=60.0,
    )


def _polling(camera_ids: Sequence[str], claims: Sequence[Claim]) -> list[StatusWrite]:
    now = time.time()
    return [
        StatusWrite(
            CameraStatus(camera, True, now, True, 0, 0),
            expect=False,
            answered=False,
            seq=claim.seq,
        )
        for camera, claim in zip(camera_ids, claims, strict=True)
    ]


async def register(directory: Directory, node: str, camera_ids: Sequence[str]) -> None:
    """A new camera's first poll at ``node``: claimed, then its status written."""
    claims = await directory.claim(camera_ids, node, again=False)
    await directory.write_status(node, _polling(camera_ids, claims))


async def idle_repoll(directory: Directory, node: str, camera_ids: Sequence[str]) -> None:
    """What an idle camera's re-poll at its home costs the directory: the home claims it
    again (``Homes.before_poll``) and the batched status write (``Fleet.flush``) writes
    it polling. Keep this in step with ``ClusterNode.poll``."""
    claims = await directory.claim(camera_ids, node, again=True)
    await directory.write_status(node, _polling(camera_ids, claims))


async def _register(directory: Directory, node: str, first: int, count: int, batch: int) -> int:
    numbers = range(first, first + count)
    slots = asyncio.Semaphore(4)

    async def one(start: int) -> None:
        async with slots:
            ids = [camera_id(n) for n in numbers[start : start + batch]]
            await register(directory, node, ids)

    await asyncio.gather(*(one(start) for start in range(0, count, batch)))
    return count


async def _repoll(
    directory: Directory, node: str, count: int, seconds: float, tasks: int, batch: int
) -> int:
    done = 0
    deadline = time.monotonic() + seconds

    async def loop(rng: random.Random) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            ids = [camera_id(rng.randint(1, count)) for _ in range(batch)]
            await idle_repoll(directory, node, ids)
            done += batch

    await asyncio.gather(*(loop(random.Random(seed)) for seed in range(tasks)))
    return done


async def _main(args: argparse.Namespace) -> dict[str, object]:
    backend = RedisBackend.from_url(
        args.url, args.prefix, limits(args.max_cameras), cluster=args.cluster
    )
    started = time.perf_counter()
    try:
        if args.action == "register":
            done = await _register(backend.directory, args.node, args.first, args.count, args.batch)
        else:
            done = await _repoll(
                backend.directory, args.node, args.count, args.seconds, args.tasks, args.batch
            )
        seconds = time.perf_counter() - started
        return {"cameras": done, "seconds": seconds, "commands_sent": backend.commands_sent}
    finally:
        await backend.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.repolls", description=__doc__)
    parser.add_argument("action", choices=("register", "repoll"))
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
    args = parser.parse_args(argv)
    figures = asyncio.run(_main(args))
    sys.stdout.buffer.write(orjson.dumps(figures) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
