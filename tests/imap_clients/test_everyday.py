"""The everyday flows of Thunderbird, Apple Mail and K-9, driven with imapclient.

What a desktop or phone client does on start-up and while open: LIST with SPECIAL-USE and
CHILDREN, STATUS of every folder, SELECT with CONDSTORE, header/flag/BODYSTRUCTURE fetches,
partial body fetches, IDLE for new mail, MOVE to Trash, UID EXPUNGE, APPEND to Sent with
APPENDUID, and a QRESYNC resynchronisation after reconnecting (RFC 7162 §3.2.5).
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from tests.conversations.harness import MsgstoreServer, User, message
from tests.imap_clients.conftest import client, exchange, raw

MULTIPART = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: report\r\n"
    b"Date: Tue, 02 Jan 2024 09:00:00 +0100\r\nMessage-ID: <report@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
    b'--b1\r\nContent-Type: application/pdf; name="r.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="r.pdf"\r\n\r\n'
    b"JVBERi0xLjQKJcfsj6IK\r\n--b1--\r\n"
)


def fill(server: MsgstoreServer, user: User, count: int) -> None:
    for n in range(count):
        server.admin.deliver(user.name, message(f"hello {n}", f"Body number {n}.\r\n"))


def test_folder_pane_list_and_status(clients_server: MsgstoreServer) -> None:
    """LIST "" "*" names the special-use folders and marks children; STATUS answers for each
    selectable folder, as a client refreshing its folder pane asks."""
    user = clients_server.admin.add_user("pane")
    fill(clients_server, user, 3)
    with client(clients_server, user) as c:
        assert c.has_capability("SPECIAL-USE")
        assert c.has_capability("CHILDREN")
        c.create_folder("Work/2024/Q1")
        listed = {
            name: set(flags)
            for flags, _, name in c.list_folders()
            if not name.startswith(("Public", "Other Users"))  # other tests' shared folders
        }
        assert set(listed) == {
            "INBOX",
            "Drafts",
            "Junk",
            "Sent",
            "Trash",
            "Work",
            "Work/2024",
            "Work/2024/Q1",
        }
        for name, use in [("Sent", b"\\Sent"), ("Trash", b"\\Trash"), ("Drafts", b"\\Drafts")]:
            assert use in listed[name], listed[name]
        assert b"\\HasChildren" in listed["Work"]
        assert b"\\HasChildren" in listed["Work/2024"]
        assert b"\\HasNoChildren" in listed["Work/2024/Q1"]
        assert b"\\HasNoChildren" in listed["INBOX"]
        typ, data = c._imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
        assert typ == "OK"
        _, data = c._imap._untagged_response(typ, data, "LIST")
        special = {name for _, _, name in c._proc_folder_list(data)}
        assert special == {"Drafts", "Junk", "Sent", "Trash"}
        assert c.find_special_folder(b"\\Sent") == "Sent"
        for name in listed:
            status = c.folder_status(name, ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY"])
            expected = 3 if name == "INBOX" else 0
            assert status[b"MESSAGES"] == expected
            assert status[b"UNSEEN"] == expected
            assert status[b"UIDNEXT"] == expected + 1
            assert status[b"UIDVALIDITY"] > 0


def test_message_list_and_reading(clients_server: MsgstoreServer) -> None:
    """SELECT with CONDSTORE, the message-list FETCH, BODYSTRUCTURE, BODY.PEEK[] (no \\Seen)
    against BODY[] (sets \\Seen), and partial fetches of the whole message and of a part."""
    user = clients_server.admin.add_user("reader")
    fill(clients_server, user, 2)
    clients_server.admin.deliver(user.name, MULTIPART)
    with client(clients_server, user) as c:
        assert c.has_capability("CONDSTORE")
        assert c.enable("CONDSTORE") == [b"CONDSTORE"]
        selected = c.select_folder("INBOX")
        assert selected[b"EXISTS"] == 3
        assert selected[b"HIGHESTMODSEQ"] > 0
        listing = c.fetch(
            [1, 2, 3],
            [
                "UID",
                "FLAGS",
                "RFC822.SIZE",
                "INTERNALDATE",
                "MODSEQ",
                "ENVELOPE",
                "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]",
            ],
        )
        assert sorted(listing) == [1, 2, 3]
        third = listing[3]
        assert third[b"FLAGS"] == (b"\\Recent",)  # this session is the first to see it
        assert third[b"RFC822.SIZE"] == len(MULTIPART)
        assert third[b"ENVELOPE"].subject == b"report"
        assert third[b"MODSEQ"][0] > 0
        header = third[b"BODY[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]"]
        assert header.startswith(b"From: Ann <ann@example.org>\r\n")
        assert header.endswith(b"\r\n\r\n")
        structure = c.fetch([3], ["BODYSTRUCTURE"])[3][b"BODYSTRUCTURE"]
        assert structure.is_multipart
        parts, subtype = structure[0], structure[1]
        assert subtype == b"mixed"
        assert parts[0][:2] == (b"text", b"plain")
        assert parts[1][:2] == (b"application", b"pdf")
        assert parts[1][5] == b"base64"
        peeked = c.fetch([3], ["BODY.PEEK[]"])[3]
        assert peeked[b"BODY[]"] == MULTIPART
        assert c.get_flags([3])[3] == (b"\\Recent",)
        assert c.fetch([3], ["BODY[]"])[3][b"BODY[]"] == MULTIPART
        assert b"\\Seen" in c.get_flags([3])[3]
        assert c.fetch([3], ["BODY.PEEK[]<0.10>"])[3][b"BODY[]<0>"] == MULTIPART[:10]
        assert c.fetch([3], ["BODY.PEEK[]<5000.10>"])[3][b"BODY[]<5000>"] == b""
        assert c.fetch([3], ["BODY.PEEK[2]<4.6>"])[3][b"BODY[2]<4>"] == b"Ri0xLj"
        assert (
            c.fetch([3], ["BODY.PEEK[1]"])[3][b"BODY[1]"] == b"See attached."
        )  # the CRLF before "--b1" is the boundary's
        assert c.fetch([3], ["BINARY.PEEK[2]"])[3][b"BINARY[2]"].startswith(b"%PDF-1.4")


def test_idle_push_of_a_cli_delivery(clients_server: MsgstoreServer) -> None:
    """An IDLE session on INBOX gets EXISTS within a second of ``msgstore deliver`` running
    in another process."""
    user = clients_server.admin.add_user("idler")
    fill(clients_server, user, 1)
    with client(clients_server, user) as c:
        c.select_folder("INBOX")
        c.idle()
        start = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "msgstore.cli",
                "--config",
                str(clients_server.config_path),
                "deliver",
                "--to",
                user.name,
            ],
            input=message("pushed"),
            capture_output=True,
            timeout=30,
        )
        delivered = time.monotonic()
        assert proc.returncode == 0, proc.stderr
        responses = c.idle_check(timeout=3)
        pushed = time.monotonic()
        c.idle_done()
        assert (2, b"EXISTS") in responses, responses
        assert pushed - delivered < 1.0, (delivered - start, pushed - delivered)
        assert c.fetch([2], ["ENVELOPE"])[2][b"ENVELOPE"].subject == b"pushed"


def test_delete_to_trash_send_and_expunge(clients_server: MsgstoreServer) -> None:
    """Deleting moves to Trash (MOVE), emptying Trash is UID EXPUNGE of only the chosen
    UIDs, and saving a sent message is APPEND to Sent answered with APPENDUID."""
    user = clients_server.admin.add_user("mover")
    fill(clients_server, user, 4)
    with client(clients_server, user) as c:
        assert c.has_capability("MOVE")
        assert c.has_capability("UIDPLUS")
        c.select_folder("INBOX")
        c.move([2, 3], "Trash")
        assert c.search(["ALL"]) == [1, 4]
        trash = c.select_folder("Trash")
        assert trash[b"EXISTS"] == 2
        uids = c.search(["ALL"])
        c.add_flags(uids, [b"\\Deleted"])
        c.uid_expunge(uids[:1])
        assert c.search(["ALL"]) == uids[1:]
        assert c.search(["DELETED"]) == uids[1:]
        sent_status = c.folder_status("Sent", ["UIDVALIDITY", "UIDNEXT"])
        reply = c.append("Sent", message("my reply"), flags=[b"\\Seen"])
        assert reply == (
            b"[APPENDUID %d %d] APPEND completed"
            % (sent_status[b"UIDVALIDITY"], sent_status[b"UIDNEXT"])
        )
        c.select_folder("Sent")
        flags = c.get_flags([sent_status[b"UIDNEXT"]])[sent_status[b"UIDNEXT"]]
        assert set(flags) - {b"\\Recent"} == {b"\\Seen"}


def test_qresync_after_reconnect(clients_server: MsgstoreServer) -> None:
    """A client remembers UIDVALIDITY and HIGHESTMODSEQ, goes offline while another session
    flags and expunges, then SELECTs with QRESYNC: it gets VANISHED (EARLIER) for the expunged
    UIDs and FETCH FLAGS MODSEQ for the changed ones, nothing for the unchanged."""
    user = clients_server.admin.add_user("phone")
    fill(clients_server, user, 6)
    with raw(clients_server, user) as phone:
        lines = exchange(phone, b"s", b"SELECT INBOX (CONDSTORE)")
        validity = next(x for x in lines if b"UIDVALIDITY" in x).split()[3].rstrip(b"]")
        modseq = next(x for x in lines if b"HIGHESTMODSEQ" in x).split()[3].rstrip(b"]")
        exchange(phone, b"l", b"LOGOUT")
    with client(clients_server, user) as desktop:
        desktop.select_folder("INBOX")
        desktop.add_flags([2], [b"\\Flagged"])
        desktop.add_flags([3, 5], [b"\\Deleted"])
        desktop.uid_expunge([3, 5])
    with raw(clients_server, user) as phone:
        exchange(phone, b"e", b"ENABLE QRESYNC")
        lines = exchange(
            phone, b"s", b"SELECT INBOX (QRESYNC (" + validity + b" " + modseq + b" 1:6))"
        )
        assert b"* VANISHED (EARLIER) 3,5" in lines, lines
        fetches = [x for x in lines if b" FETCH " in x]
        assert len(fetches) == 1, fetches
        assert fetches[0].startswith(b"* 2 FETCH (")
        assert b"\\Flagged" in fetches[0]
        assert b"UID 2" in fetches[0]
        assert b"MODSEQ (" in fetches[0]
        assert b"* 4 EXISTS" in lines
        assert lines[-1].startswith(b"s OK [READ-WRITE]")


def test_imapclient_sees_other_sessions_changes(clients_server: MsgstoreServer) -> None:
    """Two clients on one mailbox (a phone and a desktop): NOOP on one reports the other's
    flag change and expunge, with the sequence numbers shifting as RFC 9051 §7.5.1 says."""
    user = clients_server.admin.add_user("twice")
    fill(clients_server, user, 3)
    with client(clients_server, user) as a, client(clients_server, user) as b:
        a.select_folder("INBOX")
        b.select_folder("INBOX")
        b.add_flags([1], [b"\\Seen"])
        b.add_flags([2], [b"\\Deleted"])
        b.expunge()
        updates = a.noop()[1]
        assert (2, b"EXPUNGE") in updates, updates
        flag_updates = [u for u in updates if len(u) > 1 and u[1] == b"FETCH"]
        assert any(u[0] == 1 and b"\\Seen" in dict_of(u[2])[b"FLAGS"] for u in flag_updates)
        assert a.search(["ALL"]) == [1, 3]


def dict_of(items: tuple[Any, ...]) -> dict[Any, Any]:
    return dict(zip(items[::2], items[1::2], strict=True))
