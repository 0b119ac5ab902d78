"""LMTP and SMTP over a raw socket against a real server (RELIABILITY.md §7 cases 20, 28-30).

smtplib.LMTP reads a single reply after DATA (python/cpython#76984), so the per-recipient
reply accounting of RFC 2033 §4.2 is checked here octet by octet.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from msgstore.management.accounts import AccountModify
from msgstore.management.operation import Limit
from tests.conversations.harness import MsgstoreServer
from tests.lmtp.wire import Wire, connect, message


def set_quota(server: MsgstoreServer, name: str, size: str) -> None:
    admin = server.admin
    admin.call(AccountModify(name=name, quota=Limit.parse_size(size)).run(admin.ctx))


def data(body: bytes) -> bytes:
    return body.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def stored_files(server: MsgstoreServer, token: bytes) -> list[Path]:
    """Message files under DATA/users holding ``token``."""
    found = []
    for root, _, names in os.walk(server.data_dir / "users"):
        for name in names:
            path = Path(root) / name
            if "mail" in path.parts and token in path.read_bytes():
                found.append(path)
    return found


def test_one_reply_per_accepted_recipient_in_rcpt_order(server: MsgstoreServer) -> None:
    """Valid, over quota, valid -> exactly two replies after DATA, in RCPT order."""
    alice, bob, carol = (server.admin.add_user(n) for n in ("alice", "bob", "carol"))
    set_quota(server, bob.name, "1K")
    with connect(server) as wire:
        assert wire.command("MAIL FROM:<s@example.org> SIZE=2048").startswith(b"250 2.1.0")
        assert wire.command(f"RCPT TO:<{alice.name}@example.org>").startswith(b"250 2.1.5")
        assert wire.command(f"RCPT TO:<{bob.name}@example.org>").startswith(b"552 5.2.2")
        assert wire.command(f"RCPT TO:<{carol.name}@example.org>").startswith(b"250 2.1.5")
        assert wire.command("DATA").startswith(b"354")
        wire.send(data(message("order", "x" * 1500 + "\r\n")))
        assert wire.reply().startswith(f"250 2.0.0 <{alice.name}@example.org>")
        assert wire.reply().startswith(f"250 2.0.0 <{carol.name}@example.org>")
        assert wire.command("NOOP") == b"250 2.0.0 OK"
    assert len(server.admin.inbox(alice.name)) == 1
    assert server.admin.inbox(bob.name) == []


def test_fan_out_is_stored_once(server: MsgstoreServer) -> None:
    """One LMTP message to three local recipients: one file, hard-linked (same inode),
    with the same trace fields for all."""
    users = [server.admin.add_user(f"fan{i}") for i in range(3)]
    token = secrets.token_hex(8).encode()
    with connect(server) as wire:
        wire.send(b"MAIL FROM:<list@example.org>\r\n")
        for user in users:
            wire.send(f"RCPT TO:<{user.name}@example.org>\r\n".encode())
        wire.send(b"DATA\r\n")
        assert wire.replies(5)[-1].startswith("354")
        wire.send(data(message(token.decode())))
        assert all(r.startswith("250 2.0.0") for r in wire.replies(3))
    files = stored_files(server, token)
    assert len(files) == 3
    assert len({f.stat().st_ino for f in files}) == 1
    body = files[0].read_bytes()
    assert body.startswith(b"Return-Path: <list@example.org>\r\nReceived: from client.example")
    assert body.count(b"Received:") == 1


def test_fully_pipelined_transaction(server: MsgstoreServer) -> None:
    """RFC 2920: every command of a transaction in one write, replies in order."""
    alice = server.admin.add_user("alice")
    with Wire(server.port("lmtp.listen")) as wire:
        wire.send(
            b"LHLO client.example\r\nMAIL FROM:<s@example.org>\r\n"
            + f"RCPT TO:<{alice.name}>\r\nRCPT TO:<nobody>\r\n".encode()
            + f"RCPT TO:<{alice.name}>\r\nDATA\r\n".encode()
        )
        replies = wire.replies(7)
        assert [r[:3] for r in replies] == ["220", "250", "250", "250", "550", "250", "354"]
        wire.send(data(message("pipelined")) + b"RSET\r\nQUIT\r\n")
        codes = [r[:9] for r in wire.replies(4)]
        assert codes == ["250 2.0.0", "250 2.0.0", "250 2.0.0", "221 2.0.0"]
        assert wire.closed()
    assert len(server.admin.inbox(alice.name)) == 1


def test_bdat_chunks_and_wrong_sizes(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    msg = message("chunked")
    with connect(server) as wire:
        # Without a transaction the chunk is still read, then refused.
        wire.send(b"BDAT 5\r\nhello")
        assert wire.reply().startswith("503 5.5.1")
        for bad in ("BDAT", "BDAT -1", "BDAT 10 LASTX", "BDAT x LAST"):
            assert wire.command(bad).startswith(b"501 5.5.4"), bad
        wire.command("MAIL FROM:<s@example.org> BODY=BINARYMIME")
        wire.command(f"RCPT TO:<{alice.name}>")
        assert wire.command("DATA").startswith(b"503 5.5.1")  # BINARYMIME needs BDAT
        wire.send(b"BDAT 10\r\n" + msg[:10])
        assert wire.reply() == "250 2.0.0 10 octets received"
        wire.send(b"DATA\r\n")  # not allowed between chunks
        assert wire.reply().startswith("503 5.5.1")
        wire.send(f"BDAT {len(msg) - 10} LAST\r\n".encode() + msg[10:])
        assert wire.reply().startswith(f"250 2.0.0 <{alice.name}>")
        # A missing LAST: the transfer is abandoned by RSET, nothing is stored.
        wire.command("MAIL FROM:<s@example.org>")
        wire.command(f"RCPT TO:<{alice.name}>")
        wire.send(b"BDAT 3\r\nabc")
        assert wire.reply().startswith("250 2.0.0 3 octets")
        assert wire.command("RSET").startswith(b"250")
        # A chunk size larger than what follows swallows the next command as data.
        wire.command("MAIL FROM:<s@example.org>")
        wire.command(f"RCPT TO:<{alice.name}>")
        wire.send(b"BDAT 12 LAST\r\nabcNOOP\r\n")
        time.sleep(0.2)
        wire.send(b"xxx")
        assert wire.reply().startswith(f"250 2.0.0 <{alice.name}>")
    inbox = server.admin.inbox(alice.name)
    assert len(inbox) == 2
    assert server.admin.body(alice.name, inbox[0].uid).endswith(msg)


def test_smuggling_is_refused_on_lmtp_and_smtp(server: MsgstoreServer) -> None:
    """A bare-LF or bare-CR end marker is content, the smuggled commands are never run, and
    the message is refused with 550 5.6.0 (RELIABILITY.md §7 case 28)."""
    alice = server.admin.add_user("alice")
    for protocol in ("lmtp", "smtp"):
        for marker in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"):
            with connect(server, protocol) as wire:
                wire.command("MAIL FROM:<s@example.org>")
                wire.command(f"RCPT TO:<{alice.name}>")
                assert wire.command("DATA").startswith(b"354")
                smuggled = (
                    b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<" + alice.name.encode() + b">\r\n"
                    b"DATA\r\nSubject: smuggled\r\n"
                )
                wire.send(b"Subject: x\r\n\r\nhi" + marker + smuggled + b"\r\n.\r\n")
                assert wire.reply().startswith("550 5.6.0"), (protocol, marker)
                assert wire.command("NOOP") == b"250 2.0.0 OK"
    assert server.admin.inbox(alice.name) == []


def test_starttls_injection_closes(server: MsgstoreServer) -> None:
    """Plaintext pipelined behind STARTTLS is refused and the connection closed: the
    injected command is never executed (CVE-2011-0411, CVE-2024-34083)."""
    with connect(server, "smtp") as wire:
        wire.send(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
        assert wire.reply().startswith("503 5.5.1")
        assert wire.closed()


def test_ten_thousand_recipients(server: MsgstoreServer) -> None:
    """RCPTs past [lmtp] max_recipients (50 here) get 452 4.5.3; the rest goes through."""
    alice = server.admin.add_user("alice")
    with connect(server) as wire:
        _many_recipients(wire, alice.name)
    assert len(server.admin.inbox(alice.name)) == 1


def _many_recipients(wire: Wire, name: str) -> None:
    wire.command("MAIL FROM:<s@example.org>")
    batch = f"RCPT TO:<{name}>\r\n".encode() * 10_000
    sender = threading.Thread(target=wire.send, args=(batch,))
    sender.start()
    replies = wire.replies(10_000)
    sender.join()
    assert all(r.startswith("250 2.1.5") for r in replies[:50])
    assert all(r.startswith("452 4.5.3") for r in replies[50:])
    assert wire.command("DATA").startswith(b"354")
    wire.send(data(message("many")))
    assert all(r.startswith("250 2.0.0") for r in wire.replies(50))


def test_long_lines(server: MsgstoreServer) -> None:
    """A command over 1,000 octets gets 500 5.5.2 and the session goes on; message lines are
    not limited by it (they are stored as sent)."""
    alice = server.admin.add_user("alice")
    with connect(server) as wire:
        assert wire.command("NOOP " + "x" * 1500).startswith(b"500 5.5.2")
        assert wire.command("NOOP") == b"250 2.0.0 OK"
        wire.command("MAIL FROM:<s@example.org>")
        wire.command(f"RCPT TO:<{alice.name}>")
        wire.command("DATA")
        long_line = "y" * 5000 + "\r\n"
        wire.send(data(message("long", long_line)))
        assert wire.reply().startswith("250 2.0.0")
    uid = server.admin.inbox(alice.name)[0].uid
    assert server.admin.body(alice.name, uid).endswith(long_line.encode())


def test_data_that_never_ends(server: MsgstoreServer) -> None:
    """Past the size limit the data is read and dropped; at data_timeout (3 s here) the
    connection is closed with 421 4.4.2 and nothing is stored. A silent client too."""
    alice = server.admin.add_user("alice")
    for endless in (True, False):
        wire = connect(server)
        wire.command("MAIL FROM:<s@example.org>")
        wire.command(f"RCPT TO:<{alice.name}>")
        started = time.monotonic()  # before DATA: the server's deadline starts after it
        assert wire.command("DATA").startswith(b"354")
        stop = threading.Event()

        def flood(wire: Wire = wire, stop: threading.Event = stop) -> None:
            try:
                while not stop.is_set():
                    wire.send(b"z" * 998 + b"\r\n" * 1)
            except OSError:
                return

        sender = threading.Thread(target=flood)
        if endless:
            sender.start()
        assert wire.reply().startswith("421 4.4.2")
        assert 2.5 < time.monotonic() - started < 8
        stop.set()
        if endless:
            sender.join()
        wire.close()
    assert server.admin.inbox(alice.name) == []


def test_disconnect_in_the_middle_of_data_stores_nothing(server: MsgstoreServer) -> None:
    alice = server.admin.add_user("alice")
    with connect(server) as wire:
        wire.command("MAIL FROM:<s@example.org>")
        wire.command(f"RCPT TO:<{alice.name}>")
        wire.command("DATA")
        wire.send(b"Subject: half\r\n\r\n" + b"x" * 100_000)
    with connect(server) as again:  # the server is still serving
        assert again.command("NOOP") == b"250 2.0.0 OK"
    # The half message's temporary file goes once the server has read to the end of the
    # connection (a loaded machine can take seconds to get there).
    deadline = time.monotonic() + 15
    while not all(p.is_dir() for p in (server.data_dir / "tmp").glob("*")):
        assert time.monotonic() < deadline, list((server.data_dir / "tmp").glob("*"))
        time.sleep(0.05)
    assert server.admin.inbox(alice.name) == []


def test_harvest_protection(server: MsgstoreServer) -> None:
    """After [lmtp] max_unknown_recipients (10 here) unknown recipients: 421 and close."""
    with connect(server) as wire:
        wire.command("MAIL FROM:<s@example.org>")
        for i in range(9):
            assert wire.command(f"RCPT TO:<nobody{i}@example.org>").startswith(b"550 5.1.1")
        assert wire.command("RCPT TO:<nobody9@example.org>").startswith(b"550 5.1.1")
        assert wire.reply().startswith("421 4.7.0")
        assert wire.closed()


def test_disabled_account_and_errors_limit(server: MsgstoreServer) -> None:
    mute = server.admin.add_user("mute")
    admin = server.admin
    admin.call(AccountModify(name=mute.name, receive_disabled=True).run(admin.ctx))
    with connect(server) as wire:
        wire.command("MAIL FROM:<s@example.org>")
        assert wire.command(f"RCPT TO:<{mute.name}>").startswith(b"550 5.2.1")
        for _ in range(9):
            assert wire.command("BOGUS").startswith(b"500 5.5.2")
        assert wire.command("BOGUS").startswith(b"500 5.5.2")
        assert wire.reply().startswith("421 4.7.0")
        assert wire.closed()


def test_plus_addressing_files_into_an_existing_folder(server: MsgstoreServer) -> None:
    """user+folder@domain goes into that folder when it exists, INBOX otherwise."""
    alice = server.admin.add_user("alice")
    with connect(server) as wire:
        for folder in ("Drafts", "nosuchfolder"):
            wire.command("MAIL FROM:<s@example.org>")
            rcpt = f"RCPT TO:<{alice.name}+{folder}@example.org>"
            assert wire.command(rcpt).startswith(b"250 2.1.5")
            wire.command("DATA")
            wire.send(data(message(folder)))
            assert wire.reply().startswith("250 2.0.0")
    assert len(server.admin.inbox(alice.name)) == 1
    assert len(stored_files(server, b"Subject: Drafts")) == 1
