"""Reading a ``/send_logs`` body incrementally, as its bytes arrive, into a ``LogResult``.

The scanner finds where each value of the body starts and ends (strings and
brackets only; regular expressions with possessive quantifiers, so every byte
is looked at a bounded number of times however the input is crafted, and a
value cut by a chunk boundary is resumed where it stopped, not rescanned).
Each value is then checked by ``orjson.loads`` on its own bytes, and the
structure around them (the body object, its keys, the ``logs`` array) by the
scanner, so the body is accepted exactly when ``orjson.loads`` accepts it
whole, with the same values: the same duplicate-key rule (the last wins),
the same nesting limit, the same numbers. Entries are kept as the camera's
own bytes (offsets into the body), never re-encoded.
"""

from __future__ import annotations

import itertools
import math
import mmap
import operator
import re
from array import array
from collections.abc import Callable, Generator
from typing import Any

import orjson

from .logresult import Body, LogResult, Run

#: a body announced at least this long is read into an anonymous mapping
MAPPED_BUFFER_BYTES = 256 * 1024
#: the largest offset a 4-byte index entry holds
_MAX_SMALL_OFFSET = 2**32 - 1
#: orjson's nesting limit for a whole document
MAX_DEPTH = 1024
#: the longest ``requestId`` the server could have issued, in bytes as sent (its own are 32)
MAX_REQUEST_ID_BYTES = 64
#: above this, an integer may not survive the trip through a double
EXACT_DOUBLE_LIMIT = 2**53
#: the integers ``orjson.loads`` reads as ``int`` (it reads any other as a double)
EXACT_INTEGERS = (-(2**63), 2**64 - 1)

_WHITESPACE = re.compile(rb"[ \t\n\r]*+")
#: the rest of a string after its opening quote: stops at the closing quote,
#: at a backslash that is the last byte so far, or at the end of the bytes so far
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\[\s\S][^"\\]*+)*+')
#: anything up to the next quote or bracket
_PLAIN = re.compile(rb'[^"{}\[\]]*+')
#: an object with no nested object or array (most log entries), in one match
_FLAT_OBJECT = re.compile(rb'\{[^"{}\[\]]*+(?:"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+"[^"{}\[\]]*+)*+\}')
#: a flat object, then whitespace and maybe a comma (group 2) and whitespace
_FLAT_ENTRY = re.compile(_FLAT_OBJECT.pattern.join((b"(", rb")[ \t\n\r]*+(,[ \t\n\r]*+)?")))
#: bodies announced at most this long are read in one go once all here
WHOLE_BODY_BYTES = 64 * 1024
#: a number or a literal (true, false, null), or garbage orjson will refuse
_SCALAR = re.compile(rb'[^ \t\n\r,:"{}\[\]]*+')

_QUOTE = ord('"')
_OPENERS = frozenset(b"{[")
_CLOSERS = frozenset(b"}]")
_COMMA = ord(",")
_COLON = ord(":")
_LBRACE = ord("{")
_RBRACE = ord("}")
_LBRACKET = ord("[")
_RBRACKET = ord("]")

_NeedMore = Generator[None, None, int]


def _positions(data: bytes | bytearray, byte: bytes) -> list[int]:
    """Where each occurrence of ``byte`` is in ``data``, in order (C loops only)."""
    before = itertools.accumulate(map(len, data.split(byte)))
    return list(map(operator.add, before, itertools.count()))[:-1]


def flat_offsets(body: Body, count: int) -> tuple[array[int], array[int]]:
    """Where each of the ``count`` entries of a body read whole starts and ends, for a
    body whose only braces are its own and one pair per entry (``_read_whole``)."""
    data = body[:] if isinstance(body, mmap.mmap) else body
    opens = _positions(data, b"{")
    closes = _positions(data, b"}")
    assert len(opens) == len(closes) == count + 1
    return array("I", opens[1:]), array("I", map(operator.add, closes[:-1], itertools.repeat(1)))


class ResultBodyError(ValueError):
    """The body is not an acceptable result; ``detail`` says why, for a 400."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


#: orjson's reason for a number too large for a double (``1e400``): valid JSON it refuses
_BEYOND_DOUBLE = "number is infinity when parsed as double"


def _invalid_json(reason: str, offset: int) -> ResultBodyError:
    if reason == _BEYOND_DOUBLE:
        return ResultBodyError(
            f"the body holds a number beyond the range of a double (about 1.8e308) at byte "
            f"{offset}, which the server cannot read: send such a value as a string"
        )
    return ResultBodyError(f"the body must be valid JSON: {reason} at byte {offset}")


class ScannedBody:
    """A body read whole: its ``requestId`` (or ``None``) and its entries."""

    __slots__ = ("request_id", "result")

    def __init__(self, request_id: str | None, result: LogResult) -> None:
        self.request_id = request_id
        self.result = result


class _Entries:
    """The index of one ``logs`` array as it is read."""

    __slots__ = (
        "ends",
        "error",
        "exact",
        "ordered",
        "previous",
        "starts",
        "timestamps",
        "whole",
    )

    def __init__(self) -> None:
        # 4-byte offsets while the body is under 4 GiB (then 8-byte ones)
        self.starts: array[int] = array("I")
        self.ends: array[int] = array("I")
        self.timestamps: array[float] = array("d")
        self.exact: dict[int, int] = {}
        self.ordered = True
        self.previous: int | float = -math.inf
        #: the first entry at fault; the rest is then only checked to be JSON
        self.error: str | None = None
        #: set when only the span of all entries is known (``starts`` and ``ends`` are
        #: found when first needed: ``flat_offsets``)
        self.whole: Run | None = None

    def add(self, start: int, end: int, entry: Any) -> None:
        if self.error is not None:
            return
        index = len(self.starts)
        timestamp = entry.get("timestamp") if type(entry) is dict else None
        if type(timestamp) is int:
            if abs(timestamp) > EXACT_DOUBLE_LIMIT and float(timestamp) != timestamp:
                self.exact[index] = timestamp
        elif type(timestamp) is not float or not math.isfinite(timestamp):
            self.error = _entry_fault(index, entry)
            return
        if timestamp < self.previous:
            self.ordered = False
        self.previous = timestamp
        if end > _MAX_SMALL_OFFSET and self.ends.typecode == "I":
            self.starts, self.ends = array("q", self.starts), array("q", self.ends)
        self.starts.append(start)
        self.ends.append(end)
        self.timestamps.append(float(timestamp))

    @property
    def index_bytes(self) -> int:
        """What the index costs once built (counted before it is)."""
        return len(self.timestamps) * (2 * self.starts.itemsize + self.timestamps.itemsize)


def _entry_fault(index: int, entry: Any) -> str:
    if not isinstance(entry, dict):
        return f"logs[{index}] must be an object, got {json_type(entry)}"
    if "timestamp" not in entry:
        return f"logs[{index}] has no timestamp: every entry needs a numeric timestamp"
    return f"logs[{index}].timestamp must be a finite number, got {json_type(entry['timestamp'])}"


class ResultScanner:
    """Feed a body chunk by chunk, then ``finish()``; raises ``ResultBodyError`` on a fault.

    ``on_request_id`` is called with the ``requestId`` as soon as it is read
    (it may raise to stop reading); ``on_request_id_too_long`` as soon as a
    ``requestId`` string is found to hold more than ``MAX_REQUEST_ID_BYTES`` bytes
    between its quotes (as sent, escapes included), while it still streams in (it
    should raise: the rest of the id is not waited for). Once the rest of the body
    is all here (read whole, or fed ``last``), either is called only when the body
    is found well formed, its 400 coming before the 404. ``index_bytes`` says what
    the index costs.
    """

    def __init__(
        self,
        on_request_id: Callable[[str], None] | None = None,
        expected_size: int | None = None,
        on_request_id_too_long: Callable[[], None] | None = None,
    ) -> None:
        # Sized once when the length is known: growing a buffer copies it, and for
        # a while both copies are in memory. A big one is an anonymous mapping, whose
        # pages cost memory only once written (a body refused early costs nothing).
        self._buffer: bytearray | mmap.mmap
        if expected_size is not None and expected_size >= MAPPED_BUFFER_BYTES:
            self._buffer = mmap.mmap(-1, expected_size)
        else:
            self._buffer = bytearray(expected_size or 0)
        #: bytes received so far (the buffer's first ``_size`` bytes)
        self._size = 0
        self._at_end = False
        self._on_request_id = on_request_id
        self._on_request_id_too_long = on_request_id_too_long
        self._entries = _Entries()
        self._logs_seen = False
        self._logs_fault: str | None = None
        self._request_id: str | None = None
        self._request_id_fault: str | None = None
        self._parser = self._parse()
        self._done: int | None = None
        #: a small body of known length is read in one go once it is all here
        self._whole_first = expected_size is not None and expected_size <= WHOLE_BODY_BYTES
        #: it was read so (``_read_whole``), which finds its entries flat or gives up
        self._read_flat = False
        #: the rest of the body is all here (read whole, or fed ``last``): its ``requestId``
        #: is looked up once the body is found well formed (the 400 comes before the 404)
        self._look_up_at_end = False
        #: the ``requestId`` read is over ``MAX_REQUEST_ID_BYTES`` as sent (refused at the end)
        self._id_over_limit = False
        #: the ``requestId`` read was looked up as it came (not again at the end)
        self._id_looked_up = False

    @property
    def received(self) -> int:
        return self._size

    @property
    def index_bytes(self) -> int:
        return self._entries.index_bytes

    @property
    def request_id(self) -> str | None:
        """The ``requestId`` read so far (looked up or not yet)."""
        return self._request_id

    def feed(self, chunk: bytes, *, last: bool = False) -> None:
        """The body's next bytes; ``last``: nothing follows them (the ``requestId`` is
        then looked up once the body is found well formed, as for a body read whole)."""
        if last:
            self._look_up_at_end = True
        if chunk and self._done is not None:  # a body read whole is checked and indexed
            raise ResultBodyError("the body is longer than its Content-Length")
        end = self._size + len(chunk)
        if end <= len(self._buffer):
            self._buffer[self._size : end] = chunk
        elif isinstance(self._buffer, bytearray):
            del self._buffer[self._size :]
            self._buffer += chunk
        else:  # the HTTP layer does not let a body outgrow its Content-Length
            raise ResultBodyError("the body is longer than its Content-Length")
        self._size = end
        if self._whole_first:
            if end < len(self._buffer):
                return  # a small body is read when all of it is here
            self._whole_first = False
            if self._read_whole():
                return
            self._look_up_at_end = True
        self._resume()

    def finish(self, on_release: Callable[[], None] | None = None) -> ScannedBody:
        self._at_end = True
        self._whole_first = False
        if self._done is None:
            self._resume()
        if self._request_id_fault is not None:
            raise ResultBodyError(self._request_id_fault)
        if not self._logs_seen:
            raise ResultBodyError("logs is required: an array of log entries")
        if self._logs_fault is not None:
            raise ResultBodyError(self._logs_fault)
        entries = self._entries
        if entries.error is not None:
            raise ResultBodyError(entries.error)
        request_id = self._request_id
        if self._look_up_at_end and request_id is not None and not self._id_looked_up:
            if self._id_over_limit:
                assert self._on_request_id_too_long is not None
                self._on_request_id_too_long()
            elif self._on_request_id is not None:
                self._on_request_id(request_id)
        if isinstance(self._buffer, bytearray):
            del self._buffer[self._size :]
        lazy = entries.whole is not None
        result = LogResult(
            self._buffer,
            None if lazy else entries.starts,
            None if lazy else entries.ends,
            entries.timestamps,
            entries.exact,
            ordered=entries.ordered,
            on_release=on_release,
            whole=entries.whole,
            indexer=flat_offsets if lazy else None,
            flat=self._read_flat,
        )
        return ScannedBody(self._request_id, result)

    def _read_whole(self) -> bool:
        """A small body received whole, read with a few C calls when its entries are flat.

        ``orjson.loads`` checks the whole body. If the body holds exactly one ``{``
        and one ``}`` per entry plus its own (none nested, none inside a string;
        both kinds counted in one pass), the entries are the spans between the
        2nd..Nth ``{`` and the matching ``}`` in order, found with ``bytes.split``
        (for float timestamps, only once a range needs them). Anything else (or any
        fault, to be worded) returns False and goes to the incremental reader.
        """
        body = self._buffer  # all of it: a small body's buffer is sized to its length
        if not isinstance(body, bytearray):
            return False
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        if type(data) is not dict:
            return False
        logs = data.get("logs")
        request_id = data.get("requestId")
        if type(logs) is not list or not (request_id is None or type(request_id) is str):
            return False
        if request_id is not None and self._on_request_id_too_long is not None:
            encoded = request_id.encode()
            if len(encoded) > MAX_REQUEST_ID_BYTES:  # as sent, it is at least this long
                self._id_over_limit = True
            elif b'"%s"' % encoded not in body:
                return False  # sent with escapes: the incremental reader counts its bytes
        # The top object and its entries make at least one "{" and one "}" each: so
        # if all braces number twice that, each kind numbers exactly that.
        braces = len(logs) + 1
        if len(body) - len(body.translate(None, b"{}")) != 2 * braces:
            return False
        # Checks over every entry in C loops (map, set, sorted): this is the hot path.
        try:  # ``dict.get`` refuses an entry that is not an object
            stamps: list[Any] = list(map(dict.get, logs, itertools.repeat("timestamp")))
        except TypeError:
            return False
        entries = _Entries()
        if stamps and set(map(type, stamps)) == {float}:  # orjson reads finite floats only
            # The entries' offsets wait until a range needs them: the whole log, the
            # usual answer, is one span from the first entry's brace to the last one's.
            own_end = body.rindex(b"}")
            entries.whole = (
                body.index(b"{", body.index(b"{") + 1),
                body.rindex(b"}", 0, own_end) + 1,
            )
            entries.timestamps = array("d", stamps)
            entries.ordered = stamps == sorted(stamps)
        elif stamps:
            starts, ends = flat_offsets(body, len(logs))
            for start, end, entry in zip(starts, ends, logs, strict=True):
                entries.add(start, end, entry)
        self._parser.close()
        self._done = self._size
        self._read_flat = True
        self._entries = entries
        self._logs_seen = True
        self._request_id = request_id
        self._look_up_at_end = True
        return True

    def _resume(self) -> None:
        try:
            self._parser.send(None)
        except StopIteration as stop:
            self._done = stop.value

    # ------------------------------------------------------------ the grammar

    def _parse(self) -> Generator[None, None, int]:
        buffer = self._buffer
        position = yield from self._skip_whitespace(0)
        if buffer[position] != _LBRACE:
            return (yield from self._refuse_non_object())
        position = yield from self._skip_whitespace(position + 1)
        if buffer[position] == _RBRACE:
            return (yield from self._trailing(position + 1))
        while True:
            if buffer[position] != _QUOTE:
                raise _invalid_json("expected a key (a string)", position)
            key_end = yield from self._string_end(position + 1)
            key = self._load(position, key_end)
            position = yield from self._skip_whitespace(key_end)
            if buffer[position] != _COLON:
                raise _invalid_json("expected ':' after a key", position)
            position = yield from self._skip_whitespace(position + 1)
            if key == "logs":
                position = yield from self._logs(position)
            elif key == "requestId":
                value_start = position
                self._id_over_limit = False
                if buffer[position] == _QUOTE and self._on_request_id_too_long is not None:
                    position = yield from self._request_id_end(position + 1)
                else:
                    position = yield from self._value_end(position, 1)
                self._take_request_id(self._load(value_start, position))
            else:
                value_start = position
                position = yield from self._value_end(position, 1)
                self._load(value_start, position)  # checked like any other value
            position = yield from self._skip_whitespace(position)
            if buffer[position] == _COMMA:
                position = yield from self._skip_whitespace(position + 1)
            elif buffer[position] == _RBRACE:
                return (yield from self._trailing(position + 1))
            else:
                raise _invalid_json("expected ',' or '}' after a value", position)

    def _take_request_id(self, value: Any) -> None:
        self._request_id_fault = None
        self._request_id = None
        self._id_looked_up = False
        if isinstance(value, str):
            self._request_id = value
            if self._on_request_id is not None and not self._look_up_at_end:
                self._on_request_id(value)
                self._id_looked_up = True
        elif value is not None:
            self._request_id_fault = f"requestId must be a string, got {json_type(value)}"

    def _logs(self, position: int) -> _NeedMore:
        buffer = self._buffer
        self._logs_seen = True
        self._logs_fault = None
        self._entries = entries = _Entries()
        if buffer[position] != _LBRACKET:
            value_start = position
            position = yield from self._value_end(position, 1)
            value = self._load(value_start, position)
            self._logs_fault = f"logs must be an array of log entries, got {json_type(value)}"
            return position
        position = yield from self._skip_whitespace(position + 1)
        if buffer[position] == _RBRACKET:
            return position + 1
        while True:
            # The common case in one match: a flat entry and the comma after it.
            flat = _FLAT_ENTRY.match(buffer, position, self._size)
            with memoryview(buffer) as view:
                while flat is not None and flat.end() < self._size and flat.start(2) >= 0:
                    start, end = flat.span(1)
                    try:
                        entry = orjson.loads(view[start:end])
                    except orjson.JSONDecodeError as error:
                        raise _invalid_json(error.msg, start + error.pos) from None
                    entries.add(start, end, entry)
                    position = flat.end()
                    flat = _FLAT_ENTRY.match(buffer, position, self._size)
            start = position
            if flat is not None:
                position = flat.end(1)
            else:
                position = yield from self._value_end(position, 2)
            entries.add(start, position, self._load(start, position))
            position = yield from self._skip_whitespace(position)
            if buffer[position] == _COMMA:
                position = yield from self._skip_whitespace(position + 1)
            elif buffer[position] == _RBRACKET:
                return position + 1
            else:
                raise _invalid_json("expected ',' or ']' after a log entry", position)

    def _refuse_non_object(self) -> _NeedMore:
        """Not an object: read to the end, to tell invalid JSON from the wrong type."""
        while not self._at_end:
            yield
        try:
            value = orjson.loads(memoryview(self._buffer)[: self._size])
        except orjson.JSONDecodeError as error:
            raise ResultBodyError(f"the body must be valid JSON: {error}") from None
        raise ResultBodyError(
            f'the body must be a JSON object like {{"requestId": "...", "logs": [...]}}, '
            f"got {json_type(value)}"
        )

    def _trailing(self, position: int) -> _NeedMore:
        position = yield from self._skip_whitespace(position, to_end=True)
        if position < self._size:
            raise _invalid_json("unexpected content after document", position)
        return position

    # ------------------------------------------------------------ the lexer

    def _load(self, start: int, end: int) -> Any:
        try:
            return orjson.loads(memoryview(self._buffer)[start:end])
        except orjson.JSONDecodeError as error:
            raise _invalid_json(error.msg, start + error.pos) from None

    def _more(self, position: int) -> Generator[None, None, None]:
        """Wait for more bytes; at the end of the body, the value at ``position`` is cut."""
        if self._at_end:
            raise _invalid_json("the body ends before the document does", position)
        yield

    def _skip_whitespace(self, position: int, *, to_end: bool = False) -> _NeedMore:
        """The next byte that is not whitespace (waiting for it unless ``to_end``)."""
        buffer = self._buffer
        while True:
            match = _WHITESPACE.match(buffer, position, self._size)
            assert match is not None  # the pattern matches the empty string
            position = match.end()
            if position < self._size or (to_end and self._at_end):
                return position
            if to_end:
                yield
            else:
                yield from self._more(position)

    def _string_end(self, position: int) -> _NeedMore:
        """Just past the closing quote of the string whose content starts at ``position``."""
        buffer = self._buffer
        while True:
            match = _STRING_REST.match(buffer, position, self._size)
            assert match is not None
            position = match.end()
            if position < self._size and buffer[position] == _QUOTE:
                return position + 1
            yield from self._more(position)

    def _request_id_end(self, start: int) -> _NeedMore:
        """``_string_end`` for a ``requestId``: past ``MAX_REQUEST_ID_BYTES`` bytes after
        its opening quote (at ``start - 1``), ``on_request_id_too_long`` is called at once,
        whether or not the closing quote has come (unless the body is all here)."""
        buffer = self._buffer
        position = start
        while True:
            match = _STRING_REST.match(buffer, position, self._size)
            assert match is not None
            position = match.end()
            closed = position < self._size and buffer[position] == _QUOTE
            # The string's bytes so far: up to its closing quote, else all received.
            too_long = (position if closed else self._size) - start > MAX_REQUEST_ID_BYTES
            if too_long:
                if self._look_up_at_end:  # all here: refused once found well formed
                    self._id_over_limit = True
                else:
                    assert self._on_request_id_too_long is not None
                    self._on_request_id_too_long()
                return (yield from self._string_end(position))
            if closed:
                return position + 1
            yield from self._more(position)

    def _value_end(self, position: int, depth: int) -> _NeedMore:
        """Just past the value starting at ``position``, found at nesting ``depth``."""
        buffer = self._buffer
        start = position
        first = buffer[position]
        if first == _QUOTE:
            return (yield from self._string_end(position + 1))
        if first not in _OPENERS:
            while True:
                match = _SCALAR.match(buffer, position, self._size)
                assert match is not None
                position = match.end()
                if position < self._size or self._at_end:
                    if position == start:
                        raise _invalid_json("expected a value", position)
                    return position
                yield
        level = 0
        while True:
            if position >= self._size:
                yield from self._more(position)
                continue
            byte = buffer[position]
            if byte == _QUOTE:
                position = yield from self._string_end(position + 1)
            elif byte in _OPENERS:
                level += 1
                if depth + level > MAX_DEPTH:
                    raise ResultBodyError(
                        f"the body is nested too deeply (at most {MAX_DEPTH} levels) "
                        f"at byte {position}"
                    )
                position += 1
            elif byte in _CLOSERS:
                level -= 1
                position += 1
                if level == 0:
                    return position
            else:
                match = _PLAIN.match(buffer, position, self._size)
                assert match is not None
                position = match.end()
