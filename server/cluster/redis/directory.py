"""The camera directory in Redis: homes, claims, status and parked work.

Each claim and status write is one Lua script (atomic per camera: its keys share
its shard's slot, see ``keys``), sent as one pipeline of ``EVALSHA`` for a list
of cameras. A claim's ``seq`` is the larger of the stored one plus one and
Redis' clock in microseconds, so a claim after the store lost its data still
orders after every claim before (Redis' clock moved on).

A camera's hash expires after the retention its answers earned (long once it
answered a command, short while it never did), so a flood of ids that never
answer leaves Redis on its own; while it says polling, a status refresh
interval longer (its home writes it at least that often, not at every poll).
The expiry is moved on in steps (when less than ``1 - 1/RETAIN_STEPS`` of the
retention is left, or more than all of it), not at every write. The shard's
``expiry`` sorted set mirrors those expiry times exactly (the hash expires at
its score): counting its live members is the shard's size, and its past ones
are forgotten from both sorted sets a bounded number at a time, inside
``claim`` and ``count``. Both sorted sets expire twice the longest retention
after the last time one of their ids moved on.

``MAX_CAMERAS`` without a key that every camera writes: each node keeps the
shards' live counts (read at most ``COUNT_REFRESH_SECONDS`` before, and updated
by each of its claims), and a claim of a new camera in shard ``k`` is refused
when shard ``k`` holds ``max_cameras`` minus the other shards' counts (and minus
the batch's earlier claims in other shards, taken as new). A refusal
is checked again against counts read then, so a camera is not refused on stale
counts; the limit may be passed by the new cameras other nodes admitted within
the last ``COUNT_REFRESH_SECONDS``, never by more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from ..backend import CameraEntry, Claim, Directory, StatusWrite, StoreLimits, Written
from .connection import Script, ScriptCall, Store
from .keys import SHARDS, Keys, shard_of

#: ids forgotten at most per claimed camera, and per shard and ``count``
FORGET_PER_CLAIM = 16
FORGET_PER_COUNT = 256
#: the shards' live counts a node uses to refuse new cameras are at most this old
COUNT_REFRESH_SECONDS = 1.0
#: ids a ``page`` asks each shard for at least
PAGE_SHARE_AT_LEAST = 8
#: a camera's expiry moves on when less than (1 - 1/RETAIN_STEPS) of its retention is left
RETAIN_STEPS = 10

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
-- The entry's expiry ('exp', mirrored in the expiry set) for its retention: the same
-- unless less than (1 - 1/steps) of the retention is left, or more than all of it.
-- A polling camera's home refreshes it at least every refresh ms: kept that much longer.
local function expiry_of(exp, now_ms, answered, polling, a_ttl, u_ttl, refresh, steps)
  local ttl = tonumber(u_ttl)
  if answered == '1' then ttl = tonumber(a_ttl) end
  if polling == '1' then ttl = ttl + tonumber(refresh) end
  exp = tonumber(exp or '0') or 0
  local left = exp - now_ms
  if left >= ttl - ttl / tonumber(steps) and left <= ttl then return nil end
  return now_ms + ttl, ttl
end
-- Writes the entry's fields; with a new expiry (exp, its ttl), the entry expires then,
-- and so does its place in the shard's index.
local function store(cam, cams, expiry, id, fields, exp, ttl)
  if exp then
    table.insert(fields, 'exp')
    table.insert(fields, int(exp))
  end
  redis.call('HSET', cam, unpack(fields))
  if not exp then return end
  redis.call('PEXPIREAT', cam, int(exp))
  if redis.call('ZADD', expiry, int(exp), id) == 1 then redis.call('ZADD', cams, 0, id) end
  if redis.call('PTTL', expiry) < ttl then
    redis.call('PEXPIRE', expiry, 2 * ttl)
    redis.call('PEXPIRE', cams, 2 * ttl)
  end
end
"""

#: KEYS: cam, cams, expiry, parked. ARGV: node, seen ms, id, again, room (a new camera is
#: refused when the shard holds this many), answered ttl ms, unanswered ttl ms, forget
#: limit, retain steps, refresh ms. Returns {old home, parked work, seq, refused, live in
#: the shard (-1: not counted)}.
CLAIM = Script(
    _COMMON
    + """
local now_ms, now_us = now()
local live = -1
local stored = redis.call('HMGET', KEYS[1], 'home', 'seq', 'answered', 'exp')
if not stored[2] then
  forget(KEYS[2], KEYS[3], now_ms, tonumber(ARGV[8]))
  live = redis.call('ZCOUNT', KEYS[3], int(now_ms), '+inf')
  if live >= tonumber(ARGV[5]) then
    return {'', '', '0', 1, live}
  end
  live = live + 1
end
local old = stored[1] or ''
local seq = int(math.max((tonumber(stored[2] or '0') or 0) + 1, now_us))
local exp, ttl = expiry_of(stored[4], now_ms, stored[3], '1', ARGV[6], ARGV[7], ARGV[10], ARGV[9])
local parked = ''
local fields = {'seq', seq, 'seen', ARGV[2], 'polling', '1'}
if not (ARGV[4] == '1' and old == ARGV[1]) then
  table.insert(fields, 'home')
  table.insert(fields, ARGV[1])
  if old == '' then
    parked = redis.call('GET', KEYS[4]) or ''
    if parked ~= '' then redis.call('DEL', KEYS[4]) end
  end
end
store(KEYS[1], KEYS[2], KEYS[3], ARGV[3], fields, exp, ttl)
return {old, parked, seq, 0, live}
"""
)

#: KEYS: cam, cams, expiry. ARGV: node, seen ms, polling, waiting, inflight, expect,
#: answered, id, answered ttl ms, unanswered ttl ms, the writer's claim seq, retain steps,
#: refresh ms, the writer's clock ms. Returns {home, seq}. Nobody home but a claim later
#: than the writer's (another node claimed and parked it since): nothing is written.
#: ``answered`` sticks once set. Redis' clock is read only to number a new claim.
WRITE_STATUS = Script(
    _COMMON
    + """
local stored = redis.call('HMGET', KEYS[1], 'home', 'seq', 'answered', 'exp')
local home = stored[1] or ''
local seq = stored[2] or '0'
if home ~= '' and home ~= ARGV[1] then return {home, seq} end
if home == '' and (tonumber(seq) or 0) > tonumber(ARGV[11]) then return {'', seq} end
if home == '' then
  local _, now_us = now()
  seq = int(math.max((tonumber(seq) or 0) + 1, now_us))
end
local now_ms = tonumber(ARGV[14])
local answered = '0'
if ARGV[7] == '1' or stored[3] == '1' then answered = '1' end
local exp, ttl = expiry_of(stored[4], now_ms, answered, ARGV[3], ARGV[9], ARGV[10], ARGV[13],
                           ARGV[12])
local fields = {'home', ARGV[1], 'seen', ARGV[2], 'polling', ARGV[3], 'waiting', ARGV[4],
                'inflight', ARGV[5], 'expect', ARGV[6], 'answered', answered, 'seq', seq}
store(KEYS[1], KEYS[2], KEYS[3], ARGV[8], fields, exp, ttl)
return {ARGV[1], seq}
"""
)

#: KEYS: cam, parked. ARGV: node, work, ttl ms. Returns 1 if parked.
PARK = Script(
    """
local home = redis.call('HGET', KEYS[1], 'home')
if home ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'home', '', 'polling', '0')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""
)

#: KEYS: cams, expiry (of one shard). ARGV: forget limit. Returns the shard's live cameras.
COUNT = Script(
    _COMMON
    + """
local now_ms = now()
forget(KEYS[1], KEYS[2], now_ms, tonumber(ARGV[1]))
return redis.call('ZCOUNT', KEYS[2], int(now_ms), '+inf')
"""
)

#: KEYS: cams, expiry (of one shard), then the hash of each id in ARGV. Drops the ids whose
#: hash is gone from both sorted sets (atomically: one claimed meanwhile stays listed).
FORGET = Script(
    """
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 2]) == 0 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return 0
"""
)

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
        self._refresh_ms = _ms(limits.status_refresh_seconds)
        #: each shard's live cameras as last read or claimed here, and when read
        self._live = [0] * SHARDS
        self._live_read_at = -math.inf

    async def claim(self, camera_ids: Sequence[str], node: str, *, again: bool) -> list[Claim]:
        if not camera_ids:
            return []
        with self._store.guard():
            fresh = False
            if not again and time.monotonic() - self._live_read_at > COUNT_REFRESH_SECONDS:
                await self._read_counts()
                fresh = True
            claims = await self._claim(camera_ids, node, again)
            refused = [index for index, claim in enumerate(claims) if claim.refused]
            if refused:
                # Refused on counts read a while ago, or counting the batch's earlier
                # claims as new: try those again, on counts read now.
                if not fresh:
                    await self._read_counts()
                retried = await self._claim([camera_ids[i] for i in refused], node, again)
                for index, claim in zip(refused, retried, strict=True):
                    claims[index] = claim
            return claims

    async def _claim(self, camera_ids: Sequence[str], node: str, again: bool) -> list[Claim]:
        seen = _now_ms()
        total = sum(self._live)
        calls = []
        shards = [shard_of(camera_id) for camera_id in camera_ids]
        in_shard = [0] * SHARDS
        for index, (camera_id, shard) in enumerate(zip(camera_ids, shards, strict=True)):
            # The batch's earlier claims in other shards count as new cameras (those in
            # this shard are counted by the script: they run first, on the same primary).
            earlier_elsewhere = index - in_shard[shard]
            in_shard[shard] += 1
            room = self._limits.max_cameras - (total - self._live[shard]) - earlier_elsewhere
            calls.append(
                ScriptCall(
                    CLAIM,
                    [
                        self._keys.camera(camera_id),
                        self._keys.cameras(shard),
                        self._keys.expiry(shard),
                        self._keys.parked(camera_id),
                    ],
                    [
                        node,
                        seen,
                        camera_id,
                        int(again),
                        room,
                        self._answered_ms,
                        self._unanswered_ms,
                        FORGET_PER_CLAIM,
                        RETAIN_STEPS,
                        self._refresh_ms,
                    ],
                )
            )
        replies = await self._store.scripts(calls)
        claims = []
        for shard, (old, parked, seq, refused, live) in zip(shards, replies, strict=True):
            if live >= 0:
                self._live[shard] = live
            claims.append(Claim(old.decode(), parked, int(seq), refused == 1))
        return claims

    async def _read_counts(self) -> list[int]:
        calls = [
            ScriptCall(COUNT, [self._keys.cameras(k), self._keys.expiry(k)], [FORGET_PER_COUNT])
            for k in range(SHARDS)
        ]
        self._live = [int(live) for live in await self._store.scripts(calls)]
        self._live_read_at = time.monotonic()
        return self._live

    async def write_status(self, node: str, writes: Sequence[StatusWrite]) -> list[Written]:
        if not writes:
            return []
        with self._store.guard():
            now_ms = _now_ms()
            calls = []
            for write in writes:
                status = write.status
                seen = now_ms if status.last_seen is None else int(status.last_seen * 1000)
                shard = shard_of(status.camera_id)
                calls.append(
                    ScriptCall(
                        WRITE_STATUS,
                        [
                            self._keys.camera(status.camera_id),
                            self._keys.cameras(shard),
                            self._keys.expiry(shard),
                        ],
                        [
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
                            RETAIN_STEPS,
                            self._refresh_ms,
                            now_ms,
                        ],
                    )
                )
            replies = await self._store.scripts(calls)
            return [Written(home.decode(), int(seq)) for home, seq in replies]

    async def park(self, camera_id: str, node: str, work: bytes) -> bool:
        with self._store.guard():
            call = ScriptCall(
                PARK,
                [self._keys.camera(camera_id), self._keys.parked(camera_id)],
                [node, work, _ms(self._limits.message_ttl_seconds)],
            )
            (parked,) = await self._store.scripts([call])
            return int(parked) == 1

    async def read(self, camera_ids: Sequence[str]) -> list[CameraEntry | None]:
        if not camera_ids:
            return []
        with self._store.guard():
            pipe = self._store.pipeline()
            for camera_id in camera_ids:
                pipe.hmget(self._keys.camera(camera_id), list(FIELDS))
            replies = await self._store.run(pipe)
            entries = [
                _entry(camera_id, values)
                for camera_id, values in zip(camera_ids, replies, strict=True)
            ]
            gone: dict[int, list[str]] = {}
            for camera_id, entry in zip(camera_ids, entries, strict=True):
                if entry is None:
                    gone.setdefault(shard_of(camera_id), []).append(camera_id)
            if gone:
                # Their hashes expired: the index need not list them any longer.
                await self._store.scripts(
                    [
                        ScriptCall(
                            FORGET,
                            [
                                self._keys.cameras(shard),
                                self._keys.expiry(shard),
                                *(self._keys.camera(camera_id) for camera_id in ids),
                            ],
                            ids,
                        )
                        for shard, ids in gone.items()
                    ]
                )
            return entries

    async def page(self, prefix: str, after: str | None, count: int) -> list[str]:
        """The shards' pages merged: each shard is asked for a share of ``count``; the
        ids up to the lowest last id of a shard that filled its share are all known (a
        shard that did not is exhausted), so those are taken and the rest asked again
        after them."""
        if count <= 0:
            return []
        # Bytes, not str: the upper bound is the byte 0xff (a str "\xff" would be sent
        # as UTF-8, which sorts below ids with other non-ASCII characters).
        high = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
        cursor = after if after is not None and after >= prefix else None
        found: list[str] = []
        share = max(PAGE_SHARE_AT_LEAST, -(-2 * count // SHARDS))
        with self._store.guard():
            while len(found) < count:
                low = b"(" + cursor.encode() if cursor is not None else b"[" + prefix.encode()
                pipe = self._store.pipeline()
                for shard in range(SHARDS):
                    pipe.zrangebylex(self._keys.cameras(shard), low, high, start=0, num=share)
                pages: list[list[bytes]] = await self._store.run(pipe)
                full = [page[-1] for page in pages if len(page) >= share]
                bound = min(full) if full else None
                merged = sorted(
                    value for page in pages for value in page if bound is None or value <= bound
                )
                found.extend(value.decode() for value in merged)
                if bound is None:
                    break
                cursor = bound.decode()
                share = min(max(share * 2, -(-2 * (count - len(found)) // SHARDS)), count)
        return found[:count]

    async def count(self) -> int:
        with self._store.guard():
            return sum(await self._read_counts())
