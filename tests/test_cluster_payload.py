"""A result between nodes (``server.cluster.payload``): the camera's entries byte for byte,
indexed by the timestamps in its message when they fit its body, parsed otherwise."""

from __future__ import annotations

import base64
import json
from array import array

import orjson
import pytest

from server.cluster.payload import (
    INDEXED_BODY_BYTES,
    result_bytes,
    result_from,
    timestamps_field,
)
from server.relay import LogResult, TimeRange
from server.relay.logscan import ResultScanner

RANGES = [
    TimeRange(),
    TimeRange(20.0, 40.0),
    TimeRange(None, 25.0),
    TimeRange(35.0, None),
    TimeRange(41.0, 49.0),
    TimeRange(2.0**60, None),
]


def uploaded(logs_json: bytes, *, length_given: bool = True) -> LogResult:
    """The home's result for an upload whose ``logs`` array is written as ``logs_json``
    (read whole, or in pieces as a body of unknown length is)."""
    body = b'{"requestId": "r1", "logs": ' + logs_json + b"}"
    scanner = ResultScanner(expected_size=len(body) if length_given else None)
    step = len(body) if length_given else 7
    for start in range(0, len(body), step):
        scanner.feed(body[start : start + step])
    return scanner.finish().result


def answer(result: LogResult, time_range: TimeRange) -> bytes:
    selection = result.select(time_range)
    try:
        return b"".join(selection.chunks(b"[", b"]"))
    finally:
        selection.release()


def across(result: LogResult) -> tuple[LogResult, str]:
    """The result as the caller's node takes it, and the timestamps its message carried."""
    body = result_bytes(result)
    timestamps = timestamps_field(result, body)
    return result_from(body, timestamps=timestamps), timestamps


def entries(*timestamps: object, description: str = "motion") -> list[dict[str, object]]:
    return [{"timestamp": t, "description": f"{description} {i}"} for i, t in enumerate(timestamps)]


CASES = {
    "floats in order": (orjson.dumps(entries(10.0, 20.0, 30.0, 40.0, 50.0)), True),
    "integers in order": (orjson.dumps(entries(10, 20, 30, 40, 50)), True),
    "out of order": (orjson.dumps(entries(40.0, 10.0, 50, 20.0, 30)), True),
    "spaced as the standard library writes": (json.dumps(entries(10, 20, 30)).encode(), True),
    "braces inside strings": (
        orjson.dumps(entries(10.0, 20.0, 30.0, description="{open} and }close{")),
        False,
    ),
    "a nested object": (
        b'[{"timestamp": 10, "where": {"x": 1}}, {"timestamp": 30, "where": {"x": 2}}]',
        False,
    ),
    "an integer a double cannot hold": (
        b'[{"timestamp": 10}, {"timestamp": 9007199254740993}, {"timestamp": 30}]',
        False,
    ),
    "no entries": (b"[]", False),
}


@pytest.mark.parametrize("length_given", [True, False], ids=["read-whole", "read-in-pieces"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_result_crosses_nodes_with_each_caller_getting_the_same_entries(
    case: str, length_given: bool
) -> None:
    logs_json, indexed = CASES[case]
    home = uploaded(logs_json, length_given=length_given)
    taken, timestamps = across(home)
    assert bool(timestamps) is indexed
    assert len(taken) == len(home)
    for time_range in RANGES:
        assert answer(taken, time_range) == answer(home, time_range), time_range
    assert [taken.entry_bytes(i) for i in range(len(taken))] == [
        home.entry_bytes(i) for i in range(len(home))
    ]
    taken.release()
    home.release()


def test_timestamps_that_fit_the_body_are_taken_as_its_index_without_parsing_it() -> None:
    home = uploaded(orjson.dumps(entries(10.0, 20.0, 30.0)))
    body = result_bytes(home)
    # The body's own timestamps say 10, 20, 30; the message says 1, 2, 3: the node
    # that takes it goes by the message.
    told = base64.b64encode(array("d", [1.0, 2.0, 3.0])).decode()
    taken = result_from(body, timestamps=told)
    assert answer(taken, TimeRange(1.0, 2.0)) == b"[%s]" % b",".join(
        orjson.dumps(entry) for entry in entries(10.0, 20.0)
    )
    taken.release()


@pytest.mark.parametrize(
    "timestamps",
    [
        base64.b64encode(array("d", [10.0, 20.0])).decode(),  # fewer than its entries
        base64.b64encode(array("d", [10.0, 20.0, 30.0, 40.0])).decode(),  # more
        base64.b64encode(array("d", [10.0, float("nan"), 30.0])).decode(),
        base64.b64encode(array("d", [10.0, float("inf"), 30.0])).decode(),
        base64.b64encode(b"\x00" * 20).decode(),  # not a whole number of doubles
        "not base64!",
    ],
    ids=["fewer", "more", "nan", "infinite", "ragged", "garbage"],
)
def test_timestamps_that_do_not_fit_the_body_are_ignored_and_it_is_parsed(
    timestamps: str,
) -> None:
    home = uploaded(orjson.dumps(entries(10.0, 20.0, 30.0)))
    taken = result_from(result_bytes(home), timestamps=timestamps)
    for time_range in RANGES:
        assert answer(taken, time_range) == answer(home, time_range)
    taken.release()
    home.release()


def test_a_big_result_goes_without_its_timestamps() -> None:
    description = "x" * 1000
    count = INDEXED_BODY_BYTES // 1000 + 1
    home = uploaded(orjson.dumps(entries(*range(count), description=description)))
    body = result_bytes(home)
    assert len(body) > INDEXED_BODY_BYTES
    assert timestamps_field(home, body) == ""
    home.release()
