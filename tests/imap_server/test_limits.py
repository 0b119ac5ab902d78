"""Every ``[imap]`` limit with small configured values, each on a dedicated server
(RELIABILITY.md §3; §7 case 18 connection limits and case 19 timeouts).

Timing assertions are generous (the machine is shared): a deadline of T seconds must not close
a connection much earlier than T, and must close it well within 15 s.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, User
from tests.imap_server.test_session import exchange, login_raw, raw, until_tagged


def _server(root: Path, settings: dict[str, object]) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(root, services=("imap",), config=settings)
    try:
        yield server
    finally:
        server.stop()


def read_to_end(client: LineClient) -> list[bytes]:
    lines: list[bytes] = []
    while (line := client.read_line()) is not None:
        lines.append(line)
    return lines


# --- parser limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    yield from _server(
        tmp_path_factory.mktemp("imap-small"),
        {
            "imap.max_line": "1K",
            "imap.max_literal": "2K",
            "imap.append_limit": "4K",
            "imap.literal_minus_max": "1K",
            "imap.max_literals": 3,
            "imap.max_nesting": 4,
            "imap.max_bad_commands": 3,
        },
    )


def test_max_line(small: MsgstoreServer) -> None:
    with raw(small) as c:
        assert c.command(b"a1 NOOP " + b"x" * 900).startswith(b"a1 BAD")  # too many args
        c.send(b"a2 NOOP " + b"x" * 1100 + b"\r\n")
        lines = read_to_end(c)
        assert lines[0].startswith(b"a2 BAD"), lines
        assert b"too long" in lines[0]
        assert lines[-1].startswith(b"* BYE")


def test_max_literal_and_append_limit(small: MsgstoreServer) -> None:
    user = small.admin.add_user("lit")
    with login_raw(small, user) as c:
        caps = exchange(c, b"a1", b"CAPABILITY")[0]
        assert b"APPENDLIMIT=4096" in caps
        assert b"LITERAL-" in caps
        exchange(c, b"a2", b"SELECT INBOX")
        # a synchronising literal over max_literal: NO [TOOBIG] instead of "+"
        assert c.command(b"a3 SEARCH TEXT {3000}").startswith(b"a3 NO [TOOBIG]")
        assert c.command(b"a4 SEARCH TEXT {2000}").startswith(b"+ ")
        c.send(b"y" * 2000 + b"\r\n")
        assert until_tagged(c, b"a4")[-1].startswith(b"a4 OK")
        # APPEND: up to append_limit
        assert c.command(b"a5 APPEND INBOX {5000}").startswith(b"a5 NO [TOOBIG]")
        body = b"Subject: fits\r\n\r\n" + b"z" * 3000 + b"\r\n"
        assert c.command(b"a6 APPEND INBOX {%d}" % len(body)).startswith(b"+ ")
        c.send(body + b"\r\n")
        assert until_tagged(c, b"a6")[-1].startswith(b"a6 OK")
        # too many literals in one command
        c.send(b"a7 LOGIN {1}\r\n")
        assert c.read_line() is not None
        c.send(b"a{1}\r\n")
        assert c.read_line() is not None
        c.send(b"b{1}\r\n")
        assert c.read_line() is not None
        c.send(b"c{1}\r\n")
        assert c.read_line() == b"a7 BAD Too many literals in command"
        # nesting depth 4: three levels of SEARCH groups pass, five do not
        assert exchange(c, b"a8", b"SEARCH (((ALL)))")[-1].startswith(b"a8 OK")
        assert exchange(c, b"a9", b"SEARCH (((((ALL)))))")[-1].startswith(b"a9 BAD")
        # a non-synchronising literal over literal_minus_max: BAD [TOOBIG] and BYE
        c.send(b"b1 SEARCH TEXT {1500+}\r\n" + b"q" * 1500 + b"\r\n")
        lines = read_to_end(c)
        assert lines[0].startswith(b"b1 BAD [TOOBIG]"), lines
        assert lines[-1].startswith(b"* BYE")


def test_max_bad_commands(small: MsgstoreServer) -> None:
    with raw(small) as c:
        c.send(b"x1 FROB\r\nx2 FROB\r\nx3 FROB\r\nx4 NOOP\r\n")
        lines = read_to_end(c)
        assert sum(1 for x in lines if b" BAD " in x) == 3
        assert lines[-1].startswith(b"* BYE")
        assert not any(x.startswith(b"x4 ") for x in lines)


# --- connection limits (case 18) --------------------------------------------------------------


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    yield from _server(
        tmp_path_factory.mktemp("imap-counted"),
        {"imap.max_connections_per_user": 3, "imap.max_connections_per_ip": 4},
    )


def _kill(client: LineClient) -> None:
    """Close with a TCP RST, as a killed client would."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def _eventually(check: object, timeout: float = 15.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def _greeting(server: MsgstoreServer) -> tuple[LineClient, bytes]:
    c = LineClient(server.port("imap.listen"))
    line = c.read_line()
    return c, line or b""


def _all_slots_free(server: MsgstoreServer, user: User) -> bool:
    """4 pre-login connections and 3 logins of ``user`` all admitted."""
    clients = []
    try:
        for _ in range(4):
            c, greeting = _greeting(server)
            clients.append(c)
            if not greeting.startswith(b"* OK"):
                return False
        for c in clients[:3]:
            if not c.command(f"l LOGIN {user.name} {user.password}").startswith(b"l OK"):
                return False
        return True
    finally:
        for c in clients:
            c.close()


def test_connections_per_user_and_ip(counted: MsgstoreServer) -> None:
    alice = counted.admin.add_user("alice")
    bob = counted.admin.add_user("bob")
    sessions = [login_raw(counted, alice) for _ in range(3)]
    try:
        with raw(counted) as fourth:
            reply = fourth.command(f"a1 LOGIN {alice.name} {alice.password}")
            assert reply.startswith(b"a1 NO [LIMIT]"), reply
            # another account from the same address is not affected
            assert fourth.command(f"a2 LOGIN {bob.name} {bob.password}").startswith(b"a2 OK")
        # logged-in connections do not use the address's pre-login slots
        waiting = [_greeting(counted) for _ in range(4)]
        assert all(g.startswith(b"* OK") for _, g in waiting)
        extra, greeting = _greeting(counted)
        with extra:
            assert greeting.startswith(b"* BYE [LIMIT]"), greeting
            assert extra.read_line() is None
        for c, _ in waiting:
            c.close()
    finally:
        for s in sessions:
            _kill(s)
    # every slot comes back once the server has seen the disconnects
    _eventually(lambda: _all_slots_free(counted, alice))


def test_no_leak_after_many_connect_kill_cycles(counted: MsgstoreServer) -> None:
    alice = counted.admin.add_user("cycler")
    port = counted.port("imap.listen")
    for n in range(600):
        c = LineClient(port)
        if n % 3 == 1:
            c.read_line()
            c.send(b"a1 NOOP")  # half a command
        elif n % 3 == 2 and n < 150:
            c.read_line()
            c.command(f"a1 LOGIN {alice.name} {alice.password}")
        _kill(c)
    _eventually(lambda: _all_slots_free(counted, alice), timeout=30)
    assert "session failed" not in counted.log


# --- timeouts (case 19) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    yield from _server(
        tmp_path_factory.mktemp("imap-timed"),
        {
            "imap.auth_timeout": "2s",
            "imap.idle_timeout": "4s",
            "imap.idle_keepalive": "1s",
            "imap.command_timeout": "2s",
            "imap.tls_handshake_timeout": "2s",
        },
    )


def _closed_after(client: LineClient, start: float) -> tuple[float, list[bytes]]:
    """Seconds from ``start`` (taken before the client sent what starts the server's timer:
    the time to read the reply, which a loaded machine stretches, is not taken off) to the
    end of the connection, and what was read until then."""
    lines = read_to_end(client)
    return time.monotonic() - start, lines


def test_preauth_timeout(timed: MsgstoreServer) -> None:
    start = time.monotonic()
    with raw(timed) as c:
        c.sock.settimeout(20)
        took, lines = _closed_after(c, start)
        assert 1.0 < took < 15, took
        assert lines[-1].startswith(b"* BYE"), lines


def test_postauth_idle_timeout_is_longer(timed: MsgstoreServer) -> None:
    user = timed.admin.add_user("idler")
    start = time.monotonic()
    with login_raw(timed, user) as c:
        c.sock.settimeout(20)
        took, lines = _closed_after(c, start)
        assert 3.0 < took < 15, took
        assert lines[-1].startswith(b"* BYE"), lines


def test_dripping_client_is_closed_at_the_command_deadline(timed: MsgstoreServer) -> None:
    user = timed.admin.add_user("dripper")
    with login_raw(timed, user) as c:
        c.sock.settimeout(20)
        start = time.monotonic()
        closed = False
        for octet in b"a1 SELECT INBOX\r\n":
            try:
                c.send(bytes([octet]))
            except OSError:
                closed = True
                break
            time.sleep(0.7)
            c.sock.setblocking(False)
            try:
                data = c.sock.recv(4096)
            except BlockingIOError:
                data = None
            finally:
                c.sock.setblocking(True)
                c.sock.settimeout(20)
            if data is not None:
                c.buffer += data
                closed = True
                break
        lines = read_to_end(c) if closed else []
        took = time.monotonic() - start
        assert closed, "the command completed"
        assert any(b"BYE Command not completed in time" in x for x in lines), lines
        assert not any(x.startswith(b"a1 ") for x in lines)
        assert took < 15


def test_idle_keepalive_then_autologout(timed: MsgstoreServer) -> None:
    user = timed.admin.add_user("idle")
    with login_raw(timed, user) as c:
        c.sock.settimeout(20)
        exchange(c, b"a1", b"SELECT INBOX")
        start = time.monotonic()
        assert c.command(b"a2 IDLE").startswith(b"+ ")
        took, lines = _closed_after(c, start)
        assert b"* OK Still here" in lines, lines
        assert any(x.startswith(b"* BYE") for x in lines), lines
        assert 3.0 < took < 15, took


def test_tls_handshake_deadline(timed: MsgstoreServer) -> None:
    sock = socket.create_connection(("127.0.0.1", timed.port("imap.tls_listen")), timeout=20)
    with sock:
        start = time.monotonic()
        assert sock.recv(100) == b""  # never a greeting, closed at the deadline
        assert time.monotonic() - start < 15
    # STARTTLS, then no ClientHello
    with raw(timed) as c:
        c.sock.settimeout(20)
        assert c.command(b"a1 STARTTLS").startswith(b"a1 OK")
        start = time.monotonic()
        assert c.sock.recv(100) == b""
        assert time.monotonic() - start < 15
