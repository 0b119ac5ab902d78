"""IMAP sessions over real loopback sockets against a real ``msgstore serve``.

Session-level bad input (RELIABILITY.md §7 A and B), the authentication rules, and the
commands end to end through imaplib and imapclient.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

import pytest
from imapclient import IMAPClient  # type: ignore[import-untyped]

from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_server.conftest import connect


def raw(server: MsgstoreServer) -> LineClient:
    client = LineClient(server.port("imap.listen"))
    greeting = client.read_line()
    assert greeting is not None
    assert greeting.startswith(b"* OK [CAPABILITY ")
    return client


def login_raw(server: MsgstoreServer, user: User) -> LineClient:
    client = raw(server)
    reply = client.command(f"a0 LOGIN {user.name} {user.password}")
    assert reply.startswith(b"a0 OK"), reply
    return client


def until_tagged(client: LineClient, tag: bytes) -> list[bytes]:
    lines: list[bytes] = []
    while True:
        line = client.read_line()
        assert line is not None, f"closed before {tag!r}; got {lines}"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def exchange(client: LineClient, tag: bytes, command: bytes) -> list[bytes]:
    """Send one command; every line up to and including its tagged reply."""
    client.send(tag + b" " + command + b"\r\n")
    return until_tagged(client, tag)


# --- bad input --------------------------------------------------------------------------------


def test_garbage_gets_bad_without_echo(imap_server: MsgstoreServer) -> None:
    """Invalid tags get an untagged BAD that does not echo the input (ALPACA)."""
    with raw(imap_server) as c:
        c.send(b"<script>alert(1)</script>\r\n")
        line = c.read_line()
        assert line is not None
        assert line.startswith(b"* BAD")
        assert b"script" not in line
        assert c.command("a1 NOOP").startswith(b"a1 OK")


def test_ten_bad_commands_end_the_session(imap_server: MsgstoreServer) -> None:
    """10 consecutive BAD replies -> BYE and close (Cassandane Alpaca)."""
    with raw(imap_server) as c:
        for n in range(10):
            c.send(b"x%d FROBNICATE\r\n" % n)
        lines = []
        while (line := c.read_line()) is not None:
            lines.append(line)
        assert sum(1 for x in lines if b" BAD " in x) == 10
        assert lines[-1].startswith(b"* BYE")


def test_wrong_state_is_bad(imap_server: MsgstoreServer, user: User) -> None:
    """FETCH before SELECT, SELECT before login, LOGIN after login: BAD, session usable."""
    with raw(imap_server) as c:
        assert c.command("a1 SELECT INBOX").startswith(b"a1 BAD")
        assert c.command(f"a2 LOGIN {user.name} {user.password}").startswith(b"a2 OK")
        assert c.command("a3 FETCH 1 FLAGS").startswith(b"a3 BAD")
        assert c.command("a4 LOGIN x y").startswith(b"a4 BAD")
        assert c.command("a5 STARTTLS").startswith(b"a5 BAD")
        assert c.command("a6 NOOP").startswith(b"a6 OK")


def test_huge_literal_refused_without_continuation(
    imap_server: MsgstoreServer, user: User
) -> None:
    """A 2 GB APPEND literal gets NO [TOOBIG] and no '+'; the session stays usable."""
    with login_raw(imap_server, user) as c:
        c.send(b"a1 APPEND INBOX {2147483648}\r\n")
        line = c.read_line()
        assert line is not None
        assert line.startswith(b"a1 NO [TOOBIG]")
        assert c.command("a2 NOOP").startswith(b"a2 OK")


def test_deep_nesting_and_bad_sequence_sets(imap_server: MsgstoreServer, user: User) -> None:
    """10,000 nested parentheses and out-of-range sequence numbers are answered with BAD."""
    imap_server.admin.deliver(user.name, message("one"))
    with login_raw(imap_server, user) as c:
        exchange(c, b"a1", b"SELECT INBOX")
        c.send(b"a2 SEARCH " + b"(" * 10_000 + b"ALL" + b")" * 10_000 + b"\r\n")
        assert until_tagged(c, b"a2")[-1].startswith(b"a2 BAD")
        assert c.command("a3 FETCH 1:4294967296 FLAGS").startswith(b"a3 BAD")
        assert exchange(c, b"a4", b"FETCH 5 FLAGS")[-1].startswith(b"a4 BAD")
        c.send(b"a5 FETCH 1 FLAGS\r\n")
        assert until_tagged(c, b"a5")[-1].startswith(b"a5 OK")


def test_starttls_injection_is_refused(imap_server: MsgstoreServer, user: User) -> None:
    """Commands pipelined behind STARTTLS are never run: the server refuses and closes."""
    with raw(imap_server) as c:
        c.send(f"a1 STARTTLS\r\na2 LOGIN {user.name} {user.password}\r\n".encode())
        lines = []
        while (line := c.read_line()) is not None:
            lines.append(line)
        assert any(x.startswith(b"a1 BAD") for x in lines), lines
        assert not any(x.startswith(b"a2 ") for x in lines), lines


def test_starttls_then_login(imap_server: MsgstoreServer, user: User) -> None:
    """STARTTLS upgrades; CAPABILITY after it no longer offers STARTTLS."""
    with raw(imap_server) as c:
        assert c.command("a1 STARTTLS").startswith(b"a1 OK")
        c.start_tls(imap_server.client_tls())
        lines = exchange(c, b"a2", b"CAPABILITY")
        assert b"STARTTLS" not in lines[0]
        assert b"AUTH=PLAIN" in lines[0]
        assert c.command(f"a3 LOGIN {user.name} {user.password}").startswith(b"a3 OK")


def test_implicit_tls(imap_server: MsgstoreServer, user: User) -> None:
    """The tls_listen port speaks IMAPS."""
    ctx = imap_server.client_tls()
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", imap_server.port("imap.tls_listen"), ssl_context=ctx, timeout=10
    )
    try:
        assert client.login(user.name, user.password)[0] == "OK"
    finally:
        client.logout()


def test_logindisabled_without_loopback_exemption(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With plaintext_on_loopback off, LOGINDISABLED until TLS; LOGIN/PLAIN refused."""
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("nologin"),
        services=("imap",),
        config={"auth.plaintext_on_loopback": False},
    )
    try:
        user = server.admin.add_user("bob")
        with raw(server) as c:
            caps = exchange(c, b"a1", b"CAPABILITY")
            assert b"LOGINDISABLED" in caps[0]
            assert b"AUTH=PLAIN" not in caps[0]
            reply = c.command(f"a2 LOGIN {user.name} {user.password}")
            assert reply.startswith(b"a2 NO [PRIVACYREQUIRED]")
            assert c.command("a3 AUTHENTICATE PLAIN AGJvYgBib2I=").startswith(
                b"a3 NO [PRIVACYREQUIRED]"
            )
            assert c.command("a4 STARTTLS").startswith(b"a4 OK")
            c.start_tls(server.client_tls())
            caps = exchange(c, b"a5", b"CAPABILITY")
            assert b"LOGINDISABLED" not in caps[0]
            assert c.command(f"a6 LOGIN {user.name} {user.password}").startswith(b"a6 OK")
    finally:
        server.stop()


def test_failed_logins_close_the_connection(imap_server: MsgstoreServer, user: User) -> None:
    """Wrong passwords: NO [AUTHENTICATIONFAILED]; the 3rd one also ends the session."""
    with raw(imap_server) as c:
        for n in range(3):
            c.send(f"a{n} LOGIN {user.name} wrong\r\n".encode())
        lines = []
        while (line := c.read_line()) is not None:
            lines.append(line)
        fails = [x for x in lines if b"NO [AUTHENTICATIONFAILED]" in x]
        assert len(fails) == 3, lines
        assert any(x.startswith(b"* BYE") for x in lines), lines


# --- commands end to end ----------------------------------------------------------------------


def test_authenticate_plain_with_sasl_ir(imap_server: MsgstoreServer, user: User) -> None:
    """AUTHENTICATE PLAIN with an initial response logs in (RFC 4959)."""
    client = connect(imap_server)
    try:
        typ, _ = client.authenticate("PLAIN", lambda _: f"\0{user.name}\0{user.password}".encode())
        assert typ == "OK"
    finally:
        client.logout()


def test_mailbox_commands_with_imapclient(imap_server: MsgstoreServer, user: User) -> None:
    """CREATE (USE), LIST (SPECIAL-USE, STATUS), RENAME, SUBSCRIBE, LSUB, STATUS, DELETE."""
    with IMAPClient("127.0.0.1", port=imap_server.port("imap.listen"), ssl=False) as c:
        c.login(user.name, user.password)
        c.create_folder("Projects/Alpha")
        assert c.folder_exists("Projects")
        c._imap._simple_command("CREATE", "Archive", "(USE (\\Archive))")
        names = {name: flags for flags, _, name in c.list_folders()}
        assert b"\\Archive" in names["Archive"]
        assert b"\\HasChildren" in names["Projects"]
        c.rename_folder("Projects/Alpha", "Projects/Beta")
        assert c.folder_exists("Projects/Beta")
        assert not c.folder_exists("Projects/Alpha")
        c.subscribe_folder("Projects/Beta")
        assert "Projects/Beta" in [n for _, _, n in c.list_sub_folders()]
        status = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT", "SIZE", "APPENDLIMIT"])
        assert status[b"MESSAGES"] == 0
        assert status[b"APPENDLIMIT"] == 1024 * 1024
        c.delete_folder("Projects/Beta")
        assert not c.folder_exists("Projects/Beta")
        ns = c.namespace()
        assert ns.other[0][0] == "Other Users/"
        assert ns.shared[0][0] == "Public/"


def test_messages_with_imapclient(imap_server: MsgstoreServer, user: User) -> None:
    """APPEND (APPENDUID), FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, UID EXPUNGE."""
    with IMAPClient("127.0.0.1", port=imap_server.port("imap.listen"), ssl=False) as c:
        c.login(user.name, user.password)
        for n in range(5):
            c.append("INBOX", message(f"note {n}", f"line {n} body\r\n"), flags=[b"$Work"])
        c.create_folder("Keep")
        c.select_folder("INBOX")
        assert c.search(["SUBJECT", "note 3"]) == [4]
        assert c.search(["BODY", "line 2"]) == [3]
        assert c.search(["KEYWORD", "$Work"]) == [1, 2, 3, 4, 5]
        data = c.fetch([1], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "RFC822.SIZE", "ENVELOPE"])
        assert data[1][b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: note 0\r\n\r\n"
        assert data[1][b"ENVELOPE"].subject == b"note 0"
        part = c.fetch([2], ["BODY.PEEK[1]<0.4>"])[2][b"BODY[1]<0>"]
        assert part == b"line"
        c.add_flags([1, 2], [b"\\Deleted"])
        assert c.search(["DELETED"]) == [1, 2]
        c.copy([3], "Keep")
        c.move([4], "Keep")
        c.expunge()
        assert c.search(["ALL"]) == [3, 5]  # imapclient speaks UIDs
        c.select_folder("Keep")
        assert len(c.search(["ALL"])) == 2
        uids = c.search(["ALL"])
        c.add_flags(uids, [b"\\Deleted"])
        c.uid_expunge(uids[:1])
        assert len(c.search(["ALL"])) == 1


def test_acl_no_lookup_right_looks_nonexistent(imap_server: MsgstoreServer) -> None:
    """RFC 4314: a shared mailbox without 'l' answers exactly like a missing one."""
    owner = imap_server.admin.add_user("owner")
    other = imap_server.admin.add_user("other")
    port = imap_server.port("imap.listen")
    with (
        IMAPClient("127.0.0.1", port=port, ssl=False) as a,
        IMAPClient("127.0.0.1", port=port, ssl=False) as b,
    ):
        a.login(owner.name, owner.password)
        b.login(other.name, other.password)
        a.create_folder("shared")
        a.setacl("shared", other.name, "lr")
        shared = f"Other Users/{owner.name}/shared"
        assert b.folder_status(shared, ["MESSAGES"])[b"MESSAGES"] == 0
        assert shared in [n for _, _, n in b.list_folders()]
        assert (other.name.encode(), b"lr") in a.getacl("shared")
        a.setacl("shared", other.name, "r")
        with pytest.raises(IMAPClient.Error) as missing_l:
            b.folder_status(shared, ["MESSAGES"])
        with pytest.raises(IMAPClient.Error) as missing:
            b.folder_status(f"Other Users/{owner.name}/nosuch", ["MESSAGES"])
        assert "NONEXISTENT" in str(missing_l.value)
        assert "NONEXISTENT" in str(missing.value)
        assert shared not in [n for _, _, n in b.list_folders()]
        a.setacl("shared", other.name, "l")
        with pytest.raises(IMAPClient.Error) as noperm:
            b.select_folder(shared)
        assert "NOPERM" in str(noperm.value)


def test_idle_sees_delivery_within_a_second(imap_server: MsgstoreServer, user: User) -> None:
    """IDLE pushes EXISTS for a message delivered by another process within 1 s of the
    delivery's commit (the delivery itself, fsyncs included, is not counted: a loaded machine
    stretches it; without a wake-up the EXISTS would never come)."""
    with IMAPClient("127.0.0.1", port=imap_server.port("imap.listen"), ssl=False) as c:
        c.login(user.name, user.password)
        c.select_folder("INBOX")
        c.idle()
        imap_server.admin.deliver(user.name, message("while idling"))
        delivered = time.monotonic()
        responses = c.idle_check(timeout=3)
        elapsed = time.monotonic() - delivered
        c.idle_done()
        assert (1, b"EXISTS") in responses
        assert elapsed < 1.0


def test_no_expunge_during_fetch(imap_server: MsgstoreServer, user: User) -> None:
    """RFC 9051 §7.5.1: another session's EXPUNGE shows after UID commands, not FETCH."""
    for n in range(3):
        imap_server.admin.deliver(user.name, message(f"m{n}"))
    with login_raw(imap_server, user) as c1, login_raw(imap_server, user) as c2:
        c1.send(b"s SELECT INBOX\r\n")
        until_tagged(c1, b"s")
        c2.send(b"s SELECT INBOX\r\n")
        until_tagged(c2, b"s")
        c2.send(b"e STORE 1 +FLAGS (\\Deleted)\r\ne2 EXPUNGE\r\n")
        until_tagged(c2, b"e2")
        c1.send(b"f FETCH 1:3 (FLAGS)\r\n")
        lines = until_tagged(c1, b"f")
        assert not any(b"EXPUNGE" in x for x in lines), lines
        c1.send(b"n NOOP\r\n")
        lines = until_tagged(c1, b"n")
        assert b"* 1 EXPUNGE" in lines, lines


def test_plain_socket_closed_cleanly(imap_server: MsgstoreServer) -> None:
    """A client that connects and drops right away leaves the server serving."""
    sock = socket.create_connection(("127.0.0.1", imap_server.port("imap.listen")))
    sock.close()
    with raw(imap_server) as c:
        assert c.command("a NOOP").startswith(b"a OK")


def test_tls_context_is_verified(imap_server: MsgstoreServer) -> None:
    """The generated certificate verifies with the server's CA file."""
    ctx = imap_server.client_tls()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
