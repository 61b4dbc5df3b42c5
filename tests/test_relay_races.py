"""Races found in review: events that land in the same loop turn as a departure or a hold."""

from __future__ import annotations

import asyncio

import pytest

from server.relay import (
    CameraOffline,
    CameraTimeout,
    Relay,
    RelayConfig,
    ShuttingDown,
    TimeRange,
    UnknownRequest,
)
from server.relay.logscan import ResultScanner
from tests.conftest import assert_relay_idle
from tests.helpers import fetch, log_result

CONFIG = RelayConfig(
    poll_hold_seconds=5.0, connect_timeout_seconds=1.0, response_timeout_seconds=1.5
)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def seen_but_not_polling(relay: Relay) -> None:
    poll = asyncio.ensure_future(relay.poll("default"))
    await settle()
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)


async def test_burst_on_a_poll_held_longer_than_the_connect_timeout_is_served() -> None:
    relay = Relay(
        RelayConfig(poll_hold_seconds=5.0, connect_timeout_seconds=0.05, response_timeout_seconds=1)
    )
    poll = asyncio.ensure_future(relay.poll("default"))
    await asyncio.sleep(0.1)  # held for longer than the connect timeout
    assert relay.cameras()[0].online  # seen throughout a held poll
    # A burst: the callers' first steps run in the same loop turn as the delivery.
    burst = [asyncio.ensure_future(fetch(relay, "default", TimeRange())) for _ in range(5)]
    command = await poll
    await asyncio.sleep(0)
    assert [task.done() for task in burst[1:]] == [False] * 4  # queued, not "offline"
    assert command is not None
    relay.submit_result("default", command.request_id, log_result([{"timestamp": 1}]))
    second = await relay.poll("default")
    assert second is not None
    relay.submit_result("default", second.request_id, log_result([{"timestamp": 2}]))
    results = await asyncio.gather(*burst)
    assert results == [[{"timestamp": 1}]] + [[{"timestamp": 2}]] * 4


async def test_caller_right_after_the_hold_ends_is_not_offline() -> None:
    relay = Relay(
        RelayConfig(poll_hold_seconds=0.1, connect_timeout_seconds=0.05, response_timeout_seconds=1)
    )
    assert await relay.poll("default") is None  # held 0.1 s, longer than the connect timeout
    caller = asyncio.ensure_future(fetch(relay, "default", TimeRange()))
    command = await relay.poll("default")
    assert command is not None
    relay.submit_result("default", command.request_id, log_result([]))
    assert await caller == []


async def test_queued_caller_that_left_in_the_same_turn_is_not_sent() -> None:
    relay = Relay(CONFIG)
    await seen_but_not_polling(relay)
    stays = asyncio.ensure_future(fetch(relay, "default", TimeRange(50.0, 60.0)))
    leaves = asyncio.ensure_future(fetch(relay, "default", TimeRange(None, None)))
    await settle()
    # The poll's step is already queued when the departing caller is cancelled.
    poll = asyncio.ensure_future(relay.poll("default"))
    leaves.cancel()
    command = await poll
    assert command is not None
    assert command.time_range == TimeRange(50.0, 60.0)
    relay.submit_result("default", command.request_id, log_result([{"timestamp": 55}]))
    assert await stays == [{"timestamp": 55}]
    await asyncio.gather(leaves, return_exceptions=True)


async def test_no_command_goes_out_for_a_caller_who_left() -> None:
    relay = Relay(CONFIG)
    await seen_but_not_polling(relay)
    leaves = asyncio.ensure_future(fetch(relay, "default", TimeRange(1.0, 2.0)))
    await settle()
    poll = asyncio.ensure_future(relay.poll("default"))
    leaves.cancel()
    await settle()
    assert not poll.done()  # held: nothing to send
    poll.cancel()
    await asyncio.gather(poll, leaves, return_exceptions=True)
    assert_relay_idle(relay)


async def test_result_landing_as_the_last_caller_leaves_is_404() -> None:
    relay = Relay(CONFIG)
    poll = asyncio.ensure_future(relay.poll("default"))
    await settle()
    leaves = asyncio.ensure_future(fetch(relay, "default", TimeRange()))
    command = await poll
    assert command is not None
    leaves.cancel()
    with pytest.raises(UnknownRequest):
        relay.submit_result("default", command.request_id, log_result([]))
    await asyncio.gather(leaves, return_exceptions=True)
    assert_relay_idle(relay)


async def test_response_timeout_counts_from_a_delivery_the_camera_took() -> None:
    relay = Relay(
        RelayConfig(poll_hold_seconds=5, connect_timeout_seconds=1.0, response_timeout_seconds=0.2)
    )
    dropped = asyncio.ensure_future(relay.poll("default"))
    await settle()
    caller = asyncio.ensure_future(fetch(relay, "default", TimeRange()))
    await asyncio.sleep(0)  # the caller's step sets the command on the poll ...
    assert not dropped.done()
    dropped.cancel()  # ... and the connection drops before the poll's task resumes
    await asyncio.gather(dropped, return_exceptions=True)
    await asyncio.sleep(0.15)  # the camera reconnects within the connect timeout
    command = await relay.poll("default")
    assert command is not None
    await asyncio.sleep(0.1)  # and answers within the response timeout of taking it
    relay.submit_result("default", command.request_id, log_result([{"timestamp": 3}]))
    assert await caller == [{"timestamp": 3}]


async def test_dropped_delivery_with_no_camera_back_is_offline_not_timeout() -> None:
    relay = Relay(
        RelayConfig(poll_hold_seconds=5, connect_timeout_seconds=0.1, response_timeout_seconds=5)
    )
    dropped = asyncio.ensure_future(relay.poll("default"))
    await settle()
    caller = asyncio.ensure_future(fetch(relay, "default", TimeRange()))
    await asyncio.sleep(0)
    assert not dropped.done()
    dropped.cancel()
    await asyncio.gather(dropped, return_exceptions=True)
    with pytest.raises(CameraOffline, match="dropped the poll"):
        await caller
    assert_relay_idle(relay)


async def test_redelivered_command_keeps_its_first_deadline() -> None:
    relay = Relay(
        RelayConfig(poll_hold_seconds=5, connect_timeout_seconds=1.0, response_timeout_seconds=0.2)
    )
    poll = asyncio.ensure_future(relay.poll("default"))
    await settle()
    caller = asyncio.ensure_future(fetch(relay, "default", TimeRange()))
    first = await poll  # the camera took it
    await asyncio.sleep(0.1)
    again = await relay.poll("default")  # then polled again without answering
    assert again == first
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CameraTimeout):
        await caller
    assert loop.time() - started < 0.15  # 0.2 s from the first delivery, not the second


async def test_result_after_close_is_shutting_down() -> None:
    relay = Relay(CONFIG)
    await seen_but_not_polling(relay)
    relay.close()
    with pytest.raises(ShuttingDown, match="shutting down"):
        relay.submit_result("default", None, log_result([]))


async def test_caller_leaving_as_its_result_comes_lets_go_of_the_result() -> None:
    relay = Relay(CONFIG)
    poll = asyncio.ensure_future(relay.poll("default"))
    await settle()
    stays = asyncio.ensure_future(relay.fetch_logs("default", TimeRange()))
    leaves = asyncio.ensure_future(relay.fetch_logs("default", TimeRange()))
    command = await poll
    assert command is not None
    released: list[str] = []
    scanner = ResultScanner()
    scanner.feed(b'{"logs": [{"timestamp": 1}]}')
    result = scanner.finish(on_release=lambda: released.append("bytes")).result
    relay.submit_result("default", command.request_id, result)
    leaves.cancel()  # in the same loop turn as the result
    result.release()  # the upload's own hold
    with pytest.raises(asyncio.CancelledError):
        await leaves
    selection = await stays
    assert released == []  # the caller that stayed still holds it
    selection.release()
    assert released == ["bytes"]
    assert_relay_idle(relay)
