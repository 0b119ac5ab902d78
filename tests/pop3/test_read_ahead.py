"""RETR read-ahead (pop3/readahead.py): a download in order, out of order, with messages
larger than ``[pop3] read_ahead``, with dot lines, and with messages expunged over IMAP
before and after they were read ahead. Every RETR must return exactly the stored message.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, User, message

#: Small, so that a few test messages fill it and some are larger than it.
READ_AHEAD = 2048


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        Path(tmp_path_factory.mktemp("pop3-read-ahead")),
        services=("pop3", "imap"),
        config={"pop3.read_ahead": str(READ_AHEAD)},
    )
    try:
        yield srv
    finally:
        srv.stop()


def fill(server: MsgstoreServer, label: str, sizes: list[int]) -> tuple[User, list[bytes]]:
    """A POP account with one message per size (about that many octets), some with lines
    that start with dots; returns the account and the stored messages in order."""
    user = server.admin.add_user(label, kind="pop")
    for i, size in enumerate(sizes):
        line = f".line {i} starting with a dot\r\n" if i % 3 == 0 else f"line {i}\r\n"
        text = message(f"message {i}", line * max(1, size // len(line)))
        server.admin.deliver(user.name, text)
    stored = [server.admin.body(user.name, m.uid) for m in server.admin.inbox(user.name)]
    return user, stored


def login(server: MsgstoreServer, user: User) -> LineClient:
    client = LineClient(server.port("pop3.listen"))
    client.read_line()
    client.command(f"USER {user.name}")
    assert client.command(f"PASS {user.password}").startswith(b"+OK")
    return client


def retr(client: LineClient, n: int) -> bytes:
    """RETR n; the message with the byte-stuffing undone. Fails on -ERR."""
    first = client.command(f"RETR {n}")
    assert first.startswith(b"+OK "), first
    size = int(first.split()[1])
    lines = []
    while (line := client.read_line()) != b".":
        assert line is not None
        lines.append(line[1:] if line.startswith(b".") else line)
    text = b"".join(line + b"\r\n" for line in lines)
    assert len(text) == size, (n, len(text), size)
    return text


def test_download_in_order_then_out_of_order(server: MsgstoreServer) -> None:
    # 300-octet messages (several per read-ahead), two larger than READ_AHEAD (streamed).
    sizes = [300, 300, 5000, 300, 300, 300, 300, 300, 3000, 300, 300, 300]
    user, stored = fill(server, "order", sizes)
    with login(server, user) as client:
        for n in range(1, len(stored) + 1):
            assert retr(client, n) == stored[n - 1], n
            assert client.command(f"DELE {n}").startswith(b"+OK")
        assert client.command("RSET").startswith(b"+OK")
        for n in (7, 2, 12, 11, 1, 1, 3):
            assert retr(client, n) == stored[n - 1], n
        assert client.command("DELE 5").startswith(b"+OK")
        assert retr(client, 4) == stored[3]
        assert client.command("RETR 5") == b"-ERR Message is deleted"
        assert retr(client, 6) == stored[5]
        assert client.command("QUIT").startswith(b"+OK")
    assert len(server.admin.inbox(user.name)) == len(stored) - 1


def imap_expunge(server: MsgstoreServer, user: User, seqs: str) -> None:
    """Expunge messages of the account's INBOX over IMAP (a pop account cannot log in to
    IMAP: make it an imap account for the moment)."""
    server.admin.set_kind(user.name, "imap")
    try:
        client = imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10)
        client.login(user.name, user.password)
        client.select("INBOX")
        client.store(seqs, "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()
        client.logout()
    finally:
        server.admin.set_kind(user.name, "pop")


def test_messages_expunged_over_imap_before_they_are_read_ahead(server: MsgstoreServer) -> None:
    user, stored = fill(server, "gone", [300] * 8)
    with login(server, user) as client:
        imap_expunge(server, user, "2,5")
        assert retr(client, 1) == stored[0]
        assert client.command("RETR 2") == b"-ERR Message was removed by another session"
        assert retr(client, 3) == stored[2]
        assert retr(client, 4) == stored[3]
        assert client.command("RETR 5") == b"-ERR Message was removed by another session"
        for n in (6, 7, 8):
            assert retr(client, n) == stored[n - 1]
        assert client.command("QUIT").startswith(b"+OK")


def test_read_ahead_off_streams_every_message(tmp_path: Path) -> None:
    srv = MsgstoreServer.start(tmp_path, services=("pop3",), config={"pop3.read_ahead": "0"})
    try:
        user, stored = fill(srv, "off", [300, 300, 3000])
        with login(srv, user) as client:
            for n in (1, 2, 3, 1):
                assert retr(client, n) == stored[n - 1]
            assert client.command("QUIT").startswith(b"+OK")
    finally:
        srv.stop()
