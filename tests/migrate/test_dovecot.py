"""Real data not written by us: Dovecot (Debian's dovecot-imapd) writes a Maildir++ tree from
messages appended over IMAP with flags, keywords and internal dates; ``msgstore migrate``
copies it -- from the stopped server's directory, and from the live server over IMAP -- and
every message must come out byte for byte as Dovecot served it, with its flags, keywords,
internal date and UID, under the folder's UIDVALIDITY. A second run copies nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient  # type: ignore[import-untyped]

from msgstore.auth.passwords import verify_password
from tests.migrate.conftest import expect, msgstore, read_store, stored_hash
from tests.migrate.dovecot import Dovecot

#: folder -> messages as (flags, internal date, bytes)
FOLDERS: dict[str, list[tuple[tuple[str, ...], str, bytes]]] = {
    "INBOX": [
        (
            ("\\Seen", "$Label1", "Work"),
            "03-Feb-2021 10:11:12 +0100",
            b"From: Ann <ann@example.org>\r\nTo: alice@example.org\r\nSubject: first\r\n"
            b"Message-ID: <first@example.org>\r\n\r\nHello Alice.\r\nFrom here on, more.\r\n",
        ),
        (
            ("\\Answered", "\\Flagged"),
            "29-Feb-2024 23:59:59 -0800",
            b"From: bob@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
            b"Message-ID: <second@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
            b"Content-Type: text/plain\r\n\r\npart one\r\n--XX--\r\n",
        ),
        (
            ("\\Deleted",),
            "01-Jan-2020 00:00:00 +0000",
            b"Subject: goes away\r\nMessage-ID: <gone@example.org>\r\n\r\nexpunged\r\n",
        ),
        (
            ("\\Draft", "\\Seen", "Work"),
            "15-Jun-2022 12:00:00 +0530",
            b"Subject: no message-id\r\n\r\nbody without a Message-ID\r\n",
        ),
        ((), "16-Jun-2022 12:00:00 +0000", b"Subject: plain\r\n\r\n" + b"x" * 5000 + b"\r\n"),
    ],
    "Sent": [
        (
            ("\\Seen",),
            "10-Oct-2023 08:00:00 +0200",
            b"From: alice@example.org\r\nSubject: sent\r\nMessage-ID: <sent@example.org>\r\n\r\n"
            b"> From a quote\r\n",
        ),
    ],
    "Lists/python": [
        (
            ("$Label1",),
            "11-Nov-2025 11:11:11 +0000",
            b"List-Id: <python.example.org>\r\nSubject: [py] one\r\n"
            b"Message-ID: <py1@example.org>\r\n\r\nimport this\r\n",
        ),
        ((), "12-Nov-2025 11:11:11 +0000", b"Subject: [py] two\r\n\r\nimport antigravity\r\n"),
    ],
    "R\u00e9sum\u00e9": [
        (
            ("\\Flagged",),
            "01-Mar-2019 09:30:00 +0000",
            b"Subject: cv\r\n\r\nmy r\xc3\xa9sum\xc3\xa9\r\n",
        ),
    ],
}


@dataclass(frozen=True)
class Served:
    uidvalidity: int
    uidnext: int
    messages: dict[int, tuple[bytes, frozenset[str], dt.datetime]]


def fill(server: Dovecot, user: str = "alice") -> None:
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    client.login(user, server.users[user])
    for folder, messages in FOLDERS.items():
        if folder != "INBOX":
            client.create_folder(folder)
        for flags, when, data in messages:
            date = dt.datetime.strptime(when, "%d-%b-%Y %H:%M:%S %z")
            client.append(folder, data, flags=flags, msg_time=date)
    client.select_folder("INBOX")
    client.expunge()  # the \Deleted message: a gap in the UIDs
    client.logout()


def served(server: Dovecot, user: str = "alice") -> dict[str, Served]:
    """What Dovecot serves: per folder UIDVALIDITY, UIDNEXT, and per UID bytes/flags/date."""
    client = IMAPClient("127.0.0.1", port=server.port, ssl=False)
    client.normalise_times = False  # timezone-aware INTERNALDATE
    client.login(user, server.users[user])
    out: dict[str, Served] = {}
    for attrs, _, name in client.list_folders():
        if {b"\\Noselect", b"\\NonExistent"} & set(attrs):
            continue
        info = client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch(uids, ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"]) if uids else {}
        out[name] = Served(
            int(info[b"UIDVALIDITY"]),
            int(info[b"UIDNEXT"]),
            {
                int(uid): (
                    bytes(item[b"BODY[]"]),
                    frozenset(f.decode() for f in item[b"FLAGS"] if f != b"\\Recent"),
                    item[b"INTERNALDATE"],
                )
                for uid, item in fetched.items()
            },
        )
    client.logout()
    return out


def check_same(data: Path, account: str, truth: dict[str, Served]) -> None:
    store = read_store(data, account)
    for name, source in truth.items():
        assert name in store, f"{name} missing; store has {sorted(store)}"
        box = store[name]
        assert box.uidvalidity == source.uidvalidity, name
        assert sorted(box.messages) == sorted(source.messages), name
        assert box.uidnext >= source.uidnext, name
        for uid, (body, flags, when) in source.messages.items():
            got = box.messages[uid]
            assert got.data == body, (name, uid)
            assert set(got.flags) == set(flags), (name, uid, got.flags, flags)
            assert got.internal_date.timestamp() == when.timestamp(), (name, uid)
    migrated = sum(len(s.messages) for s in truth.values())
    assert migrated == sum(len(m) for m in FOLDERS.values()) - 1


def test_maildir_written_by_dovecot(dovecot: Dovecot, tmp_path: Path) -> None:
    fill(dovecot)
    truth = served(dovecot)
    assert truth["INBOX"].messages
    assert 3 not in truth["INBOX"].messages
    dovecot.stop()
    data = tmp_path / "data"
    maildir = dovecot.maildir("alice")
    result = msgstore(
        data, "migrate", "maildir", str(maildir), "--account", "alice", "--create", "--quiet",
        "--passwd-file", str(dovecot.root / "passwd"),  # Dovecot's own passwd-file
    )  # fmt: skip
    assert result.code == 0, result
    assert "copied 8 message(s)" in result.out, result.out
    check_same(data, "alice", truth)
    assert verify_password("secret", stored_hash(data, "alice")).ok
    again = msgstore(data, "migrate", "maildir", str(maildir), "--account", "alice", "--quiet")
    expect(again, 0, "copied 0 message(s)", "8 already present")
    check_same(data, "alice", truth)


def test_live_dovecot_over_imap(dovecot: Dovecot, tmp_path: Path) -> None:
    fill(dovecot)
    truth = served(dovecot)
    data = tmp_path / "data"
    args = (
        "migrate", "imap", "--host", "127.0.0.1", "--port", str(dovecot.port), "--user", "alice",
        "--security", "plain", "--create", "--quiet",
    )  # fmt: skip
    env = {"MSGSTORE_MIGRATE_PASSWORD": "secret"}
    result = msgstore(data, *args, env=env)
    assert result.code == 0, result
    check_same(data, "alice", truth)
    again = msgstore(data, *args, env=env)
    expect(again, 0, "copied 0 message(s)")


class Cutter:
    """A loopback TCP relay in front of Dovecot that drops the connection once the server has
    sent ``limit`` octets (a source dying half-way through a migration)."""

    def __init__(self, port: int, limit: int) -> None:
        self.target = port
        self.limit = limit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while True:
                client, _ = self.sock.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()
        except OSError:
            return

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target))
        sent = [0]

        def pump(src: socket.socket, dst: socket.socket, count: bool) -> None:
            try:
                while chunk := src.recv(4096):
                    if count:
                        sent[0] += len(chunk)
                        if sent[0] > self.limit:
                            break
                    dst.sendall(chunk)
            except OSError:
                pass
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        up = threading.Thread(target=pump, args=(client, upstream, False), daemon=True)
        up.start()
        pump(upstream, client, True)
        up.join(5)
        client.close()
        upstream.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def big_inbox(dovecot: Dovecot) -> int:
    """40 messages of ~20 KiB in bob's INBOX (the source fetches ~256 KiB per command);
    yields how many."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.port)
    client.login("bob", "hunter2")
    for i in range(40):
        body = (
            f"Subject: m{i}\r\nMessage-ID: <m{i}@example.org>\r\n\r\n".encode()
            + (b"y" * 76 + b"\r\n") * 256
        )
        client.append("INBOX", "(\\Seen)" if i % 2 else "()", None, body)
    client.logout()
    return 40


def test_imap_source_dropping_the_connection_resumes(
    dovecot: Dovecot, big_inbox: int, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {"MSGSTORE_MIGRATE_PASSWORD": "hunter2"}
    cutter = Cutter(dovecot.port, limit=400_000)
    try:
        first = msgstore(
            data, "migrate", "imap", "--host", "127.0.0.1", "--port", str(cutter.port),
            "--user", "bob", "--security", "plain", "--create", "--quiet", env=env,
        )  # fmt: skip
    finally:
        cutter.close()
    expect(first, 1, "connection lost", "run again to resume")
    part = read_store(data, "bob")["INBOX"].messages
    assert 0 < len(part) < big_inbox, len(part)
    second = msgstore(
        data, "migrate", "imap", "--host", "127.0.0.1", "--port", str(dovecot.port),
        "--user", "bob", "--security", "plain", "--quiet", env=env,
    )  # fmt: skip
    assert second.code == 0, second
    assert f"{len(part)} already present" in second.out, second.out
    box = read_store(data, "bob")["INBOX"]
    bodies = sorted(m.data for m in box.messages.values())
    assert len(bodies) == big_inbox
    assert len(set(bodies)) == big_inbox
    assert sorted(box.messages) == list(range(1, big_inbox + 1))  # source UIDs kept
    for uid, message in box.messages.items():
        assert ("\\Seen" in message.flags) == bool((uid - 1) % 2)


def test_imap_source_over_tls_and_starttls(tmp_path: Path) -> None:
    """The source's certificate is verified (here against a test CA given with --ca-file);
    implicit TLS and STARTTLS both work, and a certificate that does not verify is refused."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    server = Dovecot.start({"carol": "s3cret"}, tls=(chain, cert.private_key_pem.bytes()))
    try:
        client = imaplib.IMAP4("127.0.0.1", server.port)
        client.login("carol", "s3cret")  # plaintext allowed on loopback for the fill
        client.append("INBOX", "(\\Seen)", None, b"Subject: secret\r\n\r\nover TLS\r\n")
        client.logout()
        ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        env = {"MSGSTORE_MIGRATE_PASSWORD": "s3cret"}
        common = ("migrate", "imap", "--host", "127.0.0.1", "--user", "carol", "--quiet")
        refused = msgstore(
            tmp_path / "data", *common, "--port", str(server.tls_port), "--create", env=env
        )
        expect(refused, 1, "cannot connect: TLS failed: CERTIFICATE_VERIFY_FAILED")
        assert "copied 0 message(s)" in refused.out
        tls = msgstore(
            tmp_path / "data", *common, "--port", str(server.tls_port), "--create",
            "--ca-file", str(ca_file), env=env,
        )  # fmt: skip
        expect(tls, 0, "copied 1 message(s)")
        starttls = msgstore(
            tmp_path / "data", *common, "--port", str(server.port), "--security", "starttls",
            "--ca-file", str(ca_file), env=env,
        )  # fmt: skip
        expect(starttls, 0, "copied 0 message(s)", "1 already present")
        (stored,) = read_store(tmp_path / "data", "carol")["INBOX"].messages.values()
        assert stored.data == b"Subject: secret\r\n\r\nover TLS\r\n"
    finally:
        server.stop(wait=False)
        server.cleanup()
