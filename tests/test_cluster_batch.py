"""``TurnBatch``: the per-request Redis calls of one loop turn made as one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from server.cluster.batch import TurnBatch


class Calls:
    """The batched function: records each call's keys; answers after ``gate`` opens."""

    def __init__(self, fail: bool = False) -> None:
        self.keys: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail = fail
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self, keys: list[str]) -> list[str]:
        self.keys.append(keys)
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("Redis is down")
        return [f"value of {key}" for key in keys]

    def spawn(self, step: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(step))


async def test_the_keys_of_one_turn_go_in_one_call_and_one_keys_callers_share_it() -> None:
    calls = Calls()
    batch = TurnBatch(calls.run, calls.spawn)
    first = [asyncio.ensure_future(batch.get(key)) for key in ("a", "b", "a")]
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(batch.get("a"))  # a call under way is shared
    later = asyncio.ensure_future(batch.get("c"))  # a new key: the next call
    await asyncio.sleep(0.01)
    calls.gate.set()
    assert await asyncio.gather(*first, late, later) == [
        "value of a",
        "value of b",
        "value of a",
        "value of a",
        "value of c",
    ]
    assert calls.keys == [["a", "b"], ["c"]]
    assert await batch.get("a") == "value of a"  # answered calls are not kept
    assert calls.keys[-1] == ["a"]


async def test_a_failure_reaches_every_caller_of_the_turn() -> None:
    calls = Calls(fail=True)
    batch = TurnBatch(calls.run, calls.spawn)
    callers = [asyncio.ensure_future(batch.get(key)) for key in ("a", "b")]
    await asyncio.sleep(0.01)
    calls.gate.set()
    for caller in callers:
        with pytest.raises(ConnectionError, match="Redis is down"):
            await caller


async def test_a_caller_that_leaves_does_not_cancel_the_others() -> None:
    calls = Calls()
    batch = TurnBatch(calls.run, calls.spawn)
    leaving = asyncio.ensure_future(batch.get("a"))
    staying = asyncio.ensure_future(batch.get("a"))
    await asyncio.sleep(0.01)
    leaving.cancel()
    calls.gate.set()
    assert await staying == "value of a"
    assert leaving.cancelled()
