"""The format nodes speak: versions, the previous form, unknown fields, garbage."""

from __future__ import annotations

import logging

import orjson
import pytest

from server.cluster import messages as m
from server.relay import InFlightWork, QueuedWork, SessionWork, TimeRange


def test_a_message_goes_out_with_its_version_and_comes_back_the_same() -> None:
    sent = m.Enqueue(
        sender="a~1",
        dest="b~2",
        sent_ms=5,
        camera="cam",
        ref="a~1/1",
        start=1.5,
        end=None,
        pickup=0.8,
    )
    header = orjson.loads(m.encode(sent))
    assert header == {
        "v": 4,
        "t": "enqueue",
        "from": "a~1",
        "dest": "b~2",
        "sent": 5,
        "camera": "cam",
        "ref": "a~1/1",
        "start": 1.5,
        "end": None,
        "pickup": 0.8,
        "hops": 0,
    }
    assert m.decode(m.encode(sent)) == sent


def test_every_message_says_whom_and_which_camera_it_is_for() -> None:
    # v3: a result or an error names the camera (and a result its request), so that a
    # node takes it only for a caller of that camera; every message names its dest.
    outcome = m.Outcome(
        sender="h~1", dest="c~2", camera="cam", request="req1", refs=("c~2/4", "c~2/5")
    )
    assert orjson.loads(m.encode(outcome)) == {
        "v": 4,
        "t": "outcome",
        "from": "h~1",
        "dest": "c~2",
        "sent": 0,
        "camera": "cam",
        "request": "req1",
        "refs": ["c~2/4", "c~2/5"],
        "error": "",
        "detail": "",
        "timestamps": "",
    }
    moved = m.Moved(dest="c~2", camera="cam", refs=("c~2/4",), home="n~3")
    receipt = m.ResultReceipt(
        dest="p~4",
        camera="cam",
        ref="p~4/1",
        outcome="accepted",
        request_id="req1",
        callers=2,
    )
    assert orjson.loads(m.encode(receipt))["t"] == "receipt"  # the wire name stays
    assert orjson.loads(m.encode(receipt))["requestId"] == "req1"
    for message in (outcome, moved, receipt):
        header = orjson.loads(m.encode(message))
        assert (header["v"], header["dest"], header["camera"]) == (4, message.dest, "cam")
        assert m.decode(m.encode(message)) == message
    assert m.MESSAGE_TYPES["receipt"] is m.ResultReceipt
    assert all(cls.__name__ != "Receipt" for cls in m.MESSAGE_TYPES.values())


def test_a_result_of_the_release_before_comes_without_its_timestamps() -> None:
    # v3: the receiving node parses the result's body (``payload.result_from``).
    previous = (
        b'{"v": 3, "t": "outcome", "from": "h~1", "dest": "c~2", "sent": 7, "camera": "cam",'
        b' "request": "req1", "refs": ["c~2/4"], "error": "", "detail": ""}'
    )
    assert m.decode(previous) == m.Outcome(
        sender="h~1", dest="c~2", sent_ms=7, camera="cam", request="req1", refs=("c~2/4",)
    )


def test_a_message_of_the_release_before_has_no_dest_and_still_decodes() -> None:
    # v2: no dest (taken as addressed to the node reading it), no camera on an outcome.
    previous = (
        b'{"v": 2, "t": "enqueue", "from": "a", "sent": 5, "camera": "cam", "ref": "a/7",'
        b' "start": null, "end": 9, "pickup": 0.5, "hops": 1}'
    )
    assert m.decode(previous) == m.Enqueue(
        sender="a", sent_ms=5, camera="cam", ref="a/7", end=9, pickup=0.5, hops=1
    )
    outcome = b'{"v": 2, "t": "outcome", "from": "h", "refs": ["a/7"], "error": "QueueFull"}'
    decoded = m.decode(outcome)
    assert decoded == m.Outcome(sender="h", refs=("a/7",), error="QueueFull")
    assert isinstance(decoded, m.Outcome)
    assert (decoded.dest, decoded.camera, decoded.request) == ("", "", "")
    receipt = b'{"v": 2, "t": "receipt", "from": "h", "ref": "a/8", "outcome": "duplicate"}'
    assert m.decode(receipt) == m.ResultReceipt(sender="h", ref="a/8", outcome="duplicate")


def test_the_previous_form_is_read_with_defaults() -> None:
    # v0: no version, no pickup nor hops (the caller then waits the whole connect timeout).
    previous = (
        b'{"t": "enqueue", "from": "a", "camera": "cam", "ref": "a/7", "start": null, "end": 9}'
    )
    assert m.decode(previous) == m.Enqueue(sender="a", camera="cam", ref="a/7", end=9)


def test_a_takeover_of_the_release_before_has_no_claim_sequence() -> None:
    previous = b'{"v": 1, "t": "takeover", "from": "d", "camera": "cam", "to": "d"}'
    assert m.decode(previous) == m.Takeover(sender="d", camera="cam", to="d", seq=0)


def test_fields_of_a_later_version_are_ignored() -> None:
    later = (
        b'{"v": 5, "t": "outcome", "dest": "b~1", "camera": "cam", "request": "r",'
        b' "refs": ["b~1/1", "b~1/2"], "priority": "high", "trace": {"id": 7}}'
    )
    assert m.decode(later) == m.Outcome(
        dest="b~1", camera="cam", request="r", refs=("b~1/1", "b~1/2")
    )
    receipt = b'{"v": 9, "t": "receipt", "dest": "p~1", "camera": "cam", "shard": 3}'
    assert m.decode(receipt) == m.ResultReceipt(dest="p~1", camera="cam")


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"t": "teleport"}',
        b'{"v": 1}',
        b'{"t": "outcome", "refs": 5, "x": {}}',
        b'{"v": 3, "t": "moved", "dest": 7, "camera": "cam"}',
    ],
)
def test_a_message_that_does_not_parse_is_logged_and_dropped(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert m.decode(raw) is None
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "dropped a cluster message that does not parse"
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_session_work_round_trips() -> None:
    work = SessionWork(
        queued=(QueuedWork("b/1", TimeRange(1.0, 2.0), 0.5),),
        in_flight=(
            InFlightWork(
                "req1",
                TimeRange(None, 9.0),
                (QueuedWork("a/3", TimeRange(None, 9.0), 0.0),),
                1.25,
                offline_after=True,
                result_due_within=20.5,
            ),
            InFlightWork("req2", TimeRange(), (), 3.0),
        ),
        accepted=("old1", "old2"),
        last_seen=1700000000.5,
    )
    assert m.work_from(orjson.loads(orjson.dumps(m.work_json(work)))) == work
    # from the release before: no result due carried
    earlier = m.work_json(work)
    del earlier["inFlight"][0]["resultDueWithin"]
    assert m.work_from(earlier).in_flight[0].result_due_within is None
    with pytest.raises(ValueError, match="does not fit"):
        m.work_from({"queued": [{"ref": "x"}]})


def test_errors_travel_by_name() -> None:
    error = m.error_of("QueueFull", "10 callers wait")
    assert type(error).__name__ == "QueueFull"
    assert error.detail == "10 callers wait"
    assert type(m.error_of("CameraUnknown", "never polled")).__name__ == "CameraUnknown"
    assert type(m.error_of("SomethingNew", "d")).__name__ == "CameraOffline"
