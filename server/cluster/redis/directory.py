"""The camera directory in Redis: homes, claims, status and parked work.

Each claim and status write is one Lua script (atomic per camera: its entry and
indexes share its shard's slot, see ``keys``), sent as one pipeline of ``EVALSHA``
for a list of cameras. A claim's ``seq`` is the larger of the stored one plus one
and Redis' clock in microseconds, so a claim after the store lost its data still
orders after every claim before (Redis' clock moved on).

A camera's entry is one field of its shard's ``entries`` hash, its value the
fields joined by ``|`` (``unpack_entry``, with the home last: an incarnation holds
no ``|``), the epoch ms at which it expires among them; a value that does not
parse counts as expired. An entry
expires after the retention its answers earned (long once it answered a command,
short while it never did), so a flood of ids that never answer leaves Redis on its
own; while it says polling, a status refresh interval longer (its home writes it at
least that often, not at every poll). The expiry is moved on in steps (when less
than ``1 - 1/RETAIN_STEPS`` of the retention is left, or more than all of it), not
at every write. An expired entry reads as gone at once; it is deleted by one of two
ways:

- the shard's ``due`` sorted set holds the ids whose poll is not held, scored by
  their expiry: the past ones are forgotten a bounded number at a time, inside
  ``claim``, ``count`` and ``sweep`` (an id that never answers is gone one short
  retention after its poll ended), each checked against its entry first (a
  member the entry does not back only leaves the set);
- an entry whose poll is held is in no other index (an idle camera's entry is its
  hash field and its place in ``ids``, nothing more): its home refreshes it, and
  only a home that died leaves one to expire. ``sweep`` scans each shard's hash
  from where the last scan stopped (``HSCAN``), a share of it per call that the
  nodes set so that each shard is scanned through about once per status refresh
  interval; a claim that finds its shard full scans a batch more first, and
  ``count`` scans a small shard through (each at most once a second per shard and
  node). Where a scan stopped is kept in the shard's ``sweep`` key, and by the node
  as well (at ``maxmemory`` Redis refuses to keep it).

Every decision about expiry is taken by Redis' clock (``TIME``), in the scripts; an
entry's places in the indexes are written again whenever its expiry moves on.

The shard's keys expire twice the longest retention after the last time one of
their ids moved on.

``MAX_CAMERAS`` without a key that every camera writes: each node keeps the
shards' counts (read at most ``COUNT_REFRESH_SECONDS`` before, and updated by each
of its claims), and a claim of a new camera in shard ``k`` is refused when shard
``k`` holds ``max_cameras`` minus the other shards' counts (and minus the batch's
earlier claims in other shards, taken as new). A refusal is checked again against
counts read then, so a camera is not refused on stale counts; the limit may be
passed by the new cameras other nodes admitted within the last
``COUNT_REFRESH_SECONDS``, never by more.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from ..backend import CameraEntry, Claim, Directory, StatusWrite, StoreLimits, Written
from .connection import Script, ScriptCall, Store
from .keys import SHARDS, Keys, shard_of

#: ids forgotten at most per claimed camera, and per shard and ``count`` or ``sweep``
FORGET_PER_CLAIM = 16
FORGET_PER_COUNT = 256
#: entries a claim that finds its shard full, or a ``count``, scans for expired ones
SCAN_BATCH = 256
#: ``count`` scans a shard of at most this many entries through
SCAN_THROUGH_UP_TO = 1024
#: a ``sweep`` scans at most this many entries of a shard (a script blocks Redis)
SCAN_PER_SWEEP_AT_MOST = 10_000
#: a node scans a shard when full or counting at most this often (or four times per
#: short retention, if shorter): a flood of new ids at the limit costs bounded scans
SCAN_EVERY_SECONDS = 1.0
#: the shards' live counts a node uses to refuse new cameras are at most this old
COUNT_REFRESH_SECONDS = 1.0
#: entries an ``end_polls`` script scans at a time (a script blocks Redis)
END_POLLS_BATCH = 1_000
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
-- An entry: seq|seen|<polling><expect><answered>|waiting|inflight|exp|home
local function unpack_entry(v)
  if not v then return nil end
  local seq, seen, polling, expect, answered, waiting, inflight, exp, home = string.match(
    v, '^(%d*)|(%d*)|(%d)(%d)(%d)|(%d*)|(%d*)|(%d*)|(.*)$')
  return {seq = seq, seen = seen, polling = polling, expect = expect, answered = answered,
          waiting = waiting, inflight = inflight, exp = exp, home = home}
end
local function pack_entry(e)
  return table.concat({e.seq, e.seen, e.polling .. e.expect .. e.answered, e.waiting,
                       e.inflight, e.exp, e.home}, '|')
end
-- An entry that does not parse counts as expired.
local function expired(e, now_ms) return (tonumber(e.exp) or 0) <= now_ms end
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, 2 * ttl) end
end
local function drop(entries, ids, due, id)
  redis.call('HDEL', entries, id)
  redis.call('ZREM', ids, id)
  redis.call('ZREM', due, id)
end
-- Forgets up to limit ids of the due set whose time passed: each one's entry if it
-- expired (a member the entry does not back, e.g. its poll is held again, only leaves
-- the set).
local function forget(entries, ids, due, now_ms, limit)
  local past = redis.call('ZRANGEBYSCORE', due, '-inf', int(now_ms), 'LIMIT', 0, limit)
  if #past == 0 then return end
  local values = redis.call('HMGET', entries, unpack(past))
  for i, id in ipairs(past) do
    local e = unpack_entry(values[i])
    if not e or expired(e, now_ms) then
      drop(entries, ids, due, id)
    elseif e.polling == '1' then
      redis.call('ZREM', due, id)
    else
      redis.call('ZADD', due, e.exp, id)
    end
  end
end
-- Scans about count entries for expired ones (held polls of a home that died), from
-- where the last scan of the shard stopped (or the caller's own position, if the store
-- refused to keep one), or the whole hash from its start. Returns the position reached.
local function scan(entries, ids, due, at, now_ms, count, through, from, at_ttl)
  local cursor = '0'
  if not through then cursor = redis.call('GET', at) or from end
  local scanned = 0
  repeat
    local reply = redis.call('HSCAN', entries, cursor, 'COUNT', math.min(count, 1000))
    cursor = reply[1]
    local items = reply[2]
    for i = 1, #items, 2 do
      local exp = tonumber(string.match(items[i + 1], '|(%d*)|[^|]*$')) or 0
      if exp <= now_ms then drop(entries, ids, due, items[i]) end
    end
    scanned = scanned + #items / 2
  until cursor == '0' or (scanned >= count and not through)
  if through then return '0' end
  if cursor == '0' then
    redis.call('DEL', at)
  else
    local kept = redis.pcall('SET', at, cursor, 'PX', at_ttl)
    if type(kept) == 'table' and kept.err then redis.call('DEL', at) end
  end
  return cursor
end
-- The entry's expiry (its 'exp') for its retention: the same unless less than
-- (1 - 1/steps) of the retention is left, or more than all of it. A polling camera's
-- home refreshes it at least every refresh ms: kept that much longer.
local function expiry_of(exp, now_ms, answered, polling, a_ttl, u_ttl, refresh, steps)
  local ttl = tonumber(u_ttl)
  if answered == '1' then ttl = tonumber(a_ttl) end
  if polling == '1' then ttl = ttl + tonumber(refresh) end
  exp = tonumber(exp or '0') or 0
  local left = exp - now_ms
  if left >= ttl - ttl / tonumber(steps) and left <= ttl then return nil end
  return now_ms + ttl, ttl
end
-- Writes entry e of id; with a new expiry (exp, its ttl), it expires then, and its
-- places in the indexes are written again. listed: its poll was not held (it is in
-- the due set); new: it was not in the shard.
local function store(entries, ids, due, id, e, new, listed, exp, ttl, now_ms)
  if exp then e.exp = int(exp) end
  redis.call('HSET', entries, id, pack_entry(e))
  if new or exp then redis.call('ZADD', ids, 0, id) end
  if e.polling == '1' then
    if listed or exp then redis.call('ZREM', due, id) end
  elseif exp or not listed then
    redis.call('ZADD', due, e.exp, id)
    keep(due, ttl or math.max(1, tonumber(e.exp) - now_ms))
  end
  if exp then
    keep(entries, ttl)
    keep(ids, ttl)
  end
end
-- The stored entry of id, or nil (an expired one is dropped first).
local function stored_entry(entries, ids, due, id, now_ms)
  local e = unpack_entry(redis.call('HGET', entries, id))
  if e and expired(e, now_ms) then
    drop(entries, ids, due, id)
    return nil
  end
  return e
end
"""

#: KEYS: entries, ids, due, parked, sweep. ARGV: node, seen ms, id, again, room (a new
#: camera is refused when the shard holds this many), answered ttl ms, unanswered ttl
#: ms, forget limit, retain steps, refresh ms, entries to scan when full (0: none),
#: sweep position ttl ms. Returns {old home, parked work, seq, refused, entries in the
#: shard (-1: not counted), scanned (1: the shard was full, and scanned)}.
CLAIM = Script(
    _COMMON
    + """
local now_ms, now_us = now()
local live = -1
local scanned = 0
local stored = stored_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[3], now_ms)
if not stored then
  forget(KEYS[1], KEYS[2], KEYS[3], now_ms, tonumber(ARGV[8]))
  live = redis.call('HLEN', KEYS[1])
  if live >= tonumber(ARGV[5]) and tonumber(ARGV[11]) > 0 then
    scan(KEYS[1], KEYS[2], KEYS[3], KEYS[5], now_ms, tonumber(ARGV[11]), false, '0', ARGV[12])
    scanned = 1
    live = redis.call('HLEN', KEYS[1])
  end
  if live >= tonumber(ARGV[5]) then
    return {'', '', '0', 1, live, scanned}
  end
  live = live + 1
end
-- waiting and inflight stay empty until the home writes its first status
local e = stored or {seq = '0', waiting = '', inflight = '', expect = '0', answered = '0',
                     home = '', exp = '0'}
local old = e.home
local listed = stored ~= nil and stored.polling == '0'
e.seq = int(math.max((tonumber(e.seq) or 0) + 1, now_us))
e.seen = ARGV[2]
e.polling = '1'
local exp, ttl = expiry_of(e.exp, now_ms, e.answered, '1', ARGV[6], ARGV[7], ARGV[10], ARGV[9])
local parked = ''
if not (ARGV[4] == '1' and old == ARGV[1]) then
  e.home = ARGV[1]
  if old == '' then
    parked = redis.call('GET', KEYS[4]) or ''
    if parked ~= '' then redis.call('DEL', KEYS[4]) end
  end
end
store(KEYS[1], KEYS[2], KEYS[3], ARGV[3], e, stored == nil, listed, exp, ttl, now_ms)
return {old, parked, e.seq, 0, live, scanned}
"""
)

#: KEYS: entries, ids, due. ARGV: node, seen ms, polling, waiting, inflight, expect,
#: answered, id, answered ttl ms, unanswered ttl ms, the writer's claim seq, retain steps,
#: refresh ms. Returns {home, seq}. Nobody home but a claim later than the writer's
#: (another node claimed and parked it since): nothing is written. ``answered`` sticks
#: once set. Expiry is by Redis' clock, as in every script.
WRITE_STATUS = Script(
    _COMMON
    + """
local now_ms, now_us = now()
local stored = stored_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[8], now_ms)
local home = stored and stored.home or ''
local seq = stored and stored.seq or '0'
if home ~= '' and home ~= ARGV[1] then return {home, seq} end
if home == '' and (tonumber(seq) or 0) > tonumber(ARGV[11]) then return {'', seq} end
if home == '' then seq = int(math.max((tonumber(seq) or 0) + 1, now_us)) end
local answered = '0'
if ARGV[7] == '1' or (stored and stored.answered == '1') then answered = '1' end
local exp, ttl = expiry_of(stored and stored.exp, now_ms, answered, ARGV[3], ARGV[9], ARGV[10],
                           ARGV[13], ARGV[12])
local e = {seq = seq, seen = ARGV[2], polling = ARGV[3], waiting = ARGV[4], inflight = ARGV[5],
           expect = ARGV[6], answered = answered, exp = stored and stored.exp or '0',
           home = ARGV[1]}
store(KEYS[1], KEYS[2], KEYS[3], ARGV[8], e, stored == nil, stored ~= nil and stored.polling == '0',
      exp, ttl, now_ms)
return {ARGV[1], seq}
"""
)

#: KEYS: entries, ids, due, parked. ARGV: node, work, ttl ms, id. Returns 1 if parked.
PARK = Script(
    _COMMON
    + """
local now_ms = now()
local e = stored_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[4], now_ms)
if not e or e.home ~= ARGV[1] then return 0 end
local listed = e.polling == '0'
e.home = ''
e.polling = '0'
store(KEYS[1], KEYS[2], KEYS[3], ARGV[4], e, false, listed, nil, nil, now_ms)
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
return 1
"""
)

#: KEYS: entries, ids, due, parked. ARGV: node, id. Returns {1, parked work, seq} when
#: the camera had no home (its home parked its work) and is node's now, else {0, the
#: home it has ('' if its entry is gone), seq}.
ADOPT = Script(
    _COMMON
    + """
local now_ms, now_us = now()
local e = stored_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[2], now_ms)
if not e then return {0, '', '0'} end
if e.home ~= '' then return {0, e.home, e.seq} end
e.seq = int(math.max((tonumber(e.seq) or 0) + 1, now_us))
e.home = ARGV[1]
store(KEYS[1], KEYS[2], KEYS[3], ARGV[2], e, false, e.polling == '0', nil, nil, now_ms)
local parked = redis.call('GET', KEYS[4]) or ''
if parked ~= '' then redis.call('DEL', KEYS[4]) end
return {1, parked, e.seq}
"""
)

#: KEYS: entries, ids, due (of one shard). ARGV: forget limit, scan a shard through up to
#: this size (a bigger one is left to ``SWEEP``), 1 to scan at all. Returns the shard's
#: entries.
COUNT = Script(
    _COMMON
    + """
local now_ms = now()
forget(KEYS[1], KEYS[2], KEYS[3], now_ms, tonumber(ARGV[1]))
if ARGV[3] == '1' and redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[2]) then
  scan(KEYS[1], KEYS[2], KEYS[3], '', now_ms, 1000, true, '0', 0)
end
return redis.call('HLEN', KEYS[1])
"""
)

#: KEYS: entries, ids, due, sweep (of one shard). ARGV: forget limit, the share of the
#: shard to scan in millionths, the most entries to scan, the caller's own position,
#: sweep position ttl ms. Returns the position reached.
SWEEP = Script(
    _COMMON
    + """
local now_ms = now()
forget(KEYS[1], KEYS[2], KEYS[3], now_ms, tonumber(ARGV[1]))
local size = redis.call('HLEN', KEYS[1])
local count = math.min(math.ceil(size * tonumber(ARGV[2]) / 1000000), tonumber(ARGV[3]))
if count <= 0 then return ARGV[4] end
return scan(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_ms, count, false, ARGV[4], ARGV[5])
"""
)

#: KEYS: entries, ids, due (of one shard). ARGV: a home that died, its last beat (epoch
#: ms), the scan's cursor, entries to scan, answered ttl ms, unanswered ttl ms. Each
#: entry of that home that says polling says its poll ended then, and expires its
#: retention after that (at once if that is past). Returns the cursor reached ('0': done).
END_POLLS = Script(
    _COMMON
    + """
local now_ms = now()
local reply = redis.call('HSCAN', KEYS[1], ARGV[3], 'COUNT', tonumber(ARGV[4]))
local items = reply[2]
for i = 1, #items, 2 do
  local e = unpack_entry(items[i + 1])
  if e and e.home == ARGV[1] and e.polling == '1' then
    local seen = math.max(tonumber(e.seen) or 0, tonumber(ARGV[2]))
    local ttl = tonumber(ARGV[6])
    if e.answered == '1' then ttl = tonumber(ARGV[5]) end
    e.seen = int(seen)
    e.polling = '0'
    if seen + ttl <= now_ms then
      drop(KEYS[1], KEYS[2], KEYS[3], items[i])
    else
      store(KEYS[1], KEYS[2], KEYS[3], items[i], e, false, false, seen + ttl, ttl, now_ms)
    end
  end
end
return reply[1]
"""
)

#: KEYS: entries, ids, due (of one shard). ARGV: ids. Drops those whose entry is gone or
#: expired from the shard (atomically: one claimed meanwhile stays).
FORGET = Script(
    _COMMON
    + """
local now_ms = now()
for _, id in ipairs(ARGV) do
  local e = unpack_entry(redis.call('HGET', KEYS[1], id))
  if not e or expired(e, now_ms) then drop(KEYS[1], KEYS[2], KEYS[3], id) end
end
return 0
"""
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


def entry_fields(value: bytes) -> dict[str, str]:
    """A stored entry's fields by name, as strings (for tests and tools)."""
    seq, seen, flags, waiting, in_flight, expires, home = value.decode().split("|", 6)
    return {
        "seq": seq,
        "seen": seen,
        "polling": flags[0],
        "expect": flags[1],
        "answered": flags[2],
        "waiting": waiting,
        "inflight": in_flight,
        "exp": expires,
        "home": home,
    }


def unpack_entry(camera_id: str, value: bytes) -> tuple[CameraEntry, bool, int]:
    """A stored entry: the camera's entry, whether it answered, when it expires (ms)."""
    seq, seen, flags, waiting, in_flight, expires, home = value.decode().split("|", 6)
    entry = CameraEntry(
        camera_id,
        home,
        int(seen) if seen else None,
        flags[0] == "1",
        int(waiting or 0),
        int(in_flight or 0),
        flags[1] == "1",
        int(seq or 0),
    )
    return entry, flags[2] == "1", int(expires or 0)


def _live_entry(camera_id: str, value: bytes | None, now_ms: int) -> CameraEntry | None:
    if value is None:
        return None
    try:
        entry, _answered, expires = unpack_entry(camera_id, value)
    except (ValueError, IndexError):  # not an entry of this layout: the scripts drop it too
        return None
    return entry if expires > now_ms else None


class RedisDirectory(Directory):
    def __init__(self, store: Store, keys: Keys, limits: StoreLimits) -> None:
        self._store = store
        self._keys = keys
        self._limits = limits
        self._answered_ms = _ms(limits.answered_retention_seconds)
        self._unanswered_ms = _ms(limits.unanswered_retention_seconds)
        self._refresh_ms = _ms(limits.status_refresh_seconds)
        #: how long a shard's sweep position is kept (past it, a scan starts over)
        self._position_ms = 2 * (self._answered_ms + self._refresh_ms)
        #: each shard's live cameras as last read or claimed here, and when read
        self._live = [0] * SHARDS
        self._live_read_at = -math.inf
        self._scan_every = min(SCAN_EVERY_SECONDS, limits.unanswered_retention_seconds / 4)
        #: when this node last let a script scan each shard (monotonic)
        self._scanned_at = [-math.inf] * SHARDS
        #: where this node's last sweep of each shard stopped (used when the store could
        #: not keep the shard's own position: at ``maxmemory``)
        self._positions = ["0"] * SHARDS

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
        may_scan = self._may_scan()
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
                        self._keys.entries(shard),
                        self._keys.ids(shard),
                        self._keys.due(shard),
                        self._keys.parked(camera_id),
                        self._keys.sweep(shard),
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
                        SCAN_BATCH if may_scan[shard] else 0,
                        self._position_ms,
                    ],
                )
            )
            may_scan[shard] = False  # one claim per shard and batch scans, at most
        replies = await self._store.scripts(calls)
        claims = []
        now = time.monotonic()
        for shard, (old, parked, seq, refused, live, scanned) in zip(shards, replies, strict=True):
            if live >= 0:
                self._live[shard] = live
            if scanned == 1:
                self._scanned_at[shard] = now
            claims.append(Claim(old.decode(), parked, int(seq), refused == 1))
        return claims

    def _may_scan(self) -> list[bool]:
        """Which shards a script of this node may scan for expired entries now."""
        now = time.monotonic()
        return [now - at >= self._scan_every for at in self._scanned_at]

    def _parking_keys(self, camera_id: str) -> list[str]:
        """The camera's shard's entries, ids and due set, and its parked work."""
        shard = shard_of(camera_id)
        keys = self._keys
        return [keys.entries(shard), keys.ids(shard), keys.due(shard), keys.parked(camera_id)]

    def _shard_keys(self, shard: int) -> list[str]:
        keys = self._keys
        return [keys.entries(shard), keys.ids(shard), keys.due(shard), keys.sweep(shard)]

    async def _read_counts(self) -> list[int]:
        may_scan = self._may_scan()
        calls = [
            ScriptCall(
                COUNT,
                self._shard_keys(shard)[:3],
                [FORGET_PER_COUNT, SCAN_THROUGH_UP_TO, int(may_scan[shard])],
            )
            for shard in range(SHARDS)
        ]
        self._live = [int(live) for live in await self._store.scripts(calls)]
        self._live_read_at = now = time.monotonic()
        self._scanned_at = [
            now if scanned else at for scanned, at in zip(may_scan, self._scanned_at, strict=True)
        ]
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
                            self._keys.entries(shard),
                            self._keys.ids(shard),
                            self._keys.due(shard),
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
                        ],
                    )
                )
            replies = await self._store.scripts(calls)
            return [Written(home.decode(), int(seq)) for home, seq in replies]

    async def park(self, camera_id: str, node: str, work: bytes) -> bool:
        with self._store.guard():
            call = ScriptCall(
                PARK,
                self._parking_keys(camera_id),
                [node, work, _ms(self._limits.message_ttl_seconds), camera_id],
            )
            (parked,) = await self._store.scripts([call])
            return int(parked) == 1

    async def adopt(self, camera_id: str, node: str) -> Claim:
        with self._store.guard():
            call = ScriptCall(
                ADOPT,
                self._parking_keys(camera_id),
                [node, camera_id],
            )
            ((adopted, found, seq),) = await self._store.scripts([call])
        if int(adopted) == 1:
            return Claim("", found, int(seq))
        return Claim(found.decode(), b"", int(seq), refused=True)

    async def read(self, camera_ids: Sequence[str]) -> list[CameraEntry | None]:
        if not camera_ids:
            return []
        by_shard: dict[int, list[str]] = {}
        for camera_id in camera_ids:
            by_shard.setdefault(shard_of(camera_id), []).append(camera_id)
        with self._store.guard():
            pipe = self._store.pipeline()
            for shard, ids in by_shard.items():
                pipe.hmget(self._keys.entries(shard), ids)
            replies = await self._store.run(pipe)
            now_ms = _now_ms()
            found: dict[str, CameraEntry | None] = {}
            gone: dict[int, list[str]] = {}
            for (shard, ids), values in zip(by_shard.items(), replies, strict=True):
                for camera_id, value in zip(ids, values, strict=True):
                    entry = found[camera_id] = _live_entry(camera_id, value, now_ms)
                    if entry is None:
                        gone.setdefault(shard, []).append(camera_id)
            if gone:
                # Gone or expired: the shard need not list them any longer.
                await self._store.scripts(
                    [
                        ScriptCall(
                            FORGET,
                            [
                                self._keys.entries(shard),
                                self._keys.ids(shard),
                                self._keys.due(shard),
                            ],
                            ids,
                        )
                        for shard, ids in gone.items()
                    ]
                )
            return [found[camera_id] for camera_id in camera_ids]

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
                    pipe.zrangebylex(self._keys.ids(shard), low, high, start=0, num=share)
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

    async def end_polls(self, home: str, seen: float) -> None:
        seen_ms = int(seen * 1000)
        cursors = dict.fromkeys(range(SHARDS), "0")
        with self._store.guard():
            while cursors:
                calls = [
                    ScriptCall(
                        END_POLLS,
                        self._shard_keys(shard)[:3],
                        [
                            home,
                            seen_ms,
                            cursor,
                            END_POLLS_BATCH,
                            self._answered_ms,
                            self._unanswered_ms,
                        ],
                    )
                    for shard, cursor in cursors.items()
                ]
                reached = await self._store.scripts(calls)
                cursors = {
                    shard: cursor
                    for shard, position in zip(cursors, reached, strict=True)
                    if (cursor := position.decode()) != "0"
                }

    async def sweep(self, share: float) -> None:
        millionths = math.ceil(min(max(share, 0.0), 1.0) * 1_000_000)
        with self._store.guard():
            reached = await self._store.scripts(
                [
                    ScriptCall(
                        SWEEP,
                        self._shard_keys(shard),
                        [
                            FORGET_PER_COUNT,
                            millionths,
                            SCAN_PER_SWEEP_AT_MOST,
                            self._positions[shard],
                            self._position_ms,
                        ],
                    )
                    for shard in range(SHARDS)
                ]
            )
        self._positions = [position.decode() for position in reached]
