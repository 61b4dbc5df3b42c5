"""``server.cluster.redis`` against a real redis-server: each method's exact effect in Redis.

Every test gets its own prefix on the shared test server, and a raw client to
look at (or break) what the backend wrote. Waits poll a condition; nothing
asserts a timing with a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ResponseError

from server.cluster.backend import (
    BackendError,
    Claim,
    Envelope,
    InlineBody,
    StatusWrite,
    StoreLimits,
    Written,
)
from server.cluster.redis import RedisBackend
from server.cluster.redis.connection import MESSAGE_CHARS, execute, one_line
from server.cluster.redis.directory import entry_fields
from server.cluster.redis.keys import SHARDS, Keys, shard_of
from server.cluster.redis.transport import INLINE_BODY_BYTES, StoredBody
from server.relay import CameraStatus
from tools.redis_server import RedisServer

pytestmark = pytest.mark.redis

LIMITS = StoreLimits(
    node_timeout_seconds=5.0,
    max_cameras=1000,
    answered_retention_seconds=600.0,
    unanswered_retention_seconds=60.0,
    message_ttl_seconds=30.0,
    status_refresh_seconds=0.2,
)
MakeBackend = Callable[..., RedisBackend]


async def indexed(raw: Redis, shard_key: Callable[[int], str]) -> list[bytes]:
    """The ids the fleet index's sorted sets hold over all shards, in order."""
    found: list[bytes] = []
    for shard in range(SHARDS):
        found.extend(await raw.zrange(shard_key(shard), 0, -1))
    return sorted(found)


async def stored(raw: Redis, prefix: str, camera_id: str) -> dict[str, str] | None:
    """The camera's entry as stored: its fields by name (``None``: no entry)."""
    value = await raw.hget(Keys(prefix).entries(shard_of(camera_id)), camera_id)
    return None if value is None else entry_fields(value)


async def keep_shard_keys(raw: Redis, prefix: str) -> None:
    """Take the TTL off every shard's keys, as the writes of a fleet's other cameras keep
    them alive. A shard's keys live twice its entries' retention past its last write: on
    a slow machine they could vanish whole before a test's scan or sweep, and the entries
    with them, which the test could not tell from the scan it means to check."""
    keys = Keys(prefix)
    persist = raw.pipeline(transaction=False)
    for shard in range(SHARDS):
        for key in (keys.entries(shard), keys.ids(shard), keys.due(shard)):
            persist.persist(key)
    await persist.execute()


async def expires_in_ms(raw: Redis, prefix: str, camera_id: str) -> int:
    """How long until the camera's stored entry expires, by Redis' clock."""
    fields = await stored(raw, prefix, camera_id)
    assert fields is not None
    return int(fields["exp"]) - await redis_time_us(raw) // 1000


def kind_of(key: str) -> str:
    """``parked`` of ``{p:s:3}:parked:x``, ``inbox`` of ``{p:inbox:n}``, ``body`` of
    ``p:body:t``."""
    if not key.startswith("{"):
        return key.split(":")[1]
    tag, _, rest = key[1:].partition("}")
    return rest.removeprefix(":").split(":")[0] if rest else tag.split(":")[1]


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_backend(redis_server: RedisServer, prefix: str) -> AsyncIterator[MakeBackend]:
    """``RedisBackend.from_url`` for the test's server and prefix (``limits`` overridable)."""
    made: list[RedisBackend] = []

    def make(**limits: Any) -> RedisBackend:
        backend = RedisBackend.from_url(
            redis_server.url, prefix, dataclasses.replace(LIMITS, **limits)
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
def backend(make_backend: MakeBackend) -> RedisBackend:
    return make_backend()


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds (fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def redis_time_us(raw: Redis) -> int:
    seconds, micros = await raw.time()
    return seconds * 1_000_000 + micros


def status(camera_id: str, **fields: Any) -> CameraStatus:
    values: dict[str, Any] = {
        "online": True,
        "last_seen": 1_700_000_000.5,
        "polling": True,
        "waiting": 0,
        "in_flight": 0,
    }
    values.update(fields)
    return CameraStatus(camera_id, **values)


def write(
    camera_id: str, *, seq: int = 0, answered: bool = False, expect: bool = False, **fields: Any
) -> StatusWrite:
    return StatusWrite(status(camera_id, **fields), expect, answered, seq)


# ---------------------------------------------------------------- directory: claim


async def test_claim_makes_the_node_home_with_a_clock_seq(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    before_us = await redis_time_us(raw)
    before_ms = int(time.time() * 1000)
    [claim] = await backend.directory.claim(["cam-a"], "A~1", again=False)
    after_us = await redis_time_us(raw)
    assert claim.old_home == ""
    assert claim.parked == b""
    assert not claim.refused
    assert before_us <= claim.seq <= after_us
    fields = await stored(raw, prefix, "cam-a")
    assert fields is not None
    assert (fields["home"], fields["polling"]) == ("A~1", "1")
    assert int(fields["seq"]) == claim.seq
    assert before_ms <= int(fields["seen"]) <= int(time.time() * 1000)
    [entry] = await backend.directory.read(["cam-a"])
    assert entry is not None
    assert (entry.home, entry.polling, entry.waiting, entry.in_flight, entry.expect) == (
        "A~1",
        True,
        0,
        0,
        False,
    )
    assert entry.seq == claim.seq


async def test_claims_are_ordered_and_a_takeover_names_the_old_home(
    backend: RedisBackend,
) -> None:
    directory = backend.directory
    [first] = await directory.claim(["cam"], "A~1", again=False)
    [second] = await directory.claim(["cam"], "B~1", again=False)
    assert second.old_home == "A~1"
    assert second.seq > first.seq
    # B claims again while still home: only seq and seen move.
    [again] = await directory.claim(["cam"], "B~1", again=True)
    assert again == Claim("B~1", b"", again.seq)
    assert again.seq > second.seq
    # A believes it is home, but is not: a real takeover.
    [stale] = await directory.claim(["cam"], "A~1", again=True)
    assert stale.old_home == "B~1"
    assert stale.seq > again.seq
    [entry] = await directory.read(["cam"])
    assert entry is not None
    assert entry.home == "A~1"
    assert entry.seq == stale.seq


async def test_claim_again_bumps_only_seq_seen_and_polling(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.directory.claim(["cam"], "A~1", again=False)
    await backend.directory.write_status(
        "A~1", [write("cam", polling=False, waiting=3, in_flight=1, expect=True)]
    )
    [claim] = await backend.directory.claim(["cam"], "A~1", again=True)
    fields = await stored(raw, prefix, "cam")
    assert fields is not None
    assert claim.old_home == "A~1"
    assert fields["polling"] == "1"
    assert (fields["waiting"], fields["inflight"], fields["expect"]) == ("3", "1", "1")
    assert int(fields["seq"]) == claim.seq
    assert abs(int(fields["seen"]) - time.time() * 1000) < 5000


async def test_a_claim_list_is_answered_in_order(backend: RedisBackend) -> None:
    await backend.directory.claim(["b"], "A~1", again=False)
    claims = await backend.directory.claim(["a", "b", "c"], "B~1", again=False)
    assert [claim.old_home for claim in claims] == ["", "A~1", ""]
    assert await backend.directory.claim([], "B~1", again=False) == []


async def test_seq_grows_across_a_flushall(backend: RedisBackend, raw: Redis) -> None:
    [before] = await backend.directory.claim(["cam"], "A~1", again=False)
    await raw.flushall()
    assert await backend.directory.read(["cam"]) == [None]
    [after] = await backend.directory.claim(["cam"], "B~1", again=False)
    assert after.old_home == ""
    assert after.seq > before.seq


async def test_seq_is_one_more_than_a_stored_seq_ahead_of_the_clock(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.directory.claim(["cam"], "A~1", again=False)
    ahead = await redis_time_us(raw) + 10**12
    key = Keys(prefix).entries(shard_of("cam"))
    value = await raw.hget(key, "cam")
    assert value is not None
    await raw.hset(key, "cam", str(ahead).encode() + value[value.index(b"|") :])
    [claim] = await backend.directory.claim(["cam"], "B~1", again=False)
    assert claim.seq == ahead + 1


# ---------------------------------------------------------------- directory: limits


async def test_a_new_camera_past_max_cameras_is_refused_and_nothing_written(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(max_cameras=2)
    claims = await backend.directory.claim(["a", "b", "c"], "A~1", again=False)
    assert [claim.refused for claim in claims] == [False, False, True]
    assert claims[2] == Claim("", b"", 0, refused=True)
    assert await stored(raw, prefix, "c") is None
    assert await indexed(raw, Keys(prefix).ids) == [b"a", b"b"]
    assert await backend.directory.count() == 2
    # Known cameras are still claimed, by anyone.
    [known] = await backend.directory.claim(["a"], "B~1", again=False)
    assert known.old_home == "A~1"
    assert not known.refused
    assert await backend.directory.page("", None, 10) == ["a", "b"]


async def test_never_answered_ids_expire_and_make_room(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(max_cameras=2, unanswered_retention_seconds=0.3)
    await backend.directory.claim(["a", "b"], "A~1", again=False)
    await keep_shard_keys(raw, prefix)
    # Claimed by a poll: kept a status refresh (0.2 s) longer than the retention, and in
    # no index but the paging one.
    assert 300 < await expires_in_ms(raw, prefix, "a") <= 500
    assert await indexed(raw, Keys(prefix).due) == []
    [refused] = await backend.directory.claim(["c"], "A~1", again=False)
    assert refused.refused
    await asyncio.sleep(0.5)  # past their expiry: a claim now scans them out
    [claim] = await backend.directory.claim(["c"], "A~1", again=False)
    assert not claim.refused
    assert await stored(raw, prefix, "a") is None
    assert await stored(raw, prefix, "b") is None
    assert await indexed(raw, Keys(prefix).ids) == [b"c"]
    assert await backend.directory.count() == 1


async def test_a_flood_of_new_ids_at_the_limit_scans_each_shard_once_a_second(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(max_cameras=2)
    await backend.directory.claim(["a", "b"], "A~1", again=False)

    async def scans() -> int:
        stats = await raw.info("commandstats")
        return int(stats.get("cmdstat_hscan", {}).get("calls", 0))

    before = await scans()
    for n in range(100):
        [claim] = await backend.directory.claim([f"flood-{n}"], "A~1", again=False)
        assert claim.refused
    # One scan per shard when the counts were first read, then none for a second.
    assert await scans() - before <= 2 * SHARDS


async def test_claim_forgets_expired_ids(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(unanswered_retention_seconds=0.3)
    old = [f"old-{n}" for n in range(5)]
    claims = await backend.directory.claim(old, "A~1", again=False)
    # Their polls ended: in the expiry index, to be forgotten one retention later.
    ended = [
        write(camera_id, seq=claim.seq, polling=False)
        for camera_id, claim in zip(old, claims, strict=True)
    ]
    await backend.directory.write_status("A~1", ended)
    await keep_shard_keys(raw, prefix)
    assert await indexed(raw, Keys(prefix).due) == [c.encode() for c in old]
    await asyncio.sleep(0.3 + 0.1)
    await make_backend().directory.claim(["new"], "A~1", again=False)
    assert await indexed(raw, Keys(prefix).ids) == [b"new"]
    assert await indexed(raw, Keys(prefix).due) == []
    assert [await stored(raw, prefix, camera_id) for camera_id in old] == [None] * 5


async def test_an_answered_camera_keeps_the_long_retention(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(unanswered_retention_seconds=0.3, answered_retention_seconds=60.0)
    await backend.directory.claim(["cam"], "A~1", again=False)
    await backend.directory.write_status("A~1", [write("cam", answered=True)])
    assert 30_000 < await expires_in_ms(raw, prefix, "cam") <= 60_200
    # It sticks: a later write (a new home that does not know) and claims keep it.
    await backend.directory.write_status("A~1", [write("cam", answered=False)])
    await backend.directory.claim(["cam"], "B~1", again=False)
    assert 30_000 < await expires_in_ms(raw, prefix, "cam") <= 60_200
    fields = await stored(raw, prefix, "cam")
    assert fields is not None
    assert fields["answered"] == "1"


async def test_a_sweep_forgets_the_held_polls_a_dead_home_left_share_by_share(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(unanswered_retention_seconds=0.5, status_refresh_seconds=0.1)
    dead = "D~" + "x" * 80  # entries longer than Redis keeps in a listpack: a real table
    ids = [f"d-{n:03}" for n in range(800)]
    await backend.directory.claim(ids, dead, again=False)
    # Within the second its keys live: see keep_shard_keys.
    await keep_shard_keys(raw, prefix)
    keys = Keys(prefix)
    live = make_backend(answered_retention_seconds=60.0)
    [kept] = await live.directory.claim(["alive"], "A~1", again=False)
    await live.directory.write_status("A~1", [write("alive", seq=kept.seq, answered=True)])
    assert await indexed(raw, Keys(prefix).due) == [], "held polls are in no expiry index"

    async def all_expired() -> bool:  # the last claimed expires last
        return await expires_in_ms(raw, prefix, ids[-1]) < 0

    await eventually(all_expired)  # their entries expired; nothing deleted them yet
    assert await raw.hlen(Keys(prefix).entries(shard_of("d-000"))) > 1

    async def held() -> int:
        return sum([await raw.hlen(Keys(prefix).entries(shard)) for shard in range(SHARDS)])

    await backend.directory.sweep(0.25)
    first = await held()
    assert 1 + 800 * 0.5 <= first < 1 + 800 * 0.85, "about a quarter of each shard scanned"
    assert len(await indexed(raw, keys.ids)) == first, "the ids left are the entries left"
    await backend.directory.sweep(1.0)
    assert await held() == 1
    assert await indexed(raw, Keys(prefix).ids) == [b"alive"]
    assert await backend.directory.page("", None, 10) == ["alive"]
    assert await backend.directory.count() == 1


async def test_a_stale_due_member_never_deletes_a_live_entry(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    # As an older layout or a write lost in a failover could leave it: the id is in the
    # due set, at a time long past, while its poll is held.
    await backend.directory.claim(["cam"], "A~1", again=False)
    await raw.zadd(Keys(prefix).due(shard_of("cam")), {"cam": 1})
    assert await backend.directory.count() == 1
    [entry] = await backend.directory.read(["cam"])
    assert entry is not None
    assert (entry.home, entry.polling) == ("A~1", True)
    assert await indexed(raw, Keys(prefix).due) == [], "the stale member only left the set"


async def test_an_id_missing_from_the_paging_index_is_listed_again_when_its_expiry_moves(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    [claim] = await backend.directory.claim(["cam"], "A~1", again=False)
    await raw.zrem(Keys(prefix).ids(shard_of("cam")), "cam")
    assert await backend.directory.page("", None, 10) == []
    # Answered: the long retention, so the expiry moves on, and the index is written again.
    await backend.directory.write_status("A~1", [write("cam", seq=claim.seq, answered=True)])
    assert await backend.directory.page("", None, 10) == ["cam"]


async def test_a_sweep_at_maxmemory_goes_on_from_the_nodes_own_position(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(answered_retention_seconds=60.0)
    home = "H~" + "x" * 80  # entries longer than Redis keeps in a listpack: a real table
    await backend.directory.claim([f"c-{n:03}" for n in range(800)], home, again=False)
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", "1mb")
    fillers: list[str] = []
    try:
        with contextlib.suppress(ResponseError):
            for n in range(1000):
                fillers.append(f"{prefix}-filler:{n}")
                await raw.set(fillers[-1], b"f" * 64 * 1024)
        with pytest.raises(OutOfMemoryError):
            await raw.set(f"{prefix}-probe", b"p")
        # Nothing expired, so nothing is freed: the store cannot keep the shards'
        # positions, and each sweep goes on from this node's own.
        for _ in range(6):
            await backend.directory.sweep(0.25)
    finally:
        await raw.config_set("maxmemory", "0")
        await raw.delete(*fillers)
    assert [key async for key in raw.scan_iter(match=f"*{prefix}*:sweep")] == []
    assert sum([await raw.hlen(Keys(prefix).entries(k)) for k in range(SHARDS)]) == 800


# ---------------------------------------------------------------- directory: status


async def test_write_status_lands_for_the_home(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    [claim] = await backend.directory.claim(["cam"], "A~1", again=False)
    written = await backend.directory.write_status(
        "A~1",
        [
            write(
                "cam",
                seq=claim.seq,
                last_seen=1_700_000_123.456,
                polling=False,
                waiting=4,
                in_flight=2,
                expect=True,
            )
        ],
    )
    assert written == [Written("A~1", claim.seq)]
    fields = await stored(raw, prefix, "cam")
    assert fields is not None
    expires_at = int(fields.pop("exp"))
    assert await raw.zscore(Keys(prefix).due(shard_of("cam")), "cam") == expires_at, (
        "a camera whose poll ended is in the expiry index, at its expiry"
    )
    assert fields == {
        "home": "A~1",
        "seen": "1700000123456",
        "polling": "0",
        "waiting": "4",
        "inflight": "2",
        "expect": "1",
        "answered": "0",
        "seq": str(claim.seq),
    }
    [entry] = await backend.directory.read(["cam"])
    assert entry is not None
    assert (entry.seen_ms, entry.polling, entry.waiting, entry.in_flight, entry.expect) == (
        1_700_000_123_456,
        False,
        4,
        2,
        True,
    )


async def test_write_status_is_dropped_when_another_node_is_home(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    [mine] = await backend.directory.claim(["cam"], "A~1", again=False)
    [theirs] = await backend.directory.claim(["cam"], "B~1", again=False)
    before = await stored(raw, prefix, "cam")
    written = await backend.directory.write_status("A~1", [write("cam", seq=mine.seq, waiting=9)])
    assert written == [Written("B~1", theirs.seq)]
    assert written[0].lost_to("A~1")
    assert await stored(raw, prefix, "cam") == before


async def test_write_status_recreates_a_lost_entry_with_a_fresh_seq(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    [claim] = await backend.directory.claim(["cam"], "A~1", again=False)
    await raw.flushall()
    start = await redis_time_us(raw)
    [written] = await backend.directory.write_status("A~1", [write("cam", seq=claim.seq)])
    assert written.home == "A~1"
    assert written.seq > claim.seq
    assert written.seq >= start
    fields = await stored(raw, prefix, "cam")
    assert fields is not None
    assert fields["home"] == "A~1"
    assert await backend.directory.page("", None, 10) == ["cam"]
    assert await backend.directory.count() == 1


async def test_write_status_after_a_park_by_a_later_claimer_is_dropped(
    backend: RedisBackend,
) -> None:
    [old] = await backend.directory.claim(["cam"], "A~1", again=False)
    [later] = await backend.directory.claim(["cam"], "B~1", again=False)
    assert await backend.directory.park("cam", "B~1", b"work")
    [written] = await backend.directory.write_status("A~1", [write("cam", seq=old.seq)])
    assert written == Written("", later.seq)
    assert not written.lost_to("A~1")
    # The node that parked it may write again: nobody is home, its claim is the latest.
    [own] = await backend.directory.write_status("B~1", [write("cam", seq=later.seq)])
    assert own.home == "B~1"
    assert own.seq > later.seq


async def test_write_status_of_several_cameras_answers_each(backend: RedisBackend) -> None:
    [a] = await backend.directory.claim(["a"], "A~1", again=False)
    [b] = await backend.directory.claim(["b"], "B~1", again=False)
    written = await backend.directory.write_status(
        "A~1", [write("a", seq=a.seq), write("b", seq=a.seq)]
    )
    assert written == [Written("A~1", a.seq), Written("B~1", b.seq)]
    assert await backend.directory.write_status("A~1", []) == []


# ---------------------------------------------------------------- directory: park


async def test_park_leaves_work_for_the_next_home(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.directory.claim(["cam"], "A~1", again=False)
    assert not await backend.directory.park("cam", "B~1", b"not home")
    assert await raw.exists(Keys(prefix).parked("cam")) == 0
    assert await backend.directory.park("cam", "A~1", b"\x00work\xff")
    [entry] = await backend.directory.read(["cam"])
    assert entry is not None
    assert entry.home == ""
    assert not entry.polling
    assert 0 < await raw.pttl(Keys(prefix).parked("cam")) <= 30_000
    # Parked twice is not possible: nobody is home now.
    assert not await backend.directory.park("cam", "A~1", b"again")
    [claim] = await backend.directory.claim(["cam"], "B~1", again=False)
    assert (claim.old_home, claim.parked) == ("", b"\x00work\xff")
    assert await raw.exists(Keys(prefix).parked("cam")) == 0


async def test_parked_work_is_left_alone_while_someone_is_home(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    [mine] = await backend.directory.claim(["cam"], "A~1", again=False)
    assert await backend.directory.park("cam", "A~1", b"work")
    [written] = await backend.directory.write_status("A~1", [write("cam", seq=mine.seq)])
    assert written.home == "A~1"
    [claim] = await backend.directory.claim(["cam"], "B~1", again=False)
    assert (claim.old_home, claim.parked) == ("A~1", b"")
    assert await raw.get(Keys(prefix).parked("cam")) == b"work"


async def test_park_of_an_unknown_camera_writes_nothing(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    assert not await backend.directory.park("ghost", "A~1", b"work")
    assert await raw.keys(f"*{prefix}:*") == []


# ---------------------------------------------------------------- directory: read, page


async def test_read_gives_none_for_unknown_and_drops_them_from_the_index(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.directory.claim(["a", "b"], "A~1", again=False)
    await raw.hdel(Keys(prefix).entries(shard_of("a")), "a")
    entries = await backend.directory.read(["a", "b", "nope"])
    assert entries[0] is None
    assert entries[2] is None
    assert entries[1] is not None
    assert entries[1].camera_id == "b"
    assert await backend.directory.page("", None, 10) == ["b"]
    assert await backend.directory.read([]) == []


async def test_page_by_prefix_and_cursor(backend: RedisBackend) -> None:
    ids = ["cam-10", "cam-2", "cam-1", "door-1", "cam", "ca", "cb", "cam-\u00e9", "cam-\u4e2d"]
    await backend.directory.claim(ids, "A~1", again=False)
    page = backend.directory.page
    assert await page("", None, 100) == sorted(ids, key=str.encode)
    assert await page("cam", None, 100) == [
        "cam",
        "cam-1",
        "cam-10",
        "cam-2",
        "cam-\u00e9",
        "cam-\u4e2d",
    ]
    assert await page("cam-", None, 2) == ["cam-1", "cam-10"]
    assert await page("cam-", "cam-10", 2) == ["cam-2", "cam-\u00e9"]
    assert await page("cam-", "cam-\u4e2d", 2) == []
    # A cursor before the prefix starts at the prefix; one past it finds nothing.
    assert await page("cam-", "a", 1) == ["cam-1"]
    assert await page("cam-", "d", 5) == []
    assert await page("", "cb", 5) == ["door-1"]
    assert await page("zzz", None, 5) == []
    assert await page("", None, 0) == []


async def test_count_is_the_live_cameras(backend: RedisBackend) -> None:
    assert await backend.directory.count() == 0
    await backend.directory.claim(["a", "b", "c"], "A~1", again=False)
    assert await backend.directory.count() == 3


# ---------------------------------------------------------------- members


async def test_beat_alive_and_leave(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    a, b = make_backend().members, make_backend().members
    beat_a = await a.beat("A~1")
    assert beat_a.alive == frozenset({"A~1"})
    assert beat_a.epoch
    beat_b = await b.beat("B~1")
    assert beat_b.alive == frozenset({"A~1", "B~1"})
    assert beat_b.epoch == beat_a.epoch
    assert 0 < await raw.pttl(Keys(prefix).node("A~1")) <= 5000
    assert await a.is_alive("B~1")
    assert await b.is_alive("A~1")
    assert not await a.is_alive("C~1")
    assert not await a.is_alive("")
    await a.leave("A~1")
    assert not await b.is_alive("A~1")
    assert await raw.exists(Keys(prefix).node("A~1")) == 0
    assert (await b.beat("B~1")).alive == frozenset({"B~1"})


async def test_a_node_that_stops_beating_is_dead_after_half_the_timeout(
    make_backend: MakeBackend,
) -> None:
    members = make_backend(node_timeout_seconds=0.4).members
    await members.beat("A~1")
    assert await members.is_alive("A~1")

    async def dead() -> bool:
        return not await members.is_alive("A~1")

    started = time.monotonic()
    await eventually(dead)
    assert time.monotonic() - started >= 0.1
    assert (await members.beat("B~1")).alive == frozenset({"B~1"})


async def test_the_epoch_changes_when_the_store_loses_its_data(
    make_backend: MakeBackend, raw: Redis
) -> None:
    a, b = make_backend().members, make_backend().members
    first = (await a.beat("A~1")).epoch
    assert (await a.beat("A~1")).epoch == first
    await raw.flushall()
    second = (await b.beat("B~1")).epoch
    assert second != first
    assert (await a.beat("A~1")).epoch == second


async def test_the_epoch_changes_after_a_restart(
    backend: RedisBackend, redis_server: RedisServer
) -> None:
    first = (await backend.members.beat("A~1")).epoch
    await redis_server.restart()

    async def new_epoch() -> bool:
        with contextlib.suppress(BackendError):
            return (await backend.members.beat("A~1")).epoch != first
        return False

    await eventually(new_epoch)


# ---------------------------------------------------------------- transport


async def test_messages_arrive_in_order_with_inline_bodies(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    # The receiver's reads block long enough to see the last message come.
    sender, receiver = make_backend().transport, make_backend(receive_wait_seconds=30.0).transport
    # Sent before the receiver ever read: still for it.
    await sender.send(
        [
            Envelope("B~1", b"h1"),
            Envelope("B~1", b"h2", b"small body"),
            Envelope("B~1", b"h3", b""),
            Envelope("C~1", b"other"),
        ]
    )
    deliveries = await receiver.receive("B~1")
    assert [d.header for d in deliveries] == [b"h1", b"h2", b"h3"]
    assert deliveries[0].body is None
    body = deliveries[1].body
    assert isinstance(body, InlineBody)
    assert body.size == 10
    assert await body.read() == b"small body"
    assert await body.read() is None
    empty = deliveries[2].body
    assert empty is not None
    assert empty.size == 0
    assert await empty.read() == b""
    inbox = Keys(prefix).inbox("B~1")
    assert await raw.xlen(inbox) == 3  # deleted with the next read, ahead of it
    waiting = asyncio.ensure_future(receiver.receive("B~1"))

    async def deleted() -> bool:
        return await raw.xlen(inbox) == 0

    await eventually(deleted)
    assert not waiting.done()
    assert await raw.xlen(Keys(prefix).inbox("C~1")) == 1
    await sender.send([Envelope("B~1", b"h4")])
    assert [d.header for d in await waiting] == [b"h4"]


async def test_a_big_body_travels_in_a_key_read_once(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    big = secrets.token_bytes(INLINE_BODY_BYTES + 1)
    exactly_inline = b"x" * INLINE_BODY_BYTES
    await backend.transport.send(
        [Envelope("B~1", b"big", big), Envelope("B~1", b"inline", exactly_inline)]
    )
    [body_key] = await raw.keys(f"{prefix}:body:*")
    assert 0 < await raw.pttl(body_key) <= 30_000
    first, second = await backend.transport.receive("B~1")
    assert isinstance(first.body, StoredBody)
    assert first.body.size == len(big)
    assert isinstance(second.body, InlineBody)
    assert second.body.size == INLINE_BODY_BYTES
    assert await first.body.read() == big
    assert await raw.exists(body_key) == 0
    assert await first.body.read() is None


async def test_an_expired_body_reads_as_none(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(message_ttl_seconds=0.3)
    await backend.transport.send([Envelope("B~1", b"big", b"y" * (INLINE_BODY_BYTES + 1))])
    [delivery] = await backend.transport.receive("B~1")

    async def expired() -> bool:
        return await raw.keys(f"{prefix}:body:*") == []

    await eventually(expired)
    assert delivery.body is not None
    assert delivery.body.size == INLINE_BODY_BYTES + 1
    assert await delivery.body.read() is None


async def test_receive_waits_about_a_second_for_nothing(backend: RedisBackend) -> None:
    started = time.monotonic()
    assert await backend.transport.receive("B~1") == []
    assert 0.8 <= time.monotonic() - started < 3.0


async def test_receive_wakes_when_a_message_comes(make_backend: MakeBackend) -> None:
    sender, receiver = make_backend().transport, make_backend().transport
    waiting = asyncio.ensure_future(receiver.receive("B~1"))
    await asyncio.sleep(0.1)
    await sender.send([Envelope("B~1", b"now")])
    assert [d.header for d in await waiting] == [b"now"]


async def test_an_inbox_made_anew_with_lower_ids_is_read_from_the_start(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(receive_wait_seconds=0.2)  # an idle read looks for renumbering
    inbox = Keys(prefix).inbox("B~1")
    await backend.transport.send([Envelope("B~1", b"first")])
    assert [d.header for d in await backend.transport.receive("B~1")] == [b"first"]
    assert await backend.transport.receive("B~1") == []  # deletes what the last one read
    assert await raw.xlen(inbox) == 0
    # A failover to a replica whose clock is behind: ids below the last one read.
    await raw.delete(inbox)
    await raw.xadd(inbox, {"m": b"renumbered"}, id="1-1")
    headers: list[bytes] = []

    async def arrived() -> bool:
        headers.extend(d.header for d in await backend.transport.receive("B~1"))
        return bool(headers)

    await eventually(arrived, timeout=10.0)
    assert headers == [b"renumbered"]


async def test_entries_whose_deletion_failed_are_deleted_by_an_idle_read(
    make_backend: MakeBackend, raw: Redis, prefix: str
) -> None:
    backend = make_backend(receive_wait_seconds=0.2)
    inbox = Keys(prefix).inbox("B~1")
    await backend.transport.send([Envelope("B~1", b"first")])
    assert [d.header for d in await backend.transport.receive("B~1")] == [b"first"]
    await backend.transport.send([Envelope("B~1", b"second")])
    await raw.execute_command("ACL", "SETUSER", "default", "-xdel")
    try:
        with pytest.raises(BackendError, match="NoPermissionError"):
            await backend.transport.receive("B~1")  # its XDEL refused: nothing is taken
    finally:
        await raw.execute_command("ACL", "SETUSER", "default", "+xdel")
    assert await raw.xlen(inbox) == 2
    assert [d.header for d in await backend.transport.receive("B~1")] == [b"second"]
    assert await backend.transport.receive("B~1") == []  # idle: "first" is deleted again

    async def deleted() -> bool:
        return await raw.xlen(inbox) == 0

    await eventually(deleted)


async def test_send_of_nothing_is_a_no_op(backend: RedisBackend, raw: Redis, prefix: str) -> None:
    await backend.transport.send([])
    assert await raw.keys(f"*{prefix}:*") == []


# ---------------------------------------------------------------- every key expires


async def test_every_key_has_a_ttl(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    a, b = make_backend(), make_backend()
    await a.directory.claim(["cam-1", "cam-2", "cam-3"], "A~1", again=False)
    await a.directory.write_status("A~1", [write("cam-1", answered=True)])
    await a.directory.park("cam-2", "A~1", b"work")
    await a.directory.count()
    await a.members.beat("A~1")
    await b.members.beat("B~1")
    await a.transport.send(
        [Envelope("B~1", b"small", b"body"), Envelope("B~1", b"big", b"z" * 100_000)]
    )
    await b.directory.read(["cam-1", "gone"])
    # A sweep that stops within a shard keeps its place in a key.
    dead = "D~" + "x" * 80  # entries longer than Redis keeps in a listpack: a real table
    await a.directory.claim([f"d-{n}" for n in range(400)], dead, again=False)
    await a.directory.sweep(0.01)
    keys = [key async for key in raw.scan_iter(match=f"*{prefix}:*")]
    kinds = {kind_of(key.decode()) for key in keys}
    assert kinds == {
        "entries",
        "ids",
        "due",
        "sweep",
        "parked",
        "node",
        "nodes",
        "epoch",
        "inbox",
        "body",
    }
    ttls = {key: await raw.pttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


# ---------------------------------------------------------------- errors


def test_one_line_keeps_the_server_message_only() -> None:
    error = ResponseError(
        "Command # 3 (XADD camrelay:inbox:n MAXLEN ~ 100000 * m SECRET-PAYLOAD\nmore) "
        "of pipeline caused error: OOM command not allowed when used memory > 'maxmemory'."
    )
    assert one_line(error) == (
        "ResponseError: OOM command not allowed when used memory > 'maxmemory'."
    )
    echoed = ResponseError("ERR unknown command 'X', with args beginning with: 'SECRET'")
    assert one_line(echoed) == "ResponseError: ERR unknown command 'X'"
    assert one_line(ConnectionError("boom pw123"), ("pw123",)) == "ConnectionError: boom ***"
    assert one_line(ResponseError("")) == "ResponseError"
    assert len(one_line(ResponseError("e" * 1000))) == MESSAGE_CHARS


async def test_a_refused_write_raises_without_the_payload(
    backend: RedisBackend, raw: Redis, prefix: str
) -> None:
    await backend.directory.claim(["cam"], "A~1", again=False)
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", "1mb")
    # Values bigger than what a refused command's buffer frees: full stays full.
    filler = b"f" * 64 * 1024
    with contextlib.suppress(ResponseError):
        for n in range(1000):
            await raw.set(f"filler:{n}", filler)
    with pytest.raises(OutOfMemoryError):
        await raw.set("probe", b"p")
    marker = "PAYLOAD-MARKER-" + secrets.token_hex(8)
    # What redis-py itself says quotes the payload: the reason for the sanitising.
    pipe = raw.pipeline(transaction=False)
    pipe.xadd(Keys(prefix).inbox("B~1"), {"m": b"h", "b": marker.encode()})
    with pytest.raises(OutOfMemoryError) as raw_error:
        await execute(pipe)
    assert marker in str(raw_error.value)

    bodies = [marker.encode() * 10, marker.encode() * 10_000]
    for body in bodies:
        with pytest.raises(BackendError) as caught:
            await backend.transport.send([Envelope("B~1", marker.encode(), body)])
        text = str(caught.value)
        assert marker not in text
        assert text.startswith("OutOfMemoryError: command not allowed when used memory")
        assert "\n" not in text
        assert len(text) <= MESSAGE_CHARS
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
    with pytest.raises(BackendError) as claim_error:
        await backend.directory.claim([marker], "A~1", again=False)
    assert marker not in str(claim_error.value)
    with pytest.raises(BackendError) as park_error:
        await backend.directory.park("cam", "A~1", marker.encode())
    assert marker not in str(park_error.value)
    await raw.config_set("maxmemory", "0")


async def test_the_password_never_shows(redis_server: RedisServer, raw: Redis) -> None:
    password = "pw-" + secrets.token_hex(8)
    await raw.config_set("requirepass", "another-" + password)
    try:
        url = redis_server.url.replace("redis://", f"redis://:{password}@")
        backend = RedisBackend.from_url(url, "t", LIMITS)
        assert password not in repr(backend)
        with pytest.raises(BackendError) as caught:
            await backend.members.beat("A~1")
        assert password not in str(caught.value)
        await backend.close()
        assert password not in repr(backend)
    finally:
        await raw.auth("another-" + password)
        await raw.config_set("requirepass", "")
    with pytest.raises(BackendError) as bad_url:
        RedisBackend.from_url(f"http://:{password}@127.0.0.1:1", "t", LIMITS)
    assert password not in str(bad_url.value)
    unreachable = RedisBackend.from_url(f"redis://:{password}@127.0.0.1:1", "t", LIMITS)
    with pytest.raises(BackendError) as refused:
        await unreachable.directory.count()
    assert password not in str(refused.value)
    assert str(refused.value).startswith("ConnectionError:")
    await unreachable.close()


async def test_a_redis_cluster_client_that_cannot_start_raises_backend_error(
    redis_server: RedisServer,
) -> None:
    """A Redis Cluster client's own failures (no node reachable; a node named that is not
    in cluster mode) are not ``RedisError``s: they too must be a node's one-line
    ``BackendError`` (a node keeps running and retries), never a traceback."""
    for url, reason in (
        ("redis://127.0.0.1:1", "cannot be connected"),
        (redis_server.url, "Cluster mode is not enabled"),
    ):
        backend = RedisBackend.from_url(url, "t", LIMITS, cluster=True)
        with pytest.raises(BackendError) as caught:
            await backend.members.beat("A~1")
        assert reason in str(caught.value)
        assert "\n" not in str(caught.value)
        await backend.close()


async def test_redis_down_raises_backend_error(
    backend: RedisBackend, redis_server: RedisServer
) -> None:
    await backend.directory.count()
    assert redis_server.process is not None
    await redis_server.stop()
    with pytest.raises(BackendError):
        await backend.directory.claim(["cam"], "A~1", again=False)
    with pytest.raises(BackendError):
        await backend.members.beat("A~1")
    with pytest.raises(BackendError):
        await backend.transport.receive("A~1")
    await redis_server.start()

    async def back() -> bool:
        with contextlib.suppress(BackendError):
            return await backend.directory.count() == 0
        return False

    await eventually(back)


# ---------------------------------------------------------------- close


async def test_close_fails_later_calls(backend: RedisBackend, raw: Redis) -> None:
    await backend.transport.send([Envelope("B~1", b"h")])
    await backend.transport.receive("B~1")
    await backend.close()
    await backend.close()
    assert backend.closed
    assert "closed" in repr(backend)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: backend.directory.claim(["cam"], "A~1", again=False),
        lambda: backend.directory.write_status("A~1", [write("cam")]),
        lambda: backend.directory.park("cam", "A~1", b""),
        lambda: backend.directory.read(["cam"]),
        lambda: backend.directory.page("", None, 1),
        lambda: backend.directory.count(),
        lambda: backend.members.beat("A~1"),
        lambda: backend.members.is_alive("A~1"),
        lambda: backend.members.leave("A~1"),
        lambda: backend.transport.send([Envelope("B~1", b"h")]),
        lambda: backend.transport.receive("B~1"),
    ]
    for call in calls:
        with pytest.raises(BackendError, match="closed"):
            await call()
