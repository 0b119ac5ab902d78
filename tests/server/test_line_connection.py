"""``net/connection.py`` on real loopback sockets: the per-connection read deadline and the
batched reply writes that POP3, LMTP, poppassd and socketmap rely on.

The deadline is kept by one timer per connection (not one ``asyncio.timeout`` per line), so
these tests pin what that must still do: a shorter deadline after a longer one, a longer one
after a shorter one, a deadline after many quick reads, and a slow line cut at its deadline.
Replies written while pipelined commands are read leave together, in order, and nothing
written before the session ends is lost.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from msgstore.config import HostPort
from msgstore.net.connection import Connection, ConnectionLimits, LineService
from msgstore.net.listener import Listener

Handler = Callable[[Connection], Awaitable[None]]


class Harness:
    def __init__(self) -> None:
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.handler: Handler | None = None
        self.port = 0


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()

    async def handler(conn: Connection) -> None:
        assert h.handler is not None
        try:
            await h.handler(conn)
        except BaseException as exc:
            await h.events.put(exc)
            raise

    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    h.port = sock.getsockname()[1]
    listener = Listener("pop3.listen", HostPort("127.0.0.1", 0), sock)
    service = await LineService.start(
        "test", [listener], handler, limits=ConnectionLimits(max_line_octets=255), tls=None
    )
    try:
        yield h
    finally:
        await service.close()
        sock.close()


async def connect(h: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", h.port)


async def test_a_shorter_deadline_after_a_longer_one_is_kept(harness: Harness) -> None:
    async def handler(conn: Connection) -> None:
        await harness.events.put(await conn.read_line(30))
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.read_line(0.3)
        await harness.events.put(time.monotonic() - start)

    harness.handler = handler
    _, writer = await connect(harness)
    writer.write(b"FIRST\r\n")
    assert await harness.events.get() == b"FIRST"
    waited = await asyncio.wait_for(harness.events.get(), 10)
    assert isinstance(waited, float)
    assert 0.25 <= waited < 5  # not the 30 s of the first read
    writer.close()


async def test_a_longer_deadline_after_a_shorter_one_is_not_cut_short(
    harness: Harness,
) -> None:
    async def handler(conn: Connection) -> None:
        await harness.events.put(await conn.read_line(0.2))
        await harness.events.put(await conn.read_line(30))

    harness.handler = handler
    _, writer = await connect(harness)
    writer.write(b"FIRST\r\n")
    assert await harness.events.get() == b"FIRST"
    await asyncio.sleep(0.8)  # well past the first read's deadline
    writer.write(b"SECOND\r\n")
    assert await asyncio.wait_for(harness.events.get(), 10) == b"SECOND"
    writer.close()


async def test_the_deadline_holds_after_many_quick_reads(harness: Harness) -> None:
    async def handler(conn: Connection) -> None:
        for _ in range(200):
            line = await conn.read_line(0.4)
            assert isinstance(line, bytes)
            conn.write(line + b"\r\n")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.read_line(0.4)
        await harness.events.put(time.monotonic() - start)

    harness.handler = handler
    reader, writer = await connect(harness)
    for i in range(200):  # one at a time: every read waits for its line
        writer.write(f"L{i}\r\n".encode())
        assert await asyncio.wait_for(reader.readline(), 10) == f"L{i}\r\n".encode()
    waited = await asyncio.wait_for(harness.events.get(), 10)
    assert isinstance(waited, float)
    assert 0.35 <= waited < 5
    writer.close()


async def test_a_dripping_line_is_cut_at_its_deadline(harness: Harness) -> None:
    async def handler(conn: Connection) -> None:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            await conn.read_line(0.6)
        await harness.events.put(time.monotonic() - start)

    harness.handler = handler
    _, writer = await connect(harness)
    for _ in range(20):  # one octet every 0.1 s: input keeps coming, the line never ends
        writer.write(b"x")
        await asyncio.sleep(0.1)
        if not harness.events.empty():
            break
    waited = await asyncio.wait_for(harness.events.get(), 10)
    assert isinstance(waited, float)
    assert 0.55 <= waited < 1.8
    writer.close()


async def test_replies_to_pipelined_lines_arrive_in_order_and_complete(
    harness: Harness,
) -> None:
    count = 2000

    async def handler(conn: Connection) -> None:
        for _ in range(count):
            line = await conn.read_line(30)
            assert isinstance(line, bytes)
            conn.write(b"+OK " + line + b"\r\n")
            await conn.drain()
        conn.write(b"+OK bye\r\n")  # written just before the session ends: still sent

    harness.handler = handler
    reader, writer = await connect(harness)
    writer.write(b"".join(f"NOOP {i}\r\n".encode() for i in range(count)))
    for i in range(count):
        assert await asyncio.wait_for(reader.readline(), 10) == f"+OK NOOP {i}\r\n".encode()
    assert await asyncio.wait_for(reader.readline(), 10) == b"+OK bye\r\n"
    assert await asyncio.wait_for(reader.read(), 10) == b""  # then closed
    writer.close()


async def test_large_replies_are_handed_over_with_backpressure(harness: Harness) -> None:
    """A client that does not read: the session blocks in drain instead of queueing
    everything (at most FLUSH_OCTETS are held before the transport's own limit applies)."""
    piece = b"x" * 1022 + b"\r\n"

    async def handler(conn: Connection) -> None:
        sent = 0
        while True:
            conn.write(piece)
            sent += len(piece)
            try:
                await asyncio.wait_for(conn.drain(), 1.0)
            except TimeoutError:
                await harness.events.put(sent)
                return

    harness.handler = handler
    _, writer = await connect(harness)
    sent = await asyncio.wait_for(harness.events.get(), 30)
    assert isinstance(sent, int)
    assert sent < 64 * 1024 * 1024  # stopped by backpressure, not by memory
    writer.close()
