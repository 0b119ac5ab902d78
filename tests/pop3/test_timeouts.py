"""Timeouts (RELIABILITY.md §7 case 19), on a server with [pop3] timeouts scaled down.

Before login each line must be complete within ``auth_timeout`` (the deadline covers the whole
line, so a client dripping one octet at a time is closed too), after login within
``idle_timeout``; a TLS handshake that never finishes is cut at ``auth_timeout``. A session
closed for inactivity deletes nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, message

AUTH_TIMEOUT = 1
IDLE_TIMEOUT = 2


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("timeouts"),
        config={"pop3.auth_timeout": AUTH_TIMEOUT, "pop3.idle_timeout": IDLE_TIMEOUT},
    )
    try:
        yield srv
    finally:
        srv.stop()


def closed_after(client: LineClient, start: float) -> tuple[float, list[bytes]]:
    """Seconds from ``start`` until the server closed the connection, and what it said before.
    ``start`` is taken before what starts the server's timer (connecting, sending a command),
    so a client slow to read the reply cannot measure less than the server waited."""
    lines = []
    while (line := client.read_line()) is not None:
        lines.append(line)
    return time.monotonic() - start, lines


def test_silent_client_before_login_is_closed(slow_server: MsgstoreServer) -> None:
    start = time.monotonic()
    with LineClient(slow_server.port("pop3.listen")) as client:
        assert client.read_line() is not None
        elapsed, lines = closed_after(client, start)
    assert lines == [b"-ERR Disconnected for inactivity"]
    assert AUTH_TIMEOUT - 0.2 <= elapsed < AUTH_TIMEOUT + 1.5


def test_dripping_client_is_closed_at_the_line_deadline(slow_server: MsgstoreServer) -> None:
    with LineClient(slow_server.port("pop3.listen")) as client:
        assert client.read_line() is not None
        client.sock.settimeout(0.2)
        start = time.monotonic()
        received = b""
        while time.monotonic() - start < AUTH_TIMEOUT + 3:
            try:
                client.sock.sendall(b"C")  # one octet of a line that never ends
                data = client.sock.recv(100)
            except TimeoutError:
                continue
            except OSError:
                break
            received += data
            if not data:
                break
        elapsed = time.monotonic() - start
    assert received in (b"", b"-ERR Disconnected for inactivity\r\n")
    assert elapsed < AUTH_TIMEOUT + 1.5


def test_idle_session_after_login_is_closed_and_deletes_nothing(
    slow_server: MsgstoreServer,
) -> None:
    alice = slow_server.admin.add_user("alice", kind="pop")
    slow_server.admin.deliver(alice.name, message("kept"))
    with LineClient(slow_server.port("pop3.listen")) as client:
        client.read_line()
        client.command(f"USER {alice.name}")
        assert client.command(f"PASS {alice.password}").startswith(b"+OK Logged in")
        assert client.command("DELE 1") == b"+OK Message 1 deleted"
        time.sleep(AUTH_TIMEOUT + 0.3)  # longer than the pre-login deadline: still open
        start = time.monotonic()
        assert client.command("NOOP") == b"+OK"
        elapsed, lines = closed_after(client, start)
    assert lines == [b"-ERR Disconnected for inactivity"]
    assert IDLE_TIMEOUT - 0.2 <= elapsed < IDLE_TIMEOUT + 1.5
    assert len(slow_server.admin.inbox(alice.name)) == 1


def test_unfinished_tls_handshake_is_cut(slow_server: MsgstoreServer) -> None:
    with socket.create_connection(("127.0.0.1", slow_server.port("pop3.tls_listen"))) as sock:
        sock.settimeout(AUTH_TIMEOUT + 5)
        start = time.monotonic()
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, never finished
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - start
    assert data == b""
    assert elapsed < AUTH_TIMEOUT + 3
