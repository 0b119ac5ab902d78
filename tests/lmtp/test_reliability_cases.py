"""RELIABILITY.md §7 cases 26 and 33 over real LMTP: a MIME tree 10,000 levels deep, and
kill -9 during a multi-recipient transaction after the client read some replies."""

from __future__ import annotations

import imaplib
import re
import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import MsgstoreServer, message

DEPTH = 10_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(tmp_path, services=("lmtp", "imap"))
    try:
        yield srv
    finally:
        srv.stop()


def nested(depth: int) -> bytes:
    head = (
        "From: deep@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    )
    opening = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    inner = f"--b{depth}\r\nContent-Type: text/plain\r\n\r\nbottom\r\n--b{depth}--\r\n"
    closing = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    return (head + opening + inner + closing).encode()


def max_paren_depth(data: bytes) -> int:
    depth = deepest = 0
    for byte in data:
        if byte == 0x28:
            depth += 1
            deepest = max(deepest, depth)
        elif byte == 0x29:
            depth -= 1
    return deepest


def test_case_26_mime_nested_10000_deep(server: MsgstoreServer) -> None:
    user = server.admin.add_user("deep")
    data = nested(DEPTH)
    started = time.monotonic()
    with smtplib.LMTP("127.0.0.1", server.port("lmtp.listen"), timeout=60) as client:
        assert client.sendmail("s@example.org", [user.name], data) == {}
    assert time.monotonic() - started < 30
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap.listen"))
    try:
        imap.login(user.name, user.password)
        imap.select("INBOX", readonly=True)
        started = time.monotonic()
        typ, fetched = imap.fetch("1", "(BODYSTRUCTURE)")
        assert typ == "OK"
        assert time.monotonic() - started < 10
        response = b"".join(
            p if isinstance(p, bytes) else b"".join(p) for p in fetched if p is not None
        )
        # Truncated like Dovecot's 100-level cap, not 10,000 levels of parentheses.
        assert max_paren_depth(response) <= 110
        typ, whole = imap.fetch("1", "(RFC822.SIZE)")
        assert re.search(rb"RFC822\.SIZE (\d+)", whole[0] if isinstance(whole[0], bytes) else b"")
    finally:
        imap.logout()
    assert "RecursionError" not in server.log


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def test_case_33_kill_9_after_some_per_recipient_replies(server: MsgstoreServer) -> None:
    """Every reply is written only once the message is durable for every recipient, so a
    kill -9 after the client read the first reply finds it stored for all of them; the MTA's
    retry of the recipients it has no reply for gives those a second copy (documented in
    docs/delivery.md: no duplicate-delivery database), never the acknowledged one."""
    users = [server.admin.add_user(f"r{n}") for n in range(3)]
    data = message("case 33")
    sock = socket.create_connection(("127.0.0.1", server.port("lmtp.listen")), timeout=10)
    buffer = bytearray()
    try:
        assert read_line(sock, buffer).startswith(b"220")
        commands = [b"LHLO mta.example", b"MAIL FROM:<s@example.org>"]
        commands += [f"RCPT TO:<{u.name}>".encode() for u in users]
        sock.sendall(b"".join(c + b"\r\n" for c in commands) + b"DATA\r\n")
        replies: list[bytes] = []
        while len(replies) < 1 + 1 + len(users) + 1:
            line = read_line(sock, buffer)
            if not line.startswith(b"250-"):
                replies.append(line)
        assert replies[-1].startswith(b"354"), replies
        sock.sendall(data + b".\r\n")
        first = read_line(sock, buffer)  # the first recipient's reply ...
        assert first.startswith(b"250 2.0.0"), first
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)  # ... and the server dies
        server.proc.wait()
    finally:
        sock.close()
    server.admin.close()
    server._admin = None
    (server.data_dir / "run" / "msgstore.pid").unlink()
    server._spawn()
    for user in users:
        assert len(server.admin.inbox(user.name)) == 1, user
    # The MTA retries the recipients it saw no reply for.
    with smtplib.LMTP("127.0.0.1", server.port("lmtp.listen"), timeout=10) as client:
        for user in users[1:]:
            assert client.sendmail("s@example.org", [user.name], data) == {}
    assert len(server.admin.inbox(users[0].name)) == 1  # acknowledged: never a duplicate
    for user in users[1:]:
        assert len(server.admin.inbox(user.name)) == 2  # unacknowledged: a duplicate, no loss
