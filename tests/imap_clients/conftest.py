"""Real clients against a real ``msgstore serve`` (STYLE.md §14.5).

One server with IMAP on free loopback ports serves the whole package; every test creates its
own users (unique real names), so tests are isolated on it. Helpers open imapclient sessions
and raw line connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from imapclient import IMAPClient  # type: ignore[import-untyped]

from tests.conversations.harness import LineClient, MsgstoreServer, User


@pytest.fixture(scope="session")
def clients_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("imap-clients"),
        services=("imap",),
        config={"store.max_message_size": "1M", "imap.max_connections_per_user": 50},
    )
    try:
        yield server
    finally:
        server.stop()


def client(server: MsgstoreServer, user: User | None = None) -> IMAPClient:
    """An imapclient session on the plain port (loopback may log in without TLS)."""
    c = IMAPClient("127.0.0.1", port=server.port("imap.listen"), ssl=False, timeout=15)
    if user is not None:
        c.login(user.name, user.password)
    return c


def raw(server: MsgstoreServer, user: User | None = None) -> LineClient:
    """A line connection past the greeting, logged in as ``user`` if given."""
    c = LineClient(server.port("imap.listen"))
    greeting = c.read_line()
    assert greeting is not None
    assert greeting.startswith(b"* OK"), greeting
    if user is not None:
        reply = exchange(c, b"a0", f"LOGIN {user.name} {user.password}".encode())
        assert reply[-1].startswith(b"a0 OK"), reply
    return c


def until_tagged(c: LineClient, tag: bytes) -> list[bytes]:
    """Every line up to and including the tagged reply for ``tag``."""
    lines: list[bytes] = []
    while True:
        line = c.read_line()
        assert line is not None, f"closed before {tag!r}; got {lines[-5:]}"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def exchange(c: LineClient, tag: bytes, command: bytes) -> list[bytes]:
    c.send(tag + b" " + command + b"\r\n")
    return until_tagged(c, tag)
