"""Results as the camera's bytes, uploads nobody asked for, the result budget, and deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import ClientSession, web
from yarl import URL

from server.settings import Settings
from server.state import get_answers, get_metrics, get_uploads
from tests.conftest import LiveServer, MakeLiveServer, serve_on_loopback, settings_for
from tests.helpers import callers_waiting, camera_polling, wait_until

HEADERS_DONE = b"\r\n\r\n"
#: the head of every answer ``read_head`` read (the last one is the latest)
HEADS: list[bytes] = []


@contextlib.asynccontextmanager
async def raw_upload(
    server: LiveServer, content_length: int, camera_id: str = "default"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A socket that has sent the headers of a ``/send_logs`` and nothing of its body yet."""
    target = URL(server.url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        f"POST /send_logs?cameraId={camera_id} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Status and Content-Length of one HTTP answer."""
    head = await asyncio.wait_for(reader.readuntil(HEADERS_DONE), 5)
    HEADS.append(head)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")
    )
    return status, length


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of one HTTP answer (Content-Length framed)."""
    status, length = await read_head(reader)
    return status, orjson.loads(await asyncio.wait_for(reader.readexactly(length), 5))


async def take_command(
    http: ClientSession, server: LiveServer, camera_id: str = "default", **params: str
) -> tuple[dict[str, Any], asyncio.Task[tuple[int, bytes]]]:
    """A held poll picks up one /logs call: the command, and the caller's (status, body)."""
    poll = asyncio.ensure_future(
        http.get(f"{server.url}/poll_for_command", params={"cameraId": camera_id})
    )
    await wait_until(camera_polling(server.relay, camera_id))

    async def call() -> tuple[int, bytes]:
        async with http.get(
            f"{server.url}/logs", params={"cameraId": camera_id, **params}
        ) as answer:
            return answer.status, await answer.read()

    caller = asyncio.ensure_future(call())
    async with await poll as response:
        command: dict[str, Any] = await response.json()
    return command, caller


async def post_result(
    http: ClientSession, server: LiveServer, body: bytes, camera_id: str = "default"
) -> int:
    async with http.post(
        f"{server.url}/send_logs",
        params={"cameraId": camera_id},
        data=io.BytesIO(body),
        headers={"Content-Type": "application/json"},
    ) as response:
        await response.read()
        return response.status


@contextlib.asynccontextmanager
async def server_to_stop(
    settings: Settings, send_buffer_bytes: int | None = None
) -> AsyncIterator[tuple[web.AppRunner, LiveServer]]:
    """A live server that the test stops (``runner.cleanup()``); stopped here if not."""
    runner, url = await serve_on_loopback(settings, send_buffer_bytes)
    try:
        yield runner, LiveServer(runner.app, url)
    finally:
        if runner.server is not None:
            await runner.cleanup()


async def answer_to_a_beginning(server: LiveServer, beginning: bytes) -> tuple[int, dict[str, Any]]:
    """Announce 50 MB, send only ``beginning``, and read the answer that comes anyway."""
    async with raw_upload(server, 50_000_000) as (reader, writer):
        writer.write(beginning)
        await writer.drain()
        return await read_answer(reader)


async def die_mid_upload(server: LiveServer, command: dict[str, Any]) -> None:
    """Start answering ``command`` and hang up in the middle of the body."""
    async with raw_upload(server, 1_000_000) as (_, writer):
        writer.write(b'{"requestId": "%s", "logs": [' % command["requestId"].encode())
        await writer.drain()
        await wait_until(lambda: server.relay.budget.in_use > 0)


async def answer_on_the_next_poll(
    http: ClientSession,
    server: LiveServer,
    command: dict[str, Any],
    caller: asyncio.Task[tuple[int, bytes]],
) -> None:
    """The next poll gets ``command`` again; its answer reaches the caller."""
    async with http.get(f"{server.url}/poll_for_command") as response:
        assert (await response.json())["requestId"] == command["requestId"]
    answer = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 5}]})
    assert await post_result(http, server, answer) == 200
    assert (await caller)[0] == 200


async def test_entries_reach_the_user_byte_for_byte(make_live_server: MakeLiveServer) -> None:
    server = await make_live_server()
    entries = [
        b'{"timestamp": 1606938044258990275541962092341162602522202993782792835301376}',
        b'{ "description" : "x\\u00e9\\/" , "timestamp":1.0000000000000000001, "n": 1E2 }',
        b'{"timestamp": 3, "k": [1.50, -0, {"z": null}]}',
    ]
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        body = b'{"requestId": "%s", "logs": [\n  %s\n]}' % (
            command["requestId"].encode(),
            b" ,\n  ".join(entries),
        )
        assert await post_result(http, server, body) == 200
        status, answer = await caller
    assert status == 200
    # A run of consecutive entries is sent as the camera wrote it, whitespace included.
    assert answer == (
        b'{"cameraId":"default","startTimestamp":null,"endTimestamp":null,"count":3,"logs":['
        + b" ,\n  ".join(entries)
        + b"]}"
    )
    assert server.relay.budget.in_use == 0


async def test_upload_nobody_awaits_is_404_before_its_body(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server()
    async with ClientSession() as http:
        poll = asyncio.ensure_future(http.get(f"{server.url}/poll_for_command"))
        await wait_until(camera_polling(server.relay))
        status, problem = await answer_to_a_beginning(server, b'{"logs": [' + b" " * 90)
        poll.cancel()
        await asyncio.gather(poll, return_exceptions=True)
    assert status == 404
    assert "no command awaiting a result" in problem["detail"]
    assert server.relay.budget.in_use == 0
    refused = get_metrics(server.app).uploads_refused
    assert refused.labels("before_body")._value.get() == 1


async def test_unknown_request_id_read_first_is_404_before_the_rest(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server()
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        beginning = b'{"requestId": "not-issued", "logs": [{"timestamp": 1}, '
        status, problem = await answer_to_a_beginning(server, beginning)
        assert status == 404
        assert "'not-issued'" in problem["detail"]
        refused = get_metrics(server.app).uploads_refused
        assert refused.labels("at_request_id")._value.get() == 1
        # The command is still open: its own result is accepted.
        answer = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 2}]})
        assert await post_result(http, server, answer) == 200
        assert (await caller)[0] == 200


async def test_budget_makes_big_results_wait_their_turn(make_live_server: MakeLiveServer) -> None:
    upload_limit = 300_000
    server = await make_live_server(
        max_upload_bytes=upload_limit,
        max_result_bytes_in_flight=upload_limit,
        response_timeout_seconds=10.0,
    )
    relay = server.relay
    cameras = [f"cam-{n}" for n in range(4)]
    peak = {"in_use": 0, "waiting": 0}

    async def watch() -> None:
        while True:
            peak["in_use"] = max(peak["in_use"], relay.budget.in_use)
            peak["waiting"] = max(peak["waiting"], relay.budget.waiting)
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    async with ClientSession() as http:
        taken = [await take_command(http, server, camera) for camera in cameras]
        logs = {
            camera: [{"timestamp": i, "camera": camera, "pad": "x" * 40} for i in range(3000)]
            for camera in cameras
        }
        bodies = [
            orjson.dumps({"requestId": command["requestId"], "logs": logs[camera]})
            for camera, (command, _) in zip(cameras, taken, strict=True)
        ]
        assert all(200_000 < len(body) <= upload_limit for body in bodies)
        statuses = await asyncio.gather(
            *(
                post_result(http, server, body, camera)
                for camera, body in zip(cameras, bodies, strict=True)
            )
        )
        answers = [await caller for _, caller in taken]
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert statuses == [200] * 4
    for camera, (status, answer) in zip(cameras, answers, strict=True):
        assert status == 200
        assert orjson.loads(answer)["logs"] == logs[camera]
    assert peak["waiting"] >= 1  # some uploads waited for room
    # one upload's index may overdraw the budget (the oldest never waits to grow)
    assert peak["in_use"] <= upload_limit + 3000 * 24 + 64 * 1024
    assert relay.budget.in_use == 0


async def test_upload_that_dies_is_a_lost_delivery(make_live_server: MakeLiveServer) -> None:
    server = await make_live_server(connect_timeout_seconds=0.5, response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        loop = asyncio.get_running_loop()
        await die_mid_upload(server, command)
        died = loop.time()
        # No poll comes again: the caller gets 503 within the connect timeout, not 504 at 10 s.
        status, body = await caller
        assert status == 503
        assert "upload of the result broke off" in orjson.loads(body)["detail"]
        assert loop.time() - died < 2.0
    assert get_metrics(server.app).uploads_died._value.get() == 1


async def test_dead_upload_is_redelivered_on_the_next_poll(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(connect_timeout_seconds=2.0, response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        await die_mid_upload(server, command)
        await wait_until(lambda: server.relay.budget.in_use == 0)
        await answer_on_the_next_poll(http, server, command, caller)


async def test_body_that_stalls_gets_408_and_its_command_goes_out_again(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(body_timeout_seconds=0.2, response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        async with raw_upload(server, 1000) as (reader, writer):
            writer.write(b'{"requestId": "%s"' % command["requestId"].encode())
            await writer.drain()
            status, problem = await read_answer(reader)
        assert status == 408
        assert "BODY_TIMEOUT_SECONDS" in problem["detail"]
        await answer_on_the_next_poll(http, server, command, caller)


async def test_camera_in_a_long_upload_counts_as_online(make_live_server: MakeLiveServer) -> None:
    server = await make_live_server(connect_timeout_seconds=0.3, response_timeout_seconds=10.0)
    relay = server.relay
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        head = b'{"requestId": "%s", "logs": [' % command["requestId"].encode()
        tail = b"]}"
        async with raw_upload(server, len(head) + len(tail)) as (reader, writer):
            writer.write(head)
            await writer.drain()
            session = relay.session("default")
            assert session is not None
            await wait_until(lambda: session.seconds_since_seen() > 0.3)
            assert relay.cameras()[0].online
            # A new caller is queued for the next command, not turned away as offline.
            second = asyncio.ensure_future(http.get(f"{server.url}/logs"))
            await wait_until(callers_waiting(relay, 1))
            writer.write(tail)
            await writer.drain()
            status, _ = await read_answer(reader)
        assert status == 200
        assert (await caller)[0] == 200
        async with http.get(f"{server.url}/poll_for_command") as response:
            follow_up = await response.json()
        answer = orjson.dumps({"requestId": follow_up["requestId"], "logs": []})
        assert await post_result(http, server, answer) == 200
        async with await second as response:
            assert response.status == 200


@contextlib.asynccontextmanager
async def caller_that_stops_reading(
    http: ClientSession, server: LiveServer
) -> AsyncIterator[asyncio.StreamReader]:
    """A ``/logs`` caller that never reads its answer, which is more than the kernel's
    socket buffers hold; the camera's result is accepted before this yields."""
    poll = asyncio.ensure_future(http.get(f"{server.url}/poll_for_command"))
    await wait_until(camera_polling(server.relay))
    target = URL(server.url)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.transport.set_write_buffer_limits(0)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /logs HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with await poll as response:
            command = await response.json()
        logs = [{"timestamp": i, "pad": "y" * 100} for i in range(50_000)]
        body = orjson.dumps({"requestId": command["requestId"], "logs": logs})
        assert await post_result(http, server, body) == 200
        yield reader
    finally:
        writer.close()


async def test_slow_reader_is_cut_and_lets_go_of_the_result(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(write_timeout_seconds=0.2)
    relay = server.relay
    async with ClientSession() as http, caller_that_stops_reading(http, server) as reader:
        await wait_until(lambda: relay.budget.in_use == 0, timeout=5)
        assert (await reader.readuntil(HEADERS_DONE)).startswith(b"HTTP/1.1 200 ")
    assert get_metrics(server.app).slow_readers_cut._value.get() == 1


async def test_a_graceful_stop_cuts_a_reader_still_behind_when_its_timeout_ends() -> None:
    """A caller that stops reading its answer holds its handler until a write deadline
    passes; a graceful stop cuts it when its own timeout ends (aiohttp would otherwise
    wait that long again before cancelling the handler)."""
    settings = settings_for(write_timeout_seconds=60.0, shutdown_timeout_seconds=0.3)
    async with (
        server_to_stop(settings, send_buffer_bytes=32 * 1024) as (runner, server),
        ClientSession() as http,
        caller_that_stops_reading(http, server),
    ):
        await wait_until(lambda: len(get_answers(runner.app)) == 1)
        async with asyncio.timeout(5):
            await runner.cleanup()
    # cut by the server's own deadline, not cancelled by aiohttp's second wait
    assert get_metrics(runner.app).slow_readers_cut._value.get() == 1
    assert len(get_answers(runner.app)) == 0


async def read_at_pace(reader: asyncio.StreamReader, length: int, bytes_per_second: float) -> bytes:
    """Up to ``length`` bytes, taken no faster than ``bytes_per_second``, until the end or a cut."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = bytearray()
    with contextlib.suppress(ConnectionError):
        while len(received) < length and (data := await reader.read(64 * 1024)):
            received += data
            await asyncio.sleep(max(0.0, started + len(received) / bytes_per_second - loop.time()))
    return bytes(received)


async def write_at_pace(
    writer: asyncio.StreamWriter, data: bytes, bytes_per_second: float, piece: int
) -> None:
    """``data`` in pieces of ``piece`` bytes, no faster than ``bytes_per_second``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for sent in range(piece, len(data) + piece, piece):
        writer.write(data[sent - piece : sent])
        await writer.drain()
        await asyncio.sleep(max(0.0, started + sent / bytes_per_second - loop.time()))


#: entries of about 128 bytes: an answer of 1.3 MB, ten times what the socket buffers hold
PACED_ANSWER_ENTRIES = 10_000
#: kernel buffers (Linux doubles the figure), fixed on both ends of a paced answer
PACED_SOCKET_BUFFER_BYTES = 32 * 1024


async def logs_read_at_pace(
    make_live_server: MakeLiveServer, bytes_per_second: float, **settings: Any
) -> tuple[LiveServer, bytes, int]:
    """A /logs caller reading a 1.3 MB answer at ``bytes_per_second``: the server,
    the bytes it got, and the answer's Content-Length."""
    server = await make_live_server(send_buffer_bytes=PACED_SOCKET_BUFFER_BYTES, **settings)
    async with ClientSession() as http:
        poll = asyncio.ensure_future(http.get(f"{server.url}/poll_for_command"))
        await wait_until(camera_polling(server.relay))
        target = URL(server.url)
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PACED_SOCKET_BUFFER_BYTES)
        await asyncio.get_running_loop().sock_connect(sock, (target.host, target.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b"GET /logs HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with await poll as response:
                command = await response.json()
            logs = [{"timestamp": i, "pad": "y" * 100} for i in range(PACED_ANSWER_ENTRIES)]
            body = orjson.dumps({"requestId": command["requestId"], "logs": logs})
            assert await post_result(http, server, body) == 200
            status, length = await read_head(reader)
            assert status == 200
            return server, await read_at_pace(reader, length, bytes_per_second), length
        finally:
            writer.close()


async def test_reader_below_the_minimum_rate_is_cut_and_lets_go_of_the_result(
    make_live_server: MakeLiveServer,
) -> None:
    """At 1 MB/s each 64 KiB piece is taken within about 0.07 s, well inside the
    0.2 s piece deadline, but the 1.3 MB answer is not done within 0.2 s + 1.3 MB / 8 MB/s."""
    server, received, length = await logs_read_at_pace(
        make_live_server,
        1_000_000,
        write_timeout_seconds=0.2,
        min_transfer_bytes_per_second=8_000_000,
    )
    assert len(received) < length
    assert get_metrics(server.app).slow_readers_cut._value.get() == 1
    await wait_until(lambda: server.relay.budget.in_use == 0)


async def test_reader_above_the_minimum_rate_gets_its_whole_answer(
    make_live_server: MakeLiveServer,
) -> None:
    """At 3 MB/s the 1.3 MB answer takes over 0.4 s: past the 0.2 s grace, within
    0.2 s + 1.3 MB / 1.5 MB/s."""
    server, received, length = await logs_read_at_pace(
        make_live_server,
        3_000_000,
        write_timeout_seconds=0.2,
        min_transfer_bytes_per_second=1_500_000,
    )
    assert len(received) == length
    assert orjson.loads(received)["count"] == PACED_ANSWER_ENTRIES
    assert get_metrics(server.app).slow_readers_cut._value.get() == 0


async def test_body_below_the_minimum_rate_gets_408_and_its_command_goes_out_again(
    make_live_server: MakeLiveServer,
) -> None:
    """10 bytes every 0.05 s never leaves the body idle for its 0.2 s, but falls
    behind 0.2 s + 1000 B/s within half a second."""
    server = await make_live_server(
        body_timeout_seconds=0.2, min_transfer_bytes_per_second=1000, response_timeout_seconds=10.0
    )
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        async with raw_upload(server, 10_000) as (reader, writer):
            writer.write(b'{"requestId": "%s", "logs": [' % command["requestId"].encode())
            trickle = asyncio.ensure_future(write_at_pace(writer, b" " * 9000, 200, piece=10))
            try:
                status, problem = await read_answer(reader)
            finally:
                trickle.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await trickle
        assert status == 408
        assert "MIN_TRANSFER_BYTES_PER_SECOND (1000)" in problem["detail"]
        assert get_metrics(server.app).uploads_died._value.get() == 1
        await answer_on_the_next_poll(http, server, command, caller)


async def test_body_above_the_minimum_rate_is_accepted(make_live_server: MakeLiveServer) -> None:
    """1000 bytes at 2500 B/s take 0.4 s: past the 0.2 s grace, within 0.2 s + 1000 B / 1000 B/s."""
    server = await make_live_server(
        body_timeout_seconds=0.2, min_transfer_bytes_per_second=1000, response_timeout_seconds=10.0
    )
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        head = b'{"requestId": "%s", "logs": [{"timestamp": 5}' % command["requestId"].encode()
        body = head + b" " * (998 - len(head)) + b"]}"
        async with raw_upload(server, len(body)) as (reader, writer):
            await write_at_pace(writer, body, 2500, piece=25)
            status, answer = await read_answer(reader)
        assert (status, answer["status"]) == (200, "accepted")
        status, logs = await caller
        assert (status, orjson.loads(logs)["logs"]) == (200, [{"timestamp": 5}])
    assert get_metrics(server.app).uploads_died._value.get() == 0


async def test_upload_dying_after_the_camera_took_its_command_again_loses_nothing(
    make_live_server: MakeLiveServer,
) -> None:
    """The camera gave up on an upload and polled again (it got the command again)
    before the server noticed the old upload die: that death must not undo the newer
    delivery, so the callers wait for the result within the response timeout."""
    connect_timeout = 0.3
    server = await make_live_server(
        connect_timeout_seconds=connect_timeout, response_timeout_seconds=10.0
    )
    loop = asyncio.get_running_loop()
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        async with raw_upload(server, 1_000_000) as (_, writer):
            writer.write(b'{"requestId": "%s", "logs": [' % command["requestId"].encode())
            await writer.drain()
            await wait_until(lambda: server.relay.budget.in_use > 0)
            async with http.get(f"{server.url}/poll_for_command") as response:
                assert (await response.json())["requestId"] == command["requestId"]
        await wait_until(lambda: get_metrics(server.app).uploads_died._value.get() == 1)
        died = loop.time()
        # The camera works on the command it took again for longer than the connect timeout.
        done, _ = await asyncio.wait({caller}, timeout=3 * connect_timeout)
        assert not done, f"the caller was answered {caller.result()[0]} after the old upload died"
        assert loop.time() - died >= 3 * connect_timeout
        answer = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 5}]})
        assert await post_result(http, server, answer) == 200
        status, body = await caller
    assert status == 200
    assert orjson.loads(body)["logs"] == [{"timestamp": 5}]


async def test_upload_queued_behind_one_that_left_gets_the_room_there_is(
    make_live_server: MakeLiveServer,
) -> None:
    """A big upload waiting for the budget hangs up: a small one queued behind it,
    for which there is room, goes ahead at once (not when some other upload ends)."""
    budget = 1_000_000
    server = await make_live_server(
        max_upload_bytes=budget,
        max_result_bytes_in_flight=budget,
        response_timeout_seconds=10.0,
        body_timeout_seconds=30.0,
    )
    relay = server.relay
    async with ClientSession() as http:
        taken = {camera: await take_command(http, server, camera) for camera in ("a", "h", "s")}
        async with raw_upload(server, 700_000, "a") as (_, slow_writer):
            # "a" holds 70 % of the budget and sends its body slowly (here: not at all).
            head = b'{"requestId": "%s", "logs": [' % taken["a"][0]["requestId"].encode()
            slow_writer.write(head)
            await slow_writer.drain()
            await wait_until(lambda: relay.budget.in_use == 700_000)
            async with raw_upload(server, 500_000, "h") as _:
                await wait_until(lambda: relay.budget.waiting == 1)  # "h" does not fit
                small = orjson.dumps(
                    {"requestId": taken["s"][0]["requestId"], "logs": [{"timestamp": 1}]}
                )
                posted = asyncio.ensure_future(post_result(http, server, small, "s"))
                await wait_until(lambda: relay.budget.waiting == 2)  # "s" queues behind "h"
            # "h" hung up: "s" fits in what is left.
            status = await asyncio.wait_for(posted, 2.0)
            assert status == 200
            assert (await taken["s"][1])[0] == 200


def unknown_request_problem(detail: str) -> dict[str, Any]:
    return {
        "type": "urn:camrelay:problem:unknown-request",
        "title": "Not Found",
        "status": 404,
        "detail": detail,
    }


LONG_ID_DETAIL = (
    "the requestId is longer than 64 bytes, so no command has it (the server's ids are "
    "32 characters): answer a command camera 'default' received, with its requestId as given"
)


async def test_request_id_that_never_ends_is_404_after_a_small_prefix(
    make_live_server: MakeLiveServer,
) -> None:
    """50 MB announced, the requestId never closes: the 404 comes once it is past 64
    bytes, the rest is neither waited for nor kept, and the connection ends."""
    server = await make_live_server(response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        async with raw_upload(server, 50_000_000) as (reader, writer):
            writer.write(b'{"requestId": "')
            sent = len(b'{"requestId": "')
            answer = asyncio.ensure_future(read_answer(reader))
            piece = b"a" * 4096
            while not answer.done() and sent < 50_000_000:
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
                await asyncio.sleep(0)
            status, problem = await answer
            assert sent < 1_000_000
            # the rest is not read: the connection carries no other request
            assert b"\r\nConnection: close\r\n" in HEADS[-1]
            assert (status, problem) == (404, unknown_request_problem(LONG_ID_DETAIL))
            assert server.relay.budget.in_use == 0
        # The command is still open: its own result is accepted.
        body = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 2}]})
        assert await post_result(http, server, body) == 200
        assert (await caller)[0] == 200


async def test_request_id_of_65_characters_is_404(make_live_server: MakeLiveServer) -> None:
    server = await make_live_server(response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        small = orjson.dumps({"requestId": "a" * 65, "logs": []})
        # read in one go once all here, and (over 64 KiB) as it streams in
        big = orjson.dumps({"requestId": "b" * 65, "logs": [{"timestamp": 1}] * 10_000})
        for body in (small, big):
            async with http.post(
                f"{server.url}/send_logs",
                params={"cameraId": "default"},
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 404
                assert await response.json(content_type=None) == unknown_request_problem(
                    LONG_ID_DETAIL
                )
        body = orjson.dumps({"requestId": command["requestId"], "logs": []})
        assert await post_result(http, server, body) == 200
        assert (await caller)[0] == 200


async def test_unknown_request_id_of_64_characters_is_an_unknown_one(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(response_timeout_seconds=10.0)
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        unknown = "c" * 64
        async with http.post(
            f"{server.url}/send_logs",
            params={"cameraId": "default"},
            data=orjson.dumps({"requestId": unknown, "logs": []}),
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 404
            assert await response.json(content_type=None) == unknown_request_problem(
                f"no command {unknown!r} is awaiting a result from camera 'default': "
                "it is unknown, expired, or was issued to another camera"
            )
        body = orjson.dumps({"requestId": command["requestId"], "logs": []})
        assert await post_result(http, server, body) == 200
        assert (await caller)[0] == 200


TOO_MANY_UPLOADS = {
    "type": "urn:camrelay:problem:too-many-uploads",
    "title": "Too Many Requests",
    "status": 429,
    "detail": (
        "camera 'default' already has 2 results being uploaded, the most it may have with "
        "1 unanswered command(s) (one per command, plus one): let an upload finish or close "
        "its connection, then retry"
    ),
}


async def test_uploads_past_one_per_unanswered_command_plus_one_get_429(
    make_live_server: MakeLiveServer,
) -> None:
    server = await make_live_server(
        response_timeout_seconds=10.0, connect_timeout_seconds=10.0, body_timeout_seconds=30.0
    )
    relay = server.relay
    async with ClientSession() as http:
        command, caller = await take_command(http, server)
        session = relay.session("default")
        assert session is not None
        head = b'{"requestId": "%s", "logs": [' % command["requestId"].encode()
        answer = orjson.dumps({"requestId": command["requestId"], "logs": [{"timestamp": 5}]})
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(raw_upload(server, 10_000))
            second = await stack.enter_async_context(raw_upload(server, 10_000))
            for _, writer in (first, second):
                writer.write(head)
                await writer.drain()
            await wait_until(lambda: session.uploads_in_flight == 2)
            await wait_until(lambda: relay.budget.in_use == 20_000)
            async with http.post(
                f"{server.url}/send_logs",
                params={"cameraId": "default"},
                data=answer,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == "1"
                assert await response.json(content_type=None) == TOO_MANY_UPLOADS
            # refused before its body was read and before any budget was reserved
            assert relay.budget.in_use == 20_000
            assert session.uploads_in_flight == 2
            # One of the two hangs up: a new upload is taken.
            first[1].close()
            await wait_until(lambda: session.uploads_in_flight == 1)
            assert await post_result(http, server, answer) == 200
            status, logs = await caller
            assert (status, orjson.loads(logs)["logs"]) == (200, [{"timestamp": 5}])
        await wait_until(lambda: session.uploads_in_flight == 0)
    assert relay.budget.in_use == 0


async def test_an_upload_cut_off_by_a_graceful_stop_is_answered_at_once() -> None:
    """aiohttp reads nothing more once a graceful stop begins: an upload whose body has
    not all come is answered 503 then, not left without an answer until the stop's
    timeout cancels it."""
    settings = settings_for(shutdown_timeout_seconds=60.0)
    async with server_to_stop(settings) as (runner, server), ClientSession() as http:
        poll = asyncio.ensure_future(http.get(f"{server.url}/poll_for_command"))
        await wait_until(camera_polling(server.relay))
        caller = asyncio.ensure_future(http.get(f"{server.url}/logs"))
        async with await poll as response:
            command = await response.json()
        logs = [{"timestamp": i} for i in range(20_000)]
        body = orjson.dumps({"requestId": command["requestId"], "logs": logs})
        async with raw_upload(server, len(body)) as (reader, writer):
            writer.write(body[:100_000])
            await writer.drain()
            await wait_until(lambda: server.relay.budget.in_use >= 100_000)
            stop = asyncio.ensure_future(runner.cleanup())
            await wait_until(lambda: server.service.closed)
            # The rest is not sent: aiohttp would not read it (the stop has begun),
            # and once the server has answered and closed, bytes sent to it would
            # reset the connection before the answer is read.
            async with asyncio.timeout(5):
                head = await reader.readuntil(HEADERS_DONE)
                problem = orjson.loads(await reader.read())
                await stop
        async with await caller as answer:
            assert answer.status == 503
        assert len(get_uploads(runner.app)) == 0
    status_line, *header_lines = head.decode().split("\r\n")
    assert status_line == "HTTP/1.1 503 Service Unavailable"
    headers = dict(line.split(": ", 1) for line in header_lines if line)
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["Connection"] == "close"
    assert headers["Retry-After"].isdigit()
    assert problem["detail"] == (
        "the server is shutting down and reads no more of this body; poll again "
        "(a command left unanswered is sent again)"
    )
