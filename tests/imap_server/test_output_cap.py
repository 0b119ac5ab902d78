"""RELIABILITY.md §7 case 13: chunking never changes the answers, and a client that does not
read its answers is stopped at the session's output cap and closed at the output deadline.

- The same 600 commands sent in one write and (the first 120 of them) one octet per send get
  byte-identical responses (the framer resumes anywhere; Dovecot's fuzz target checks the
  same property).
- ``FETCH 1:* BODY.PEEK[]`` of ~12 MB from a client with a tiny receive window that never
  reads: the server's memory stays flat (it waits for the client instead of queueing the
  mailbox), another session is served meanwhile, and after ``[imap] output_timeout`` (2 s
  here) the connection is closed without the tagged reply.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_server.test_session import exchange, login_raw

OUTPUT_TIMEOUT_S = 2.0
MESSAGES = 1500
BODY_OCTETS = 8000  # below the writer's inline-literal size: the path without sendfile
CLOSED = "output not read by the client"  # what the server logs at the output deadline


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("imap-output"),
        services=("imap",),
        config={"imap.output_timeout": f"{OUTPUT_TIMEOUT_S:g}s"},
    )
    try:
        yield server
    finally:
        server.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _commands(count: int) -> list[bytes]:
    shapes = [
        b"NOOP",
        b"FETCH 1:3 (UID RFC822.SIZE ENVELOPE)",
        b"UID SEARCH ALL",
        b'ID ("name" {4+}\r\ntest)',
        b'LIST "" INBOX',
        b"UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        b"STATUS INBOX (MESSAGES UIDNEXT)",
        b"FETCH 3 BODYSTRUCTURE",
    ]
    return [b"t%d %s\r\n" % (n, shapes[n % len(shapes)]) for n in range(count)]


def _responses(c: LineClient, last_tag: bytes) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        line = c.read_line()
        assert line is not None, lines[-3:]
        lines.append(line)
        if line.startswith(last_tag + b" "):
            return lines


def _examined(server: MsgstoreServer, user: User) -> LineClient:
    c = login_raw(server, user)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert exchange(c, b"e1", b"EXAMINE INBOX")[-1].startswith(b"e1 OK")
    return c


def test_one_write_and_one_octet_per_send_answer_alike(capped: MsgstoreServer) -> None:
    user = capped.admin.add_user("chunks")
    for n in range(3):
        capped.admin.deliver(user.name, message(f"chunk {n}", f"Body {n}.\r\n"))
    commands = _commands(600)
    with _examined(capped, user) as c:
        c.send(b"".join(commands))
        whole = _responses(c, b"t599")
    assert sum(1 for x in whole if x.split(b" ", 1)[0].startswith(b"t")) == 600
    assert all(x.split(b" ")[1] == b"OK" for x in whole if x.startswith(b"t")), whole[-5:]
    few = 120
    with _examined(capped, user) as c:
        for octet in b"".join(commands[:few]):
            c.send(bytes([octet]))
        dripped = _responses(c, b"t%d" % (few - 1))
    assert dripped == whole[: len(dripped)]


def test_a_client_that_never_reads_is_capped_then_closed(capped: MsgstoreServer) -> None:
    user = capped.admin.add_user("stalled")
    body = ("x" * 78 + "\r\n") * (BODY_OCTETS // 80)
    capped.admin.deliver_many(user.name, (message(f"big {n}", body) for n in range(MESSAGES)))
    assert capped.proc is not None
    pid = capped.proc.pid
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: tiny window
    sock.settimeout(30)
    sock.connect(("127.0.0.1", capped.port("imap.listen")))
    c = LineClient.__new__(LineClient)
    c.sock, c.buffer = sock, b""
    with c:
        assert c.read_line() is not None
        assert exchange(c, b"a1", f"LOGIN {user.name} {user.password}".encode())[-1].startswith(
            b"a1 OK"
        )
        assert exchange(c, b"a2", b"EXAMINE INBOX")[-1].startswith(b"a2 OK")
        before = _rss_kib(pid)
        closed_before = capped.log.count(CLOSED)
        c.send(b"a3 FETCH 1:* BODY.PEEK[]\r\na4 NOOP\r\n")
        started = time.monotonic()
        grown = 0
        # Not reading at all, until the server logs the close at the output deadline.
        while capped.log.count(CLOSED) == closed_before:
            assert time.monotonic() - started < 20, "not closed at the output deadline"
            time.sleep(0.25)
            grown = max(grown, _rss_kib(pid) - before)
        # Meanwhile another session is served.
        with login_raw(capped, capped.admin.add_user("other")) as other:
            assert exchange(other, b"b1", b"NOOP")[-1].startswith(b"b1 OK")
        # By now the connection was closed at the output deadline: what is left ends early.
        lines: list[bytes] = []
        while (line := c.read_line()) is not None:
            lines.append(line)
        took = time.monotonic() - started
    output = MESSAGES * BODY_OCTETS
    assert grown * 1024 < output // 4, f"server RSS grew {grown} KiB for {output} octets"
    assert not any(x.startswith((b"a3 ", b"a4 ")) for x in lines), lines[-3:]
    assert took < 20, took
