"""FETCH's two paths give the same octets (``imap/commands/fetch.py``).

A FETCH of metadata items only (FLAGS, UID, MODSEQ, INTERNALDATE, RFC822.SIZE, ENVELOPE,
BODY, BODYSTRUCTURE) takes the batch path; any body item sends it through the per-message
path. The oracle: the same FETCH with ``BODY.PEEK[HEADER.FIELDS (X-NONE)]`` added last runs
the per-message path, whose response for that item is the constant
``BODY[HEADER.FIELDS (X-NONE)] {2}CRLF CRLF`` (MODSEQ, added by CHANGEDSINCE, comes after
it); cut out, what is left must be byte for byte
what the batch path sent -- on a mailbox with system flags, keywords, \\Recent, a message
expunged by another session, in IMAP4rev1 and IMAP4rev2, by sequence number and by UID,
with CHANGEDSINCE and VANISHED, and across the batch path's chunks of 5,000.
"""

from __future__ import annotations

import re

from tests.conversations.harness import LineClient, MsgstoreServer, User, message
from tests.imap_server.test_session import exchange, login_raw, until_tagged

FORCE: bytes = b"BODY.PEEK[HEADER.FIELDS (X-NONE)]"
FORCED_OUT: bytes = b" BODY[HEADER.FIELDS (X-NONE)] {2}\r\n\r\n"

MULTIPART: bytes = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: parts\r\n"
    b"Date: Tue, 3 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--b1\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b1--\r\n"
)


def raw_reply(client: LineClient, tag: bytes, command: bytes) -> bytes:
    """Every octet the server sent for one command, up to its tagged line (excluded)."""
    client.send(tag + b" " + command + b"\r\n")
    lines = until_tagged(client, tag)
    assert lines[-1].startswith(tag + b" OK"), lines[-1]
    return b"".join(line + b"\r\n" for line in lines[:-1])


def append(client: LineClient, tag: bytes, data: bytes, flags: bytes = b"") -> None:
    flag_list = b" (" + flags + b")" if flags else b""
    client.send(tag + b" APPEND INBOX" + flag_list + b" {%d}\r\n" % len(data))
    line = client.read_line()
    assert line is not None
    assert line.startswith(b"+"), line
    client.send(data + b"\r\n")
    reply = until_tagged(client, tag)
    assert reply[-1].startswith(tag + b" OK"), reply


def compare(client: LineClient, seqs: bytes, items: bytes, modifiers: bytes = b"") -> bytes:
    """Run ``FETCH``/``UID FETCH`` both ways; assert the outputs match; return the batch
    path's output. ``seqs`` starts with ``UID `` for UID FETCH."""
    suffix = b" (" + modifiers + b")" if modifiers else b""
    verb = b"UID FETCH " if seqs.startswith(b"UID ") else b"FETCH "
    head = verb + seqs.removeprefix(b"UID ") + b" (" + items
    fast = raw_reply(client, b"f1", head + b")" + suffix)
    slow = raw_reply(client, b"f2", head + b" " + FORCE + b")" + suffix)
    assert slow.count(FORCED_OUT) == fast.count(b" FETCH ("), (items, slow)
    assert fast == slow.replace(FORCED_OUT, b""), (seqs, items, modifiers)
    return fast


def fill(imap_server: MsgstoreServer, user: User) -> None:
    """Twelve messages with assorted flags and keywords; message 4 expunged later."""
    with login_raw(imap_server, user) as c:
        flag_sets = [
            b"",
            b"\\Seen",
            b"\\Flagged $Label1",
            b"\\Seen \\Answered \\Draft",
            b"$Junk",
            b"\\Deleted \\Seen",
            b"",
            b"$Label1 $Label2 \\Flagged",
            b"\\Answered",
            b"",
            b"\\Seen $NotJunk",
            b"",
        ]
        for n, flags in enumerate(flag_sets):
            data = MULTIPART if n % 3 == 2 else message(f"message {n}", "text\r\n" * n)
            append(c, b"a%d" % n, data, flags)
        exchange(c, b"x", b"LOGOUT")


def test_meta_fetches_match_generic_path_rev1_and_rev2(
    imap_server: MsgstoreServer, user: User
) -> None:
    fill(imap_server, user)
    with (
        login_raw(imap_server, user) as rev1,
        login_raw(imap_server, user) as rev2,
        login_raw(imap_server, user) as other,
    ):
        # rev1 selects read-write first: it holds \Recent for all twelve.
        assert any(b"12 RECENT" in line for line in exchange(rev1, b"s", b"SELECT INBOX"))
        exchange(rev2, b"e", b"ENABLE IMAP4rev2 QRESYNC")
        exchange(rev2, b"s", b"SELECT INBOX")
        exchange(other, b"s", b"SELECT INBOX")
        exchange(other, b"t", b"STORE 9 +FLAGS (\\Flagged $Label2)")
        (mid,) = re.findall(
            rb"MODSEQ \((\d+)\)", b"".join(exchange(other, b"m", b"FETCH 9 MODSEQ"))
        )
        exchange(other, b"u", b"STORE 10,12 +FLAGS (\\Seen)")
        exchange(other, b"d", b"STORE 4 +FLAGS.SILENT (\\Deleted)")
        exchange(rev1, b"n", b"NOOP")  # take in the flag changes now, not during the FETCHes
        exchange(rev2, b"n", b"NOOP")
        exchange(other, b"x", b"UID EXPUNGE 4")  # 6 keeps its \\Deleted
        # By sequence number first: message 4 stays numbered (no EXPUNGE during FETCH).
        by_seq: list[tuple[bytes, bytes, bytes]] = [
            (b"1:*", b"FLAGS", b""),
            (b"1:*", b"UID FLAGS", b""),
            (b"1:*", b"FLAGS UID", b""),
            (b"5,1,3:4,11:*", b"FLAGS", b""),
            (b"1:*", b"MODSEQ", b""),
            (b"1:*", b"INTERNALDATE RFC822.SIZE", b""),
            (b"1:*", b"ENVELOPE BODYSTRUCTURE FLAGS", b""),
            (b"1:*", b"BODY UID INTERNALDATE ENVELOPE RFC822.SIZE MODSEQ FLAGS", b""),
            (b"1:*", b"FLAGS", b"CHANGEDSINCE " + mid),
        ]
        # UID FETCH may report the expunge; the NOOP before these takes it in.
        by_uid: list[tuple[bytes, bytes, bytes]] = [
            (b"UID 1:*", b"FLAGS", b""),
            (b"UID 1:*", b"UID", b""),
            (b"UID 3:9", b"FLAGS MODSEQ", b""),
            (b"UID 1:*", b"FLAGS", b"CHANGEDSINCE " + mid),
            (b"UID 1:*", b"UID FLAGS MODSEQ", b"CHANGEDSINCE 1"),
        ]
        outputs: dict[bytes, bytes] = {}
        for name, client in ((b"rev1", rev1), (b"rev2", rev2)):
            for seqs, items, modifiers in by_seq:
                key = name + b" " + seqs + b" " + items + modifiers
                outputs[key] = compare(client, seqs, items, modifiers)
            exchange(client, b"n2", b"NOOP")
            for seqs, items, modifiers in by_uid:
                key = name + b" " + seqs + b" " + items + modifiers
                outputs[key] = compare(client, seqs, items, modifiers)
        # QRESYNC: VANISHED (EARLIER) for the expunged message, then the changed ones.
        vanished = compare(rev2, b"UID 1:*", b"FLAGS", b"CHANGEDSINCE " + mid + b" VANISHED")
        assert vanished.startswith(b"* VANISHED (EARLIER) 4\r\n"), vanished

    flags_rev1 = outputs[b"rev1 1:* FLAGS"]
    flags_rev2 = outputs[b"rev2 1:* FLAGS"]
    # Message 4 is held (no EXPUNGE during FETCH) but gone from the store: no response.
    assert b"* 4 FETCH" not in flags_rev1
    assert b"* 5 FETCH" in flags_rev1
    assert flags_rev1.count(b"\\Recent") == 11
    assert b"\\Recent" not in flags_rev2
    assert b"* 1 FETCH (FLAGS (\\Recent))\r\n" in flags_rev1
    assert b"* 1 FETCH (FLAGS ())\r\n" in flags_rev2
    assert b"* 8 FETCH (FLAGS ($Label1 $Label2 \\Flagged))\r\n" in flags_rev2
    assert b"* 6 FETCH (FLAGS (\\Deleted \\Seen \\Recent))\r\n" in flags_rev1
    uid_first = outputs[b"rev2 1:* UID FLAGS"]
    assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" in uid_first
    # UID FETCH always includes UID, first; CHANGEDSINCE adds MODSEQ and filters.
    assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" in outputs[b"rev2 UID 1:* FLAGS"]
    changed = outputs[b"rev2 UID 1:* FLAGS" + b"CHANGEDSINCE " + mid]
    assert [int(n) for n in re.findall(rb"UID (\d+)", changed)] == [10, 12]
    assert b"MODSEQ (" in changed
    sparse = outputs[b"rev1 5,1,3:4,11:* FLAGS"]
    assert re.findall(rb"\* (\d+) FETCH", sparse) == [b"1", b"3", b"5", b"11", b"12"]


def test_meta_fetch_across_chunks(imap_server: MsgstoreServer) -> None:
    """More messages than one batch-path chunk (5,000): order and numbers stay right."""
    user = imap_server.admin.add_user("chunks")
    for n in range(10):
        imap_server.admin.deliver(user.name, message(f"seed {n}"))
    with login_raw(imap_server, user) as c:
        exchange(c, b"s", b"SELECT INBOX")
        for n in range(9):  # 10 -> 5,120 messages
            assert exchange(c, b"c%d" % n, b"COPY 1:* INBOX")[-1].startswith(b"c%d OK" % n)
        exchange(c, b"f", b"STORE 4995:5010,5120 +FLAGS (\\Flagged $Near)")
        exchange(c, b"u", b"STORE 2:2000,4000:5003 +FLAGS.SILENT (\\Seen)")
        exchange(c, b"n", b"NOOP")
        fast = compare(c, b"1:*", b"UID FLAGS")
        assert fast.count(b" FETCH (") == 5120
        numbers = [int(n) for n in re.findall(rb"^\* (\d+) FETCH", fast, re.MULTILINE)]
        assert numbers == list(range(1, 5121))
        # \Recent: this rev1 session saw all of them arrive (or claimed them at SELECT).
        assert b"* 5001 FETCH (UID 5001 FLAGS ($Near \\Flagged \\Seen \\Recent))\r\n" in fast
        assert b"* 5004 FETCH (UID 5004 FLAGS ($Near \\Flagged \\Recent))\r\n" in fast
        compare(c, b"UID 4000:*", b"FLAGS MODSEQ")
        compare(c, b"4990:5005,1:3", b"FLAGS")


def test_body_fetch_sets_seen_once_and_reports_flags(
    imap_server: MsgstoreServer, user: User
) -> None:
    """BODY[] of several messages: one \\Seen change for the set, FLAGS in each newly seen
    message's response (RFC 9051 §6.4.5), none for one already seen, none repeated after."""
    for n in range(4):
        imap_server.admin.deliver(user.name, message(f"body {n}", f"text {n}\r\n"))
    with login_raw(imap_server, user) as c, login_raw(imap_server, user) as other:
        exchange(c, b"e", b"ENABLE IMAP4rev2 CONDSTORE")
        exchange(c, b"s", b"SELECT INBOX")
        exchange(other, b"s", b"SELECT INBOX")
        exchange(c, b"p", b"STORE 2 +FLAGS.SILENT (\\Seen)")
        before = exchange(c, b"m", b"FETCH 1:* (MODSEQ)")
        modseqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b"".join(before))]
        top = max(modseqs)
        out = raw_reply(c, b"b", b"FETCH 1:3 (BODY[] MODSEQ)")
        responses = out.split(b"* ")[1:]
        assert len(responses) == 3
        for n, text in zip((1, 2, 3), responses, strict=True):
            assert text.startswith(b"%d FETCH (BODY[] {" % n)
            assert b"text %d\r\n" % (n - 1) in text
        assert responses[0].endswith(b" MODSEQ (%d) FLAGS (\\Seen))\r\n" % (top + 1))
        assert responses[1].endswith(b"text 1\r\n MODSEQ (%d))\r\n" % modseqs[1])
        assert b"FLAGS" not in responses[1]
        assert responses[2].endswith(b" MODSEQ (%d) FLAGS (\\Seen))\r\n" % (top + 1))
        # Reported already: the next command repeats none of it.
        quiet = exchange(c, b"n", b"NOOP")
        assert len(quiet) == 1, quiet
        assert quiet[0].startswith(b"n OK"), quiet
        # Another session learns of the change.
        seen = exchange(other, b"n", b"NOOP")
        assert b"* 1 FETCH (UID 1 FLAGS (\\Seen))" in seen
        assert b"* 3 FETCH (UID 3 FLAGS (\\Seen))" in seen
        flags = raw_reply(c, b"f", b"FETCH 1:* (FLAGS)")
        assert flags == (
            b"* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS (\\Seen))\r\n"
            b"* 3 FETCH (FLAGS (\\Seen))\r\n* 4 FETCH (FLAGS ())\r\n"
        )
