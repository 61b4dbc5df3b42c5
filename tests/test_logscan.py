"""The incremental scanner holds to ``orjson.loads`` of the whole body, random or crafted."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.relay import CHUNK_BYTES, LogResult, TimeRange
from server.relay.logscan import (
    MAX_DEPTH,
    MAX_REQUEST_ID_BYTES,
    ResultBodyError,
    ResultScanner,
    ScannedBody,
)

Reference = tuple[str | None, list[Any]]


def reference(body: bytes) -> Reference | None:
    """What the body means by ``orjson.loads`` and the contract's checks; None if refused."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    request_id = data.get("requestId")
    if request_id is not None and not isinstance(request_id, str):
        return None
    logs = data.get("logs")
    if not isinstance(logs, list):
        return None
    for entry in logs:
        timestamp = entry.get("timestamp") if isinstance(entry, dict) else None
        if type(timestamp) is not int and not (
            type(timestamp) is float and math.isfinite(timestamp)
        ):
            return None
    return request_id, logs


def scan(body: bytes, cuts: list[int]) -> ScannedBody:
    # An odd number of cuts, or none: the length is announced, as with Content-Length
    # (a small body announced and received in one piece takes the one-go path).
    announced = len(cuts) % 2 or not cuts
    scanner = ResultScanner(expected_size=len(body) if announced else None)
    previous = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        scanner.feed(body[previous:cut])
        previous = cut
    scanner.feed(body[previous:])
    return scanner.finish()


def assert_holds_to_orjson(body: bytes, cuts: list[int]) -> None:
    """Both ways in: in pieces (the incremental reader) and whole (the one-go path)."""
    for pieces in (cuts, []):
        assert_scan_holds_to_orjson(body, pieces)


def assert_scan_holds_to_orjson(body: bytes, cuts: list[int]) -> None:
    expected = reference(body)
    try:
        scanned = scan(body, cuts)
    except ResultBodyError:
        assert expected is None, f"refused a body orjson accepts: {body[:200]!r}"
        return
    assert expected is not None, f"accepted a body orjson refuses: {body[:200]!r}"
    request_id, logs = expected
    result = scanned.result
    assert scanned.request_id == request_id
    assert len(result) == len(logs)
    for index, entry in enumerate(logs):
        own = result.entry_bytes(index)
        assert own in body  # the camera's own bytes
        assert orjson.loads(own) == entry
        # Python compares int and float exactly: the value the ranges compare against.
        assert result.timestamp(index) == entry["timestamp"]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = (
    st.integers(min_value=-(2**66), max_value=2**66)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([2**53 + 1, -(2**53) - 1, 2**63, "1", None, True])
)
entries = st.builds(
    lambda ts, extra, drop: ({} if drop else {"timestamp": ts}) | extra,
    timestamps,
    st.dictionaries(
        st.sampled_from(["description", "k", "},{", '"', "\\"]), json_values, max_size=3
    ),
    st.booleans().filter(lambda b: not b) | st.just(True),
)
bodies = st.fixed_dictionaries(
    {"logs": st.lists(entries | json_values, max_size=6)},
    optional={"requestId": st.text(max_size=8) | st.none() | st.integers(), "x": json_values},
)
whitespace = st.sampled_from([b"", b" ", b"\n", b"\t \r\n"])


@st.composite
def rendered(draw: st.DrawFn) -> bytes:
    """A body as bytes, with random whitespace around its structure, maybe damaged."""
    text = json.dumps(draw(bodies), ensure_ascii=draw(st.booleans())).encode()
    if draw(st.booleans()):
        space = draw(whitespace)
        for mark in (b",", b":", b"[", b"{"):
            text = text.replace(mark, mark + space) if b'"' not in space else text
    damage = draw(st.sampled_from(["none", "none", "cut", "insert", "delete"]))
    if damage != "none" and text:
        at = draw(st.integers(min_value=0, max_value=len(text) - 1))
        if damage == "cut":
            text = text[:at]
        elif damage == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            noise = draw(
                st.sampled_from(
                    [b"}", b"{", b"]", b"[", b",", b'"', b"\\", b"\xff", b"\xc3", b"x", b"1"]
                )
            )
            text = text[:at] + noise + text[at:]
    return text


fragments = st.sampled_from(
    [
        b"},{",
        b'"',
        b'\\"',
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\n",
        b"1",
        b"-",
        b"e5",
        b'"timestamp"',
        b'"logs"',
        b'"requestId"',
        b"null",
        b"true",
        b"\\ud800",
        b"\\u0041",
        b"\xed\xa0\x80",
        b"\xff",
        b"\xc3\xa9",
        b'"a"',
        b"0.5",
        b"2e400",
        b"\x00",
        b"\xef\xbb\xbf",
    ]
)


@st.composite
def crafted(draw: st.DrawFn) -> bytes:
    """Bytes made of JSON's structural pieces, inside or outside a plausible frame."""
    middle = b"".join(draw(st.lists(fragments, max_size=30)))
    frame = draw(
        st.sampled_from(
            [
                (b"", b""),
                (b'{"logs":[', b"]}"),
                (b'{"logs":[{"timestamp":1,"d":"', b'"}]}'),
                (b'{"requestId":"', b'","logs":[]}'),
            ]
        )
    )
    return frame[0] + middle + frame[1]


cut_points = st.lists(st.integers(min_value=0, max_value=400), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=rendered(), cuts=cut_points)
@example(body=b'{"logs":[{"timestamp":1}],"logs":[2]}', cuts=[])
@example(body=b'{"logs":[2],"logs":[{"timestamp":1}]}', cuts=[3])
@example(body=b'{"requestId":5,"requestId":"a","logs":[]}', cuts=[])
@example(body=b'{"log\\u0073":[{"timestamp":1,"timestamp":"x"}]}', cuts=[5])
@example(body=b'{"logs":[{"timestamp":"x","timestamp":1}]}', cuts=[])
def test_random_bodies_hold_to_orjson(body: bytes, cuts: list[int]) -> None:
    assert_holds_to_orjson(body, cuts)


@settings(max_examples=400, deadline=None)
@given(body=crafted(), cuts=cut_points)
@example(body=b'{"logs":[{"timestamp":1,"d":"\\ud800"}]}', cuts=[])
@example(body=b'{"logs":[{"timestamp":1,"d":"\xed\xa0\x80"}]}', cuts=[])
@example(body=b'\xef\xbb\xbf{"logs":[]}', cuts=[])
@example(body=b'{"logs":[]}\x00', cuts=[])
def test_crafted_bodies_hold_to_orjson(body: bytes, cuts: list[int]) -> None:
    assert_holds_to_orjson(body, cuts)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 3, MAX_DEPTH - 2, MAX_DEPTH - 1])
def test_nesting_limit_is_orjsons_for_the_whole_body(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    entry = b'{"timestamp":1,"x":' + nested + b"}"
    body = b'{"logs":[' + entry + b"]}"
    accepted = reference(body) is not None
    assert accepted == (depth <= MAX_DEPTH - 3)
    if accepted:
        assert scan(body, [len(body) // 2]).result.entry_bytes(0) == entry
    else:
        with pytest.raises(ResultBodyError, match="nested too deeply"):
            scan(body, [len(body) // 2])


def test_crafted_strings_stay_linear() -> None:
    """A megabyte string of `},{` and escaped quotes fed one byte-kilobyte at a time."""
    evil = b'\\"},{' * 200_000
    body = b'{"logs":[{"timestamp":1,"d":"' + evil + b'"}]}'
    scanner = ResultScanner(expected_size=len(body))
    for at in range(0, len(body), 1024):
        scanner.feed(body[at : at + 1024])
    scanned = scanner.finish()
    assert scanned.result.entry_bytes(0) == body[9:-2]


def feed_in_pieces(body: bytes, piece: int) -> ScannedBody:
    scanner = ResultScanner()
    for at in range(0, len(body), piece):
        scanner.feed(body[at : at + piece])
    return scanner.finish()


def test_tiny_entries_and_long_whitespace_are_read_piece_by_piece() -> None:
    """Each piece resumes where the last stopped: nothing is scanned twice."""
    tiny = b'{"logs":[' + b",".join([b'{"timestamp":1}'] * 200_000) + b"]}"
    assert len(feed_in_pieces(tiny, 4096).result) == 200_000
    spaced = b'{"logs":' + b" " * 2_000_000 + b'[{"timestamp":1}' + b"\n" * 1_000_000 + b"]}"
    assert feed_in_pieces(spaced, 1024).result.entry_bytes(0) == b'{"timestamp":1}'
    number = b'{"x":' + b"1" * 1_000_000 + b',"logs":[]}'  # too big for a double
    assert reference(number) is None
    with pytest.raises(ResultBodyError) as refused:
        feed_in_pieces(number, 1024)
    assert refused.value.detail == (
        "the body holds a number beyond the range of a double (about 1.8e308) at byte 5, "
        "which the server cannot read: send such a value as a string"
    )


def test_big_integers_compare_exactly_against_double_bounds() -> None:
    above = 2**53 + 1  # a double rounds it to 2**53
    body = orjson.dumps(
        {"logs": [{"timestamp": 2**53}, {"timestamp": above}, {"timestamp": 2**60 + 1}]}
    )
    result = scan(body, []).result
    assert result.ordered
    at_bound = result.select(TimeRange(float(2**53), float(2**53)))
    assert list(at_bound.indices()) == [0]  # 2**53 + 1 > 2**53, exactly
    from_bound = result.select(TimeRange(float(2**53), None))
    assert list(from_bound.indices()) == [0, 1, 2]
    unordered = scan(orjson.dumps({"logs": [{"timestamp": above}, {"timestamp": 0}]}), []).result
    assert not unordered.ordered
    assert list(unordered.select(TimeRange(None, float(2**53))).indices()) == [1]


def test_integer_bounds_a_double_cannot_hold_compare_exactly() -> None:
    big = 2**53  # a double rounds big + 1 to big, and big + 3 to big + 4
    stamps = [float(big), big + 1, big + 2, big + 3, big + 4]
    result = scan(orjson.dumps({"logs": [{"timestamp": s} for s in stamps]}), []).result
    assert result.ordered

    def selected(start: int | None, end: int | None) -> list[int | float]:
        selection = result.select(TimeRange(start, end))
        indices = list(selection.indices())
        selection.release()
        return [stamps[i] for i in indices]

    assert selected(big + 1, big + 1) == [big + 1]
    assert selected(big + 1, None) == stamps[1:]
    assert selected(None, big + 1) == stamps[:2]
    assert selected(big + 3, big + 3) == [big + 3]
    assert selected(None, big + 3) == stamps[:4]
    reversed_order = stamps[::-1]
    unordered = scan(orjson.dumps({"logs": [{"timestamp": s} for s in reversed_order]}), [])
    assert not unordered.result.ordered
    picked = unordered.result.select(TimeRange(big + 1, big + 3))
    assert [reversed_order[i] for i in picked.indices()] == [big + 3, big + 2, big + 1]


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(
        st.integers(min_value=2**53 - 4, max_value=2**53 + 4)
        | st.floats(min_value=-10.0, max_value=2.0**54)
        | st.integers(min_value=-5, max_value=5),
        max_size=12,
    ),
    ordered=st.booleans(),
    compact=st.booleans(),
    chunk_bytes=st.sampled_from([1, 16, 64 * 1024]),
    # bounds as /logs reads them: an integer a double does not hold stays that integer
    low=st.none()
    | st.floats(min_value=-10.0, max_value=2.0**54)
    | st.integers(min_value=2**53 - 4, max_value=2**53 + 4),
    high=st.none()
    | st.floats(min_value=-10.0, max_value=2.0**54)
    | st.integers(min_value=2**53 - 4, max_value=2**53 + 4),
)
def test_selection_matches_the_inclusive_range(
    stamps: list[int | float],
    ordered: bool,
    compact: bool,
    chunk_bytes: int,
    low: float | None,
    high: float | None,
) -> None:
    if ordered:
        stamps = sorted(stamps)
    if low is not None and high is not None and low > high:
        low, high = high, low
    document = {"logs": [{"timestamp": s} for s in stamps]}
    # entries apart by a bare comma, or by ", " (one slice per run, or per entry)
    body = orjson.dumps(document) if compact else json.dumps(document).encode()
    result: LogResult = scan(body, []).result
    selection = result.select(TimeRange(low, high))
    expected = [
        i for i, s in enumerate(stamps) if (low is None or low <= s) and (high is None or s <= high)
    ]
    assert list(selection.indices()) == expected
    rendered_body = b"".join(selection.chunks(b"[", b"]", chunk_bytes=chunk_bytes))
    assert len(rendered_body) == selection.size(b"[", b"]")
    assert orjson.loads(rendered_body) == [{"timestamp": stamps[i]} for i in expected]
    selection.release()


class IdTooLong(Exception):
    pass


def refuse() -> None:
    raise IdTooLong


def scan_refusing_long_ids(body: bytes, cuts: list[int]) -> ScannedBody:
    """``scan`` with the HTTP layer's callback for an over-long ``requestId``."""
    announced = len(cuts) % 2 or not cuts
    scanner = ResultScanner(
        expected_size=len(body) if announced else None, on_request_id_too_long=refuse
    )
    previous = 0
    for cut in sorted({min(c, len(body)) for c in cuts}):
        scanner.feed(body[previous:cut])
        previous = cut
    scanner.feed(body[previous:])
    return scanner.finish()


@pytest.mark.parametrize("announced", [True, False])
def test_request_id_over_the_limit_is_refused_as_its_bytes_arrive(announced: bool) -> None:
    """The 65th byte after the opening quote is where it stops: the rest is never needed."""
    head = b'{"requestId":"'
    scanner = ResultScanner(
        expected_size=50_000_000 if announced else None, on_request_id_too_long=refuse
    )
    scanner.feed(head)
    for _ in range(MAX_REQUEST_ID_BYTES):
        scanner.feed(b"a")
    with pytest.raises(IdTooLong):
        scanner.feed(b"a")
    assert scanner.received == len(head) + MAX_REQUEST_ID_BYTES + 1


def test_request_id_over_the_limit_in_one_piece_is_refused() -> None:
    scanner = ResultScanner(on_request_id_too_long=refuse)
    with pytest.raises(IdTooLong):
        scanner.feed(b'{"requestId":"' + b"7" * 10_000)


@pytest.mark.parametrize(
    "raw",
    [
        b"a" * MAX_REQUEST_ID_BYTES,
        b"0123456789abcdef" * 2,
        b"",
        b"\\u00e9" * 10 + b"abcd",  # 64 bytes as sent
        "é".encode() * 32,  # 64 bytes of UTF-8
    ],
)
def test_request_id_up_to_the_limit_is_read_whole(raw: bytes) -> None:
    body = b'{"requestId":"' + raw + b'","logs":[{"timestamp":1}]}'
    expected = orjson.loads(body)["requestId"]
    for cuts in ([], [15], [3, 20, 40], [1, 2]):
        assert scan_refusing_long_ids(body, cuts).request_id == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"a" * (MAX_REQUEST_ID_BYTES + 1),
        b"\\u0061" * 11,  # 11 characters, 66 bytes as sent
        "é".encode() * 32 + b"a",
        b"a" * 100_000,
    ],
)
def test_request_id_over_the_limit_is_refused_on_every_path(raw: bytes) -> None:
    body = b'{"requestId":"' + raw + b'","logs":[{"timestamp":1}]}'
    for cuts in ([], [15], [3, 20, 40], [1, 2], [len(body) - 1]):
        with pytest.raises(IdTooLong):
            scan_refusing_long_ids(body, cuts)


def test_long_strings_under_other_keys_are_not_request_ids() -> None:
    long = b"x" * 1000
    body = b'{"requestIdX":"' + long + b'","d":{"requestId":"' + long + b'"},"logs":[]}'
    assert scan_refusing_long_ids(body, [20, 1500]).request_id is None


@settings(max_examples=200, deadline=None)
@given(
    request_id=st.text(max_size=80),
    ascii_only=st.booleans(),
    cuts=cut_points,
)
def test_request_id_limit_counts_the_bytes_as_sent(
    request_id: str, ascii_only: bool, cuts: list[int]
) -> None:
    """Refused exactly when the string between the quotes is over the limit, however
    the body is cut; otherwise read as without the limit."""
    try:
        quoted = json.dumps(request_id, ensure_ascii=ascii_only).encode()
    except UnicodeEncodeError:  # a lone surrogate: orjson refuses it anyway
        return
    body = b'{"requestId":' + quoted + b',"logs":[{"timestamp":1}]}'
    if len(quoted) - 2 > MAX_REQUEST_ID_BYTES:
        with pytest.raises(IdTooLong):
            scan_refusing_long_ids(body, cuts)
        return
    try:
        scanned = scan_refusing_long_ids(body, cuts)
    except ResultBodyError:
        assert reference(body) is None
        return
    assert scanned.request_id == request_id


_TEMPLATES = (
    b'{"timestamp": %d}',
    b'{ "description" : "a, b ]" , "timestamp":%d }',
    b'{"timestamp":%d,"k":[1.50, -0, {"z": null}]}',
)
#: whole-number floats only (so the bounds compare as with the integers): a small
#: body of flat entries with float timestamps is indexed only when a range needs it
_FLOAT_TEMPLATES = (
    b'{"timestamp": %d.0}',
    b'{ "description" : "a, b ]" , "timestamp":%d.0 }',
)
_GAPS = st.sampled_from([b"", b" ", b"\n  ", b"\t", b"\r\n", b"  \n"])


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.tuples(
            st.integers(min_value=-5, max_value=5), st.sampled_from(_TEMPLATES), _GAPS, _GAPS
        ),
        max_size=10,
    )
    | st.lists(
        st.tuples(
            st.integers(min_value=-5, max_value=5),
            st.sampled_from(_FLOAT_TEMPLATES),
            _GAPS,
            _GAPS,
        ),
        max_size=10,
    ),
    edges=st.tuples(_GAPS, _GAPS),
    low=st.none() | st.integers(min_value=-6, max_value=6),
    high=st.none() | st.integers(min_value=-6, max_value=6),
    chunk_bytes=st.sampled_from([1, 7, 64 * 1024]),
)
def test_non_compact_entries_come_back_byte_for_byte(
    parts: list[tuple[int, bytes, bytes, bytes]],
    edges: tuple[bytes, bytes],
    low: int | None,
    high: int | None,
    chunk_bytes: int,
) -> None:
    """Whatever whitespace the camera put between entries: each selected entry comes
    back as its own bytes, a run of consecutive ones as the camera's bytes between
    them, runs joined by a comma, in the camera's order; whole or in pieces alike."""
    if low is not None and high is not None and low > high:
        low, high = high, low
    body = bytearray(b'{"logs": [' + edges[0])
    spans: list[tuple[int, int]] = []
    for index, (stamp, template, before, after) in enumerate(parts):
        if index:
            body += before + b"," + after
        entry = template % stamp
        spans.append((len(body), len(body) + len(entry)))
        body += entry
    body += edges[1] + b"]}"
    inside = [
        (low is None or low <= stamp) and (high is None or stamp <= high) for stamp, *_ in parts
    ]
    runs: list[bytes] = []
    for index, selected in enumerate(inside):
        if not selected:
            continue
        if index and inside[index - 1]:  # the run goes on: the camera's bytes up to here
            runs[-1] += bytes(body[spans[index - 1][1] : spans[index][1]])
        else:
            runs.append(bytes(body[spans[index][0] : spans[index][1]]))
    expected = b"[" + b",".join(runs) + b"]"
    result: LogResult = scan(bytes(body), []).result
    selection = result.select(TimeRange(low, high))
    assert selection.count == sum(inside)
    assert selection.size(b"[", b"]") == len(expected)
    assert b"".join(selection.chunks(b"[", b"]", chunk_bytes=chunk_bytes)) == expected
    small = expected if len(expected) <= CHUNK_BYTES else None
    assert selection.render_small(b"[", b"]") == small
    assert selection.render_small(b"[", b"]") == small  # the second time from the shared copy
    assert orjson.loads(expected) == [
        orjson.loads(body[start:end])
        for (start, end), keep in zip(spans, inside, strict=True)
        if keep
    ]
    selection.release()
    # The whole log, after any range: the camera's bytes from the first entry to the last.
    whole = result.select(TimeRange())
    everything = bytes(body[spans[0][0] : spans[-1][1]]) if spans else b""
    assert b"".join(whole.chunks(b"[", b"]")) == b"[" + everything + b"]"
    assert [result.entry_bytes(i) for i in range(len(result))] == [
        bytes(body[start:end]) for start, end in spans
    ]
    whole.release()
    result.release()
    assert result.released


def test_a_small_body_of_float_timestamps_is_indexed_only_when_a_range_needs_it() -> None:
    body = b'{"logs": [ {"timestamp": 1.0} ,\n {"timestamp": 2.5}\n], "requestId": "r"}'
    result = scan(body, []).result
    assert result._starts is None  # the whole log needs only its span
    whole = result.select(TimeRange())
    assert whole.render_small(b"[", b"]") == b'[{"timestamp": 1.0} ,\n {"timestamp": 2.5}]'
    assert result._starts is None
    ranged = result.select(TimeRange(2.0, None))
    assert ranged.render_small(b"[", b"]") == b'[{"timestamp": 2.5}]'
    assert result._starts is not None
    for selection in (whole, ranged):
        selection.release()
    with pytest.raises(RuntimeError, match="already released"):
        whole.size(b"[", b"]")


def test_a_small_answer_is_rendered_once_per_range_and_a_big_one_is_left_to_stream() -> None:
    entries = [{"timestamp": i, "text": "x" * 100} for i in range(1000)]
    result = scan(orjson.dumps({"logs": entries, "requestId": "r"}), []).result
    first, second = result.select(TimeRange(0, 9)), result.select(TimeRange(0, 9))
    answer = first.render_small(b"[", b"]")
    assert answer == orjson.dumps(entries[:10])
    assert second.render_small(b"[", b"]") is answer  # looked up, not rendered again
    whole = result.select(TimeRange())
    assert whole.size(b"[", b"]") > CHUNK_BYTES
    assert whole.render_small(b"[", b"]") is None
    assert b"".join(whole.chunks(b"[", b"]")) == orjson.dumps(entries)
    for selection in (first, second, whole):
        selection.release()
    with pytest.raises(RuntimeError, match="already released"):
        first.render_small(b"[", b"]")
    result.release()


def test_a_lazily_indexed_result_refuses_to_index_once_released() -> None:
    result = scan(b'{"logs":[{"timestamp":1.0},{"timestamp":2.0}]}', []).result
    result.release()
    with pytest.raises(RuntimeError, match="already released"):
        result.entry_bytes(0)


def test_bytes_after_a_body_read_whole_are_refused() -> None:
    body = b'{"logs":[{"timestamp":1.0}]}'
    scanner = ResultScanner(expected_size=len(body))
    scanner.feed(body)
    with pytest.raises(ResultBodyError, match="longer than its Content-Length"):
        scanner.feed(b" ")


class LookedUp(Exception):
    pass


def look_up(request_id: str) -> None:
    raise LookedUp(request_id)


@pytest.mark.parametrize("request_id", ["f" * 32, "f" * 100])
@pytest.mark.parametrize("cuts", [[], [10], [10, 30]])
def test_a_fault_before_the_request_id_is_a_400_once_the_body_is_all_here(
    request_id: str, cuts: list[int]
) -> None:
    """With the rest of the body in hand when its ``requestId`` is read, the body's
    own fault (400) comes before the look-up (404), as the order of checks says."""
    body = b'{"logs":[{"timestamp":"x"}],"requestId":"%s"}' % request_id.encode()
    scanner = ResultScanner(on_request_id=look_up, on_request_id_too_long=refuse)
    previous = 0
    for cut in cuts:
        scanner.feed(body[previous:cut])
        previous = cut
    scanner.feed(body[previous:], last=True)
    with pytest.raises(ResultBodyError, match=r"logs\[0\]\.timestamp must be a finite number"):
        scanner.finish()


def test_a_request_id_streaming_in_is_looked_up_before_the_rest_comes() -> None:
    scanner = ResultScanner(on_request_id=look_up, on_request_id_too_long=refuse)
    with pytest.raises(LookedUp):
        scanner.feed(b'{"logs":[{"timestamp":"x"}],"requestId":"%s",' % (b"f" * 32))


def test_a_request_id_looked_up_as_it_came_is_not_looked_up_again_at_the_end() -> None:
    looked_up: list[str] = []
    scanner = ResultScanner(on_request_id=looked_up.append, on_request_id_too_long=refuse)
    scanner.feed(b'{"requestId":"%s","logs":[' % (b"f" * 32))
    scanner.feed(b'{"timestamp":1}]}', last=True)
    assert scanner.finish().request_id == "f" * 32
    assert looked_up == ["f" * 32]


def test_a_repeated_request_id_key_the_last_wins_when_read_incrementally() -> None:
    seen: list[str] = []
    body = (
        b'{"requestId": "first", "logs": ['
        + b",".join(
            b'{"timestamp": %d, "description": "%s"}' % (i, b"x" * 100) for i in range(1000)
        )
        + b'], "requestId": "second"}'
    )
    scanner = ResultScanner(on_request_id=seen.append)
    for offset in range(0, len(body), 4096):
        scanner.feed(body[offset : offset + 4096])
    scanned = scanner.finish()
    assert scanned.request_id == "second"  # as orjson.loads(body)["requestId"]
    assert seen[-1] == "second"
