"""POP3 and IMAP on one maildrop (RELIABILITY.md §7 case 44, issue 5).

An IMAP session that has INBOX selected keeps working while a POP3 session runs; it sees the
POP3 deletions as EXPUNGEs only when the POP3 session ends with QUIT (RFC 1939 UPDATE state),
and a password changed over poppassd works at once for IMAP as well as POP3.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import LineClient, MsgstoreServer, message


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        Path(tmp_path_factory.mktemp("pop3-imap")), services=("pop3", "poppassd", "imap")
    )
    try:
        yield server
    finally:
        server.stop()


def imap_login(server: MsgstoreServer, name: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10)
    client.login(name, password)
    return client


def pop3_login(server: MsgstoreServer, name: str, password: str) -> LineClient:
    client = LineClient(server.port("pop3.listen"))
    client.read_line()
    client.command(f"USER {name}")
    reply = client.command(f"PASS {password}")
    assert reply.startswith(b"+OK"), reply
    return client


def noop_untagged(client: imaplib.IMAP4) -> list[bytes]:
    """Run NOOP and return the untagged lines it brought (EXISTS, EXPUNGE, FETCH...)."""
    tag = client._new_tag()
    client.send(tag + b" NOOP\r\n")
    lines: list[bytes] = []
    while True:
        line = client.readline().rstrip(b"\r\n")
        if line.startswith(tag):
            assert b" OK" in line, line
            return lines
        lines.append(line)


def test_imap_sees_pop3_deletions_only_after_quit(both: MsgstoreServer) -> None:
    alice = both.admin.add_user("alice")
    for n in range(3):
        both.admin.deliver(alice.name, message(f"message {n}"))
    imap = imap_login(both, alice.name, alice.password)
    try:
        status, data = imap.select("INBOX")
        assert status == "OK"
        assert data == [b"3"]

        pop = pop3_login(both, alice.name, alice.password)
        assert pop.command("DELE 1").startswith(b"+OK")
        assert pop.command("DELE 3").startswith(b"+OK")
        # Marked, not removed: IMAP still sees three messages and can read them.
        assert not [ln for ln in noop_untagged(imap) if b"EXPUNGE" in ln]
        status, fetched = imap.fetch("1:3", "(UID)")
        assert status == "OK"
        assert len(fetched) == 3

        assert pop.command("QUIT").startswith(b"+OK")
        pop.close()

        untagged = noop_untagged(imap)
        expunged = [
            int(m.group(1)) for ln in untagged if (m := re.match(rb"\* (\d+) EXPUNGE", ln))
        ]
        # Sequence numbers shift after each EXPUNGE: message 3 then message 1, or 1 then 2.
        assert sorted(expunged) in ([1, 2], [1, 3]), untagged
        status, data = imap.search(None, "ALL")
        assert status == "OK"
        assert data == [b"1"]
        status, fetched = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        first = fetched[0]
        assert isinstance(first, tuple)
        assert b"message 1" in first[1]
    finally:
        imap.logout()


def test_dropped_pop3_session_deletes_nothing_imap_sees(both: MsgstoreServer) -> None:
    bob = both.admin.add_user("bob")
    both.admin.deliver(bob.name, message("keep me"))
    imap = imap_login(both, bob.name, bob.password)
    try:
        imap.select("INBOX")
        pop = pop3_login(both, bob.name, bob.password)
        assert pop.command("DELE 1").startswith(b"+OK")
        pop.close()  # no QUIT: RFC 1939 says nothing is deleted
        assert not [ln for ln in noop_untagged(imap) if b"EXPUNGE" in ln]
        _, data = imap.search(None, "ALL")
        assert data == [b"1"]
    finally:
        imap.logout()


def test_password_changed_over_poppassd_works_for_imap_at_once(both: MsgstoreServer) -> None:
    carol = both.admin.add_user("carol")
    new = "correct horse battery staple"
    with LineClient(both.port("poppassd.listen")) as client:
        client.read_line()
        assert client.command(f"user {carol.name}").startswith(b"200")
        assert client.command(f"pass {carol.password}").startswith(b"200")
        assert client.command(f"newpass {new}").startswith(b"200")
        client.command("quit")
    imap_login(both, carol.name, new).logout()
    old = imaplib.IMAP4("127.0.0.1", both.port("imap.listen"), timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            old.login(carol.name, carol.password)
    finally:
        old.shutdown()


def test_expire_days_removes_read_mail_older_than_the_limit(tmp_path: Path) -> None:
    """``[pop3] expire = "30"`` (RFC 2449 EXPIRE 30): at QUIT, messages older than 30 days
    (by internal date) that are \\Seen or were retrieved now go; the others stay."""
    server = MsgstoreServer.start(
        tmp_path, services=("pop3", "imap"), config={"pop3.expire": "30"}
    )
    try:
        dave = server.admin.add_user("dave")
        now = dt.datetime.now(dt.UTC)
        imap = imap_login(server, dave.name, dave.password)
        try:
            for subject, flags, age_days in (
                ("old seen", r"(\Seen)", 60),
                ("old unseen", "()", 60),
                ("new seen", r"(\Seen)", 1),
                ("old unseen retrieved", "()", 31),
            ):
                when = imaplib.Time2Internaldate(now - dt.timedelta(days=age_days))
                status, _ = imap.append("INBOX", flags, when, message(subject))
                assert status == "OK"

            pop = pop3_login(server, dave.name, dave.password)
            assert pop.command("CAPA").startswith(b"+OK")
            assert b"EXPIRE 30" in pop.multiline()
            assert pop.command("RETR 4").startswith(b"+OK")
            pop.multiline()
            assert pop.command("QUIT") == b"+OK Logging out (2 deleted, 2 left)"
            pop.close()

            imap.select("INBOX")
            status, fetched = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert status == "OK"
            subjects = [part[1].strip() for part in fetched if isinstance(part, tuple)]
            assert subjects == [b"Subject: old unseen", b"Subject: new seen"]
        finally:
            imap.logout()
    finally:
        server.stop()
