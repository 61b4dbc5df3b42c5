"""The camera directory in Redis: homes, claims, status and parked work.

Each claim and status write is one Lua script (atomic per camera), pipelined
for a list of cameras. A claim's ``seq`` is the larger of the stored one plus
one and Redis' clock in microseconds, so a claim after the store lost its
data still orders after every claim before (Redis' clock moved on).

A camera's hash expires after the retention its answers earned (long once it
answered a command, short while it never did), so a flood of ids that never
answer leaves Redis on its own. The ``expiry`` sorted set mirrors those
expiry times: counting its live members is the directory's size (for
``max_cameras``), and its past ones are forgotten from both sorted sets a
bounded number at a time, inside ``claim`` and ``count``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio.client import Pipeline

from ..backend import CameraEntry, Claim, Directory, StatusWrite, StoreLimits, Written
from .connection import Store, execute
from .keys import Keys

#: ids forgotten at most per claimed camera, and per ``count``
FORGET_PER_CLAIM = 16
FORGET_PER_COUNT = 256

_COMMON = """
local function now()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end
local function int(n) return string.format('%.0f', n) end
local function forget(cams, expiry, now_ms, limit)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', '(' .. int(now_ms), 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', expiry, unpack(gone))
    redis.call('ZREM', cams, unpack(gone))
  end
end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function retain(cam, cams, expiry, id, answered, now_ms, answered_ttl, unanswered_ttl)
  local ttl = tonumber(unanswered_ttl)
  if answered == '1' then ttl = tonumber(answered_ttl) end
  redis.call('PEXPIRE', cam, ttl)
  redis.call('ZADD', cams, 0, id)
  redis.call('ZADD', expiry, int(now_ms + ttl), id)
  keep(cams, ttl)
  keep(expiry, ttl)
end
"""

#: KEYS: cam, cams, expiry, parked. ARGV: node, seen ms, id, again, max cameras,
#: answered ttl ms, unanswered ttl ms, forget limit.
#: Returns {old home, parked work, seq, refused}.
CLAIM = (
    _COMMON
    + """
local now_ms, now_us = now()
forget(KEYS[2], KEYS[3], now_ms, tonumber(ARGV[8]))
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('ZCOUNT', KEYS[3], int(now_ms), '+inf') >= tonumber(ARGV[5]) then
    return {'', '', '0', 1}
  end
end
local stored = redis.call('HMGET', KEYS[1], 'home', 'seq', 'answered')
local old = stored[1] or ''
local seq = int(math.max((tonumber(stored[2] or '0') or 0) + 1, now_us))
local parked = ''
if ARGV[4] == '1' and old == ARGV[1] then
  redis.call('HSET', KEYS[1], 'seq', seq, 'seen', ARGV[2], 'polling', '1')
else
  redis.call('HSET', KEYS[1], 'home', ARGV[1], 'seen', ARGV[2], 'polling', '1', 'seq', seq)
  if old == '' then
    parked = redis.call('GET', KEYS[4]) or ''
    if parked ~= '' then redis.call('DEL', KEYS[4]) end
  end
end
retain(KEYS[1], KEYS[2], KEYS[3], ARGV[3], stored[3], now_ms, ARGV[6], ARGV[7])
return {old, parked, seq, 0}
"""
)

#: KEYS: cam, cams, expiry. ARGV: node, seen ms, polling, waiting, inflight, expect,
#: answered, id, answered ttl ms, unanswered ttl ms, the writer's claim seq.
#: Returns {home, seq}. Nobody home but a claim later than the writer's (another node
#: claimed and parked it since): nothing is written. ``answered`` sticks once set.
WRITE_STATUS = (
    _COMMON
    + """
local stored = redis.call('HMGET', KEYS[1], 'home', 'seq', 'answered')
local home = stored[1] or ''
local seq = stored[2] or '0'
if home ~= '' and home ~= ARGV[1] then return {home, seq} end
if home == '' and (tonumber(seq) or 0) > tonumber(ARGV[11]) then return {'', seq} end
local now_ms, now_us = now()
if home == '' then seq = int(math.max((tonumber(seq) or 0) + 1, now_us)) end
local answered = '0'
if ARGV[7] == '1' or stored[3] == '1' then answered = '1' end
redis.call('HSET', KEYS[1], 'home', ARGV[1], 'seen', ARGV[2], 'polling', ARGV[3],
           'waiting', ARGV[4], 'inflight', ARGV[5], 'expect', ARGV[6], 'answered', answered,
           'seq', seq)
retain(KEYS[1], KEYS[2], KEYS[3], ARGV[8], answered, now_ms, ARGV[9], ARGV[10])
return {ARGV[1], seq}
"""
)

#: KEYS: cam, parked. ARGV: node, work, ttl ms. Returns 1 if parked.
PARK = """
local home = redis.call('HGET', KEYS[1], 'home')
if home ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'home', '', 'polling', '0')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""

#: KEYS: cams, expiry. ARGV: forget limit. Returns the live cameras.
COUNT = (
    _COMMON
    + """
local now_ms = now()
forget(KEYS[1], KEYS[2], now_ms, tonumber(ARGV[1]))
return redis.call('ZCOUNT', KEYS[2], int(now_ms), '+inf')
"""
)

#: KEYS: cams, expiry, then the hash of each id in ARGV. Drops the ids whose hash is gone
#: from both sorted sets (atomically: one claimed meanwhile stays listed).
FORGET = """
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 2]) == 0 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return 0
"""

FIELDS = ("home", "seen", "polling", "waiting", "inflight", "expect", "seq")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entry(camera_id: str, values: list[bytes | None]) -> CameraEntry | None:
    if all(value is None for value in values):
        return None
    home, seen, polling, waiting, in_flight, expect, seq = values
    return CameraEntry(
        camera_id,
        (home or b"").decode(),
        None if seen is None else int(seen),
        polling == b"1",
        int(waiting or 0),
        int(in_flight or 0),
        expect == b"1",
        int(seq or 0),
    )


class RedisDirectory(Directory):
    def __init__(self, store: Store, keys: Keys, limits: StoreLimits) -> None:
        self._store = store
        self._keys = keys
        self._limits = limits
        self._answered_ms = _ms(limits.answered_retention_seconds)
        self._unanswered_ms = _ms(limits.unanswered_retention_seconds)
        self._claim = store.shared.register_script(CLAIM)
        self._write = store.shared.register_script(WRITE_STATUS)
        self._park = store.shared.register_script(PARK)
        self._count = store.shared.register_script(COUNT)
        self._forget = store.shared.register_script(FORGET)

    def _pipeline(self) -> Pipeline:
        return self._store.shared.pipeline(transaction=False)

    async def claim(self, camera_ids: Sequence[str], node: str, *, again: bool) -> list[Claim]:
        if not camera_ids:
            return []
        with self._store.guard():
            pipe = self._pipeline()
            seen = _now_ms()
            for camera_id in camera_ids:
                await self._claim(
                    keys=[
                        self._keys.camera(camera_id),
                        self._keys.cameras,
                        self._keys.expiry,
                        self._keys.parked(camera_id),
                    ],
                    args=[
                        node,
                        seen,
                        camera_id,
                        int(again),
                        self._limits.max_cameras,
                        self._answered_ms,
                        self._unanswered_ms,
                        FORGET_PER_CLAIM,
                    ],
                    client=pipe,
                )
            replies = await execute(pipe)
            return [
                Claim(old.decode(), parked, int(seq), refused == 1)
                for old, parked, seq, refused in replies
            ]

    async def write_status(self, node: str, writes: Sequence[StatusWrite]) -> list[Written]:
        if not writes:
            return []
        with self._store.guard():
            pipe = self._pipeline()
            now_ms = _now_ms()
            for write in writes:
                status = write.status
                seen = now_ms if status.last_seen is None else int(status.last_seen * 1000)
                await self._write(
                    keys=[
                        self._keys.camera(status.camera_id),
                        self._keys.cameras,
                        self._keys.expiry,
                    ],
                    args=[
                        node,
                        seen,
                        int(status.polling),
                        status.waiting,
                        status.in_flight,
                        int(write.expect),
                        int(write.answered),
                        status.camera_id,
                        self._answered_ms,
                        self._unanswered_ms,
                        write.seq,
                    ],
                    client=pipe,
                )
            replies = await execute(pipe)
            return [Written(home.decode(), int(seq)) for home, seq in replies]

    async def park(self, camera_id: str, node: str, work: bytes) -> bool:
        with self._store.guard():
            parked: int = await self._park(
                keys=[self._keys.camera(camera_id), self._keys.parked(camera_id)],
                args=[node, work, _ms(self._limits.message_ttl_seconds)],
            )
            return parked == 1

    async def read(self, camera_ids: Sequence[str]) -> list[CameraEntry | None]:
        if not camera_ids:
            return []
        with self._store.guard():
            pipe = self._pipeline()
            for camera_id in camera_ids:
                pipe.hmget(self._keys.camera(camera_id), list(FIELDS))
            replies = await execute(pipe)
            entries = [
                _entry(camera_id, values)
                for camera_id, values in zip(camera_ids, replies, strict=True)
            ]
            gone = [
                camera_id
                for camera_id, entry in zip(camera_ids, entries, strict=True)
                if entry is None
            ]
            if gone:
                # Their hashes expired: the index need not list them any longer.
                await self._forget(
                    keys=[
                        self._keys.cameras,
                        self._keys.expiry,
                        *(self._keys.camera(camera_id) for camera_id in gone),
                    ],
                    args=gone,
                )
            return entries

    async def page(self, prefix: str, after: str | None, count: int) -> list[str]:
        if count <= 0:
            return []
        # Bytes, not str: the upper bound is the byte 0xff (a str "\xff" would be sent
        # as UTF-8, which sorts below ids with other non-ASCII characters).
        low = (
            b"(" + after.encode()
            if after is not None and after >= prefix
            else b"[" + prefix.encode()
        )
        high = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
        with self._store.guard():
            raw = await self._store.shared.zrangebylex(
                self._keys.cameras, low, high, start=0, num=count
            )
        return [value.decode() if isinstance(value, bytes) else value for value in raw]

    async def count(self) -> int:
        with self._store.guard():
            live = await self._count(
                keys=[self._keys.cameras, self._keys.expiry], args=[FORGET_PER_COUNT]
            )
            return int(live)
