"""The fleet in Redis: which node is each camera's home, and its status for ``/cameras``.

``{prefix}:cam:{id}`` is a hash (``home``, ``seen`` epoch ms, ``polling``,
``waiting``, ``inflight``, ``expect``, and ``seq`` counting its claims),
``{prefix}:cams`` a sorted set of the ids (all scores 0, so ``ZRANGEBYLEX`` gives
prefix and cursor paging), and ``{prefix}:parked:{id}`` the work a stopping node
left for the camera's next home. Every key has a TTL: the camera retention for the first two, the
longest ``/logs`` wait for parked work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ..relay import CameraStatus
from .bus import execute

#: claim a camera: become its home; returns the old home ("" if none), any parked work and
#: the claim's sequence number (the order of the camera's claims, which all nodes agree on);
#: ARGV[5] '1': the home claims again, and only numbers the claim if it still is the home
CLAIM = """
local old = redis.call('HGET', KEYS[1], 'home') or ''
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if old == ARGV[1] and ARGV[5] == '1' then return {old, '', seq} end
redis.call('HSET', KEYS[1], 'home', ARGV[1], 'seen', ARGV[2], 'polling', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local parked = ''
if old == '' then
  parked = redis.call('GET', KEYS[3]) or ''
  if parked ~= '' then redis.call('DEL', KEYS[3]) end
end
return {old, parked, seq}
"""

#: a home's status update: written only while this node is the home (or nobody is)
UPDATE = """
local home = redis.call('HGET', KEYS[1], 'home')
if home and home ~= '' and home ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'home', ARGV[1], 'seen', ARGV[2], 'polling', ARGV[3],
           'waiting', ARGV[4], 'inflight', ARGV[5], 'expect', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], 0, ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
"""

#: a stopping home leaves its work for the next one and gives the camera up
PARK = """
local home = redis.call('HGET', KEYS[1], 'home')
if home ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'home', '', 'polling', '0')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    old_home: str
    parked: bytes
    #: this claim's place in the camera's claims (a takeover of a lower one is stale)
    seq: int


@dataclass(frozen=True, slots=True)
class CameraEntry:
    camera_id: str
    home: str
    seen_ms: int | None
    polling: bool
    waiting: int
    in_flight: int
    expect: bool

    def seconds_since_seen(self, now: float) -> float:
        return float("inf") if self.seen_ms is None else now - self.seen_ms / 1000

    def status(self, now: float, connect_timeout: float, home_alive: bool) -> CameraStatus:
        polling = self.polling and home_alive
        online = polling or self.seconds_since_seen(now) <= connect_timeout
        last_seen = None if self.seen_ms is None else self.seen_ms / 1000
        return CameraStatus(
            self.camera_id, online, last_seen, polling, self.waiting, self.in_flight
        )


FIELDS = ("home", "seen", "polling", "waiting", "inflight", "expect")


def _entry(camera_id: str, values: list[bytes | None]) -> CameraEntry | None:
    home, seen, polling, waiting, in_flight, expect = values
    if home is None and seen is None:
        return None
    return CameraEntry(
        camera_id,
        (home or b"").decode(),
        None if seen is None else int(seen),
        polling == b"1",
        int(waiting or 0),
        int(in_flight or 0),
        expect == b"1",
    )


class Registry:
    def __init__(self, redis: Redis, prefix: str, node: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node = node
        self._ttl_ms = int(ttl_seconds * 1000)
        self._claim = redis.register_script(CLAIM)
        self._update = redis.register_script(UPDATE)
        self._park = redis.register_script(PARK)
        self.ids_key = f"{prefix}:cams"

    def camera_key(self, camera_id: str) -> str:
        return f"{self._prefix}:cam:{camera_id}"

    def parked_key(self, camera_id: str) -> str:
        return f"{self._prefix}:parked:{camera_id}"

    async def claim_each(self, camera_ids: list[str], *, again: bool = False) -> list[Claim]:
        """Become the home of each of ``camera_ids``, in one round trip: for each, the
        previous home ("" if none), the work parked for it and the claim's sequence.
        ``again``: this node is their home already (its status is written apart)."""
        pipe = self._redis.pipeline(transaction=False)
        now_ms = _now_ms()
        for camera_id in camera_ids:
            await self._claim(
                keys=[self.camera_key(camera_id), self.ids_key, self.parked_key(camera_id)],
                args=[self._node, now_ms, self._ttl_ms, camera_id, int(again)],
                client=pipe,
            )
        return [Claim(old.decode(), parked, seq) for old, parked, seq in await execute(pipe)]

    async def update(self, statuses: list[tuple[CameraStatus, bool]]) -> None:
        """Write this home's cameras (status, expects a result) in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for status, expect in statuses:
            seen = _now_ms() if status.last_seen is None else int(status.last_seen * 1000)
            await self._update(
                keys=[self.camera_key(status.camera_id), self.ids_key],
                args=[
                    self._node,
                    seen,
                    int(status.polling),
                    status.waiting,
                    status.in_flight,
                    int(expect),
                    self._ttl_ms,
                    status.camera_id,
                ],
                client=pipe,
            )
        await execute(pipe)

    async def park(self, camera_id: str, work: bytes, ttl_seconds: float) -> bool:
        """Leave ``work`` for the camera's next home; False if another node is its home
        already (it claimed the camera first)."""
        parked: int = await self._park(
            keys=[self.camera_key(camera_id), self.parked_key(camera_id)],
            args=[self._node, work, int(ttl_seconds * 1000)],
        )
        return parked == 1

    async def read(self, camera_id: str) -> CameraEntry | None:
        values: Any = await self._redis.hmget(self.camera_key(camera_id), list(FIELDS))
        return _entry(camera_id, values)

    async def read_each(self, camera_ids: list[str]) -> list[CameraEntry | None]:
        """The entries of ``camera_ids`` in one round trip (``None`` for an unknown id)."""
        pipe = self._redis.pipeline(transaction=False)
        for camera_id in camera_ids:
            pipe.hmget(self.camera_key(camera_id), list(FIELDS))
        values = await execute(pipe)
        return [_entry(camera_id, v) for camera_id, v in zip(camera_ids, values, strict=True)]

    async def read_many(self, camera_ids: list[str]) -> list[CameraEntry]:
        found: list[CameraEntry] = []
        gone: list[str] = []
        for camera_id, entry in zip(camera_ids, await self.read_each(camera_ids), strict=True):
            if entry is None:
                gone.append(camera_id)
            else:
                found.append(entry)
        if gone:  # their hashes expired: drop them from the index too
            await self._redis.zrem(self.ids_key, *gone)
        return found

    async def ids(self, prefix: str, after: str | None, count: int) -> list[str]:
        """Up to ``count`` ids in order, starting with ``prefix``, after ``after``."""
        low = f"({after}" if after is not None and after >= prefix else f"[{prefix}"
        high = f"[{prefix}\xff" if prefix else "+"
        raw: list[bytes] = await self._redis.zrangebylex(  # type: ignore[assignment]
            self.ids_key, low, high, start=0, num=count
        )
        return [value.decode() for value in raw]


def _now_ms() -> int:
    return int(time.time() * 1000)
