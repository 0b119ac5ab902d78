"""What one session sees of another's changes: \\Recent for new mail (IMAP4rev1), GETACL's
owner entry, and RENAME/DELETE of a mailbox someone else has selected (RELIABILITY.md §7
case 43).

Documented outcome for case 43: mailboxes are ids, names matter only at SELECT. A RENAME
leaves other sessions' selections working (they go on with the same mailbox under its new
name). A DELETE ends them: their next command gets ``* BYE The selected mailbox was
deleted`` and the connection closes, since nothing they hold numbers is left.
"""

from __future__ import annotations

import base64

from tests.conversations.harness import MsgstoreServer, User, message
from tests.imap_server.test_session import exchange, login_raw, until_tagged


def test_recent_goes_to_exactly_one_session(imap_server: MsgstoreServer, user: User) -> None:
    with (
        login_raw(imap_server, user) as a,
        login_raw(imap_server, user) as b,
        login_raw(imap_server, user) as c,
    ):
        exchange(a, b"a1", b"SELECT INBOX")
        exchange(b, b"b1", b"SELECT INBOX")
        exchange(c, b"c1", b"EXAMINE INBOX")
        imap_server.admin.deliver(user.name, message("new"))
        seen_a = exchange(a, b"a2", b"NOOP")
        seen_b = exchange(b, b"b2", b"NOOP")
        seen_c = exchange(c, b"c2", b"NOOP")
        for lines in (seen_a, seen_b, seen_c):
            assert b"* 1 EXISTS" in lines, lines
        assert b"* 1 RECENT" in seen_a
        assert b"* 0 RECENT" in seen_b
        assert b"* 0 RECENT" in seen_c
        assert b"\\Recent" in exchange(a, b"a3", b"FETCH 1 FLAGS")[0]
        assert b"\\Recent" not in exchange(b, b"b3", b"FETCH 1 FLAGS")[0]
        assert exchange(a, b"a4", b"SEARCH RECENT")[0] == b"* SEARCH 1"
        assert exchange(b, b"b4", b"SEARCH RECENT")[0] == b"* SEARCH"


def test_getacl_lists_the_owner(imap_server: MsgstoreServer, user: User) -> None:
    with login_raw(imap_server, user) as c:
        lines = exchange(c, b"a1", b"GETACL INBOX")
        # every right; the obsolete c and d follow for RFC 2086 clients (RFC 4314 §2.1.1)
        assert lines[0].startswith(f"* ACL INBOX {user.name} lrswipkxtea".encode()), lines
        friend = imap_server.admin.add_user("friend")
        assert exchange(c, b"a2", f"SETACL INBOX {friend.name} lr".encode())[-1].startswith(
            b"a2 OK"
        )
        lines = exchange(c, b"a3", b"GETACL INBOX")
        assert f" {user.name} lrswipkxtea".encode() in lines[0]
        assert f" {friend.name} lr".encode() in lines[0]


def test_rename_and_delete_of_a_selected_mailbox(imap_server: MsgstoreServer, user: User) -> None:
    with login_raw(imap_server, user) as a, login_raw(imap_server, user) as b:
        assert exchange(a, b"a1", b"CREATE Proj")[-1].startswith(b"a1 OK")
        assert exchange(a, b"a2", b"APPEND Proj {14}\r\nSubject: x\r\n\r\n")[-1].startswith(
            b"a2 OK"
        )
        assert exchange(b, b"b1", b"SELECT Proj")[-1].startswith(b"b1 OK")
        # RENAME: b keeps its selection and its message numbers
        assert exchange(a, b"a3", b"RENAME Proj Proj2")[-1].startswith(b"a3 OK")
        lines = exchange(b, b"b2", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert lines[-1].startswith(b"b2 OK"), lines
        assert b"Subject: x" in b"\n".join(lines)
        # DELETE: b's next command ends the session with BYE
        assert exchange(a, b"a4", b"DELETE Proj2")[-1].startswith(b"a4 OK")
        b.send(b"b3 NOOP\r\n")
        lines = []
        while (line := b.read_line()) is not None:
            lines.append(line)
        assert any(x.startswith(b"* BYE") for x in lines), lines
        # the deleting session is unaffected
        assert exchange(a, b"a5", b"NOOP")[-1].startswith(b"a5 OK")


def _mime(cte: str, charset: str, body: bytes) -> bytes:
    return (
        b"From: a@x.org\r\nSubject: encoded\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n--b--\r\n"
    )


def test_search_body_decodes_text_parts(imap_server: MsgstoreServer, user: User) -> None:
    """BODY/TEXT find words inside base64 and quoted-printable text parts, in UTF-8,
    US-ASCII and latin-1 (decoded from the part map's offsets at search time)."""
    admin = imap_server.admin
    admin.deliver(user.name, _mime("base64", "utf-8", base64.b64encode("Grüße aus Köln".encode())))
    admin.deliver(user.name, _mime("quoted-printable", "iso-8859-1", b"Caf=E9 cr=E8me"))
    admin.deliver(user.name, _mime("base64", "us-ascii", base64.b64encode(b"plain words")))
    admin.deliver(user.name, _mime("8bit", "latin-1", "déjà vu".encode("latin-1")))
    with login_raw(imap_server, user) as c:
        exchange(c, b"a1", b"SELECT INBOX")

        def search(tag: bytes, key: str) -> bytes:
            name, _, value = key.partition(" ")
            data = value.encode()
            head = tag + b" SEARCH CHARSET UTF-8 " + name.encode()
            c.send(head + b" {%d+}\r\n" % len(data) + data + b"\r\n")
            return until_tagged(c, tag)[0]

        assert search(b"s1", "BODY köln") == b"* SEARCH 1"
        assert search(b"s2", "TEXT GRÜSSE") == b"* SEARCH"  # no case folding of ß
        assert search(b"s3", "TEXT grüße") == b"* SEARCH 1"
        assert search(b"s4", "BODY crème") == b"* SEARCH 2"
        assert search(b"s5", "BODY WORDS") == b"* SEARCH 3"
        assert search(b"s6", "BODY déjà") == b"* SEARCH 4"
        assert search(b"s7", "BODY nowhere") == b"* SEARCH"
