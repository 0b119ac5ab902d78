"""Debian's isync (``mbsync``) syncing msgstore with a local Maildir, both ways.

mbsync exercises the paths a sync client uses: CAPABILITY, LOGIN and AUTHENTICATE, LIST,
CREATE, SELECT, ``UID FETCH`` of flags and ``BODY.PEEK[]``, UIDPLUS APPEND, ``UID STORE`` and
EXPUNGE, with UIDVALIDITY tracked in its sync state (ECOSYSTEM.md §18). The test fails, it does
not skip, when mbsync is missing: CI installs the ``isync`` package.

Each side is reduced to a set of (folder, content hash, flags); after the final sync both
sides must equal the model the test kept of every change it made, so nothing is lost,
duplicated or left with the wrong flags.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from imapclient import IMAPClient  # type: ignore[import-untyped]

from tests.conversations.harness import MsgstoreServer, User
from tests.imap_clients.conftest import client

#: IMAP system flag <-> Maildir info letter (the letters mbsync writes, in Maildir order).
MAILDIR_FLAGS: Final = {
    b"\\Draft": "D",
    b"\\Flagged": "F",
    b"\\Answered": "R",
    b"\\Seen": "S",
    b"\\Deleted": "T",
}
LETTER_FLAGS: Final = {v: k for k, v in MAILDIR_FLAGS.items()}

#: Namespaces of other trees (public folders other tests create on the shared server);
#: mbsync is told to leave them alone, as a user syncing only their own mail would.
SHARED_PREFIXES: Final = ("Public", "Other Users")

_counter = itertools.count()


def mbsync_binary() -> str:
    path = shutil.which("mbsync")
    assert path is not None, "mbsync not found: install the Debian package isync"
    return path


def mail(tag: str, index: int, *, extra: str = "") -> bytes:
    """A small, unique message (LF line ends, as a Maildir holds it)."""
    day = 1 + index % 28
    return (
        f"From: Sender {index} <s{index}@example.org>\n"
        f"To: someone@example.org\n"
        f"Subject: {tag} message {index}\n"
        f"Date: Mon, {day:02d} Jan 2024 10:{index % 60:02d}:00 +0000\n"
        f"Message-ID: <{tag}.{index}@example.org>\n\n"
        f"Body of {tag} {index}.\n{extra}"
    ).encode()


def content_hash(raw: bytes) -> str:
    """Hash of a message independent of line ends and of mbsync's X-TUID marker."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    kept = [line for line in lines if not line.startswith(b"X-TUID: ")]
    return hashlib.sha256(b"\n".join(kept).rstrip(b"\n")).hexdigest()[:20]


@dataclass
class Maildir:
    """The near side: one Maildir++-free tree, ``SubFolders Verbatim``."""

    root: Path

    def folder(self, name: str) -> Path:
        path = self.root / name
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def add(self, folder: str, raw: bytes, flags: str = "") -> Path:
        base = f"{int(time.time())}.T{next(_counter)}.testhost"
        path = self.folder(folder)
        target = path / "cur" / f"{base}:2,{flags}" if flags else path / "new" / base
        target.write_bytes(raw)
        return target

    def files(self, folder: str) -> list[Path]:
        path = self.root / folder
        return sorted(p for sub in ("cur", "new") for p in (path / sub).iterdir())

    def find(self, folder: str, digest: str) -> Path:
        for path in self.files(folder):
            if content_hash(path.read_bytes()) == digest:
                return path
        raise AssertionError(f"{digest} not in near {folder}")

    def set_flags(self, path: Path, letters: str) -> Path:
        base = path.name.split(":2,")[0]
        target = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(set(letters)))}"
        path.rename(target)
        return target

    def flags_of(self, path: Path) -> str:
        return path.name.split(":2,")[1] if ":2," in path.name else ""

    def state(self) -> set[tuple[str, str, str]]:
        out = set()
        for folder in self.folders():
            for path in self.files(folder):
                letters = "".join(sorted(self.flags_of(path)))
                out.add((folder, content_hash(path.read_bytes()), letters))
        return out

    def folders(self) -> list[str]:
        return sorted(
            str(p.parent.relative_to(self.root)) for p in self.root.rglob("cur") if p.is_dir()
        )


def far_state(server: MsgstoreServer, user: User) -> set[tuple[str, str, str]]:
    out = set()
    with client(server, user) as c:
        for flags, _, name in c.list_folders():
            if b"\\Noselect" in flags or name.startswith(SHARED_PREFIXES):
                continue
            c.select_folder(name, readonly=True)
            uids = c.search(["ALL"])
            for chunk in range(0, len(uids), 200):
                fetched = c.fetch(uids[chunk : chunk + 200], ["FLAGS", "BODY.PEEK[]"])
                for data in fetched.values():
                    letters = "".join(
                        sorted(MAILDIR_FLAGS[f] for f in data[b"FLAGS"] if f in MAILDIR_FLAGS)
                    )
                    out.add((name, content_hash(data[b"BODY[]"]), letters))
            c.unselect_folder()
    return out


def uids_by_digest(c: IMAPClient) -> dict[str, int]:
    """UID of every message of the selected mailbox, by content hash."""
    fetched = c.fetch(c.search(["ALL"]), ["BODY.PEEK[]"])
    return {content_hash(data[b"BODY[]"]): uid for uid, data in fetched.items()}


def write_rc(path: Path, server: MsgstoreServer, user: User, near: Path, mech: str) -> None:
    path.write_text(
        f"IMAPAccount acct\nHost 127.0.0.1\nPort {server.port('imap.listen')}\n"
        f"User {user.name}\nPass {user.password}\nAuthMechs {mech}\nSSLType None\n\n"
        "IMAPStore far\nAccount acct\n\n"
        f"MaildirStore near\nPath {near}/\nInbox {near}/INBOX\nSubFolders Verbatim\n\n"
        "Channel all\nFar :far:\nNear :near:\n"
        'Patterns * !Public* "!Other Users*"\nCreate Both\nExpunge Both\n'
        "SyncState *\n"
    )


def sync(rc: Path) -> str:
    result = subprocess.run(
        [mbsync_binary(), "-c", str(rc), "all"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"mbsync failed ({result.returncode}):\n{result.stderr}"
    return result.stderr


class Model:
    """What both sides must hold: (folder, hash) -> Maildir flag letters."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], str] = {}

    def add(self, folder: str, raw: bytes, letters: str = "") -> str:
        digest = content_hash(raw)
        assert (folder, digest) not in self.messages
        self.messages[(folder, digest)] = "".join(sorted(letters))
        return digest

    def change(self, folder: str, digest: str, add: str = "", remove: str = "") -> None:
        letters = (set(self.messages[(folder, digest)]) | set(add)) - set(remove)
        self.messages[(folder, digest)] = "".join(sorted(letters))

    def remove(self, folder: str, digest: str) -> None:
        del self.messages[(folder, digest)]

    def state(self) -> set[tuple[str, str, str]]:
        return {(f, d, letters) for (f, d), letters in self.messages.items()}


def imap_flags(letters: str) -> list[bytes]:
    return [LETTER_FLAGS[x] for x in letters]


def test_thousand_message_two_way_sync_converges(
    clients_server: MsgstoreServer, tmp_path: Path
) -> None:
    """1,000 messages (600 far, 400 near), flags changed on both sides between syncs, new mail
    and deletions on both sides: after the final sync both sides hold the same messages with
    the same flags, and exactly the ones the model expects."""
    server = clients_server
    user = server.admin.add_user("sync")
    near = Maildir(tmp_path / "mail")
    rc = tmp_path / "mbsyncrc"
    write_rc(rc, server, user, near.root, "LOGIN")
    model = Model()

    far_mail = [mail("far", n) for n in range(600)]
    server.admin.deliver_many(user.name, (raw.replace(b"\n", b"\r\n") for raw in far_mail))
    far_digests = [model.add("INBOX", raw) for raw in far_mail]
    near_digests: list[str] = []
    for n in range(400):
        letters = "S" if n % 2 else ""
        raw = mail("near", n)
        near.add("INBOX", raw, letters)
        near_digests.append(model.add("INBOX", raw, letters))
    for folder in ("Drafts", "Junk", "Sent", "Trash"):
        near.folder(folder)

    sync(rc)
    assert far_state(server, user) == near.state() == model.state()

    # Round 1: flags on both sides, deletions on both sides, new mail on both sides.
    with client(server, user) as c:
        c.select_folder("INBOX")
        by_digest = uids_by_digest(c)
        seen = [by_digest[d] for d in far_digests[::3]]
        c.add_flags(seen, [b"\\Seen"])
        flagged = [by_digest[d] for d in near_digests[::5]]
        c.add_flags(flagged, [b"\\Flagged"])
        for d in far_digests[::3]:
            model.change("INBOX", d, add="S")
        for d in near_digests[::5]:
            model.change("INBOX", d, add="F")
        gone = [by_digest[d] for d in far_digests[1:40:4]]
        c.add_flags(gone, [b"\\Deleted"])
        c.expunge()
        for d in far_digests[1:40:4]:
            model.remove("INBOX", d)
        for n in range(600, 610):
            raw = mail("far", n)
            c.append("INBOX", raw.replace(b"\n", b"\r\n"), flags=[b"\\Answered"])
            model.add("INBOX", raw, "R")
    for d in near_digests[1::7]:
        path = near.find("INBOX", d)
        near.set_flags(path, near.flags_of(path) + "R")
        model.change("INBOX", d, add="R")
    for d in far_digests[2:60:6]:
        near.find("INBOX", d).unlink()
        model.remove("INBOX", d)
    for n in range(400, 410):
        raw = mail("near", n)
        near.add("INBOX", raw, "F")
        model.add("INBOX", raw, "F")

    sync(rc)
    # Round 2: conflicting changes to the same messages on both sides.
    both = [d for d in near_digests[100:160] if ("INBOX", d) in model.messages]
    with client(server, user) as c:
        c.select_folder("INBOX")
        by_digest = uids_by_digest(c)
        c.add_flags([by_digest[d] for d in both], [b"\\Answered"])
        c.remove_flags([by_digest[d] for d in both[::2]], [b"\\Seen"])
    for index, d in enumerate(both):
        path = near.find("INBOX", d)
        near.set_flags(path, near.flags_of(path) + "F")
        model.change("INBOX", d, add="RF", remove="S" if index % 2 == 0 else "")

    sync(rc)
    sync(rc)  # idempotent: a second run changes nothing
    far, local = far_state(server, user), near.state()
    assert far == local, (sorted(far - local)[:5], sorted(local - far)[:5])
    assert far == model.state()
    assert len([m for m in far if m[0] == "INBOX"]) == 1000 - 10 - 10 + 20


def test_folders_of_a_second_account(clients_server: MsgstoreServer, tmp_path: Path) -> None:
    """A second account with Sent, Trash and nested folders on both sides, over AUTHENTICATE
    PLAIN: folders created on one side appear on the other, mail moved between folders is
    neither lost nor duplicated, and the first account is untouched."""
    server = clients_server
    bystander = server.admin.add_user("bystander")
    server.admin.deliver(bystander.name, mail("bystander", 1).replace(b"\n", b"\r\n"))
    user = server.admin.add_user("folders")
    near = Maildir(tmp_path / "mail")
    rc = tmp_path / "mbsyncrc"
    write_rc(rc, server, user, near.root, "PLAIN")
    model = Model()
    with client(server, user) as c:
        c.create_folder("Lists/python/announce")
        for n in range(5):
            raw = mail("list", n)
            c.append("Lists/python/announce", raw.replace(b"\n", b"\r\n"), flags=[b"\\Seen"])
            model.add("Lists/python/announce", raw, "S")
        for n in range(3):
            raw = mail("trash", n)
            c.append("Trash", raw.replace(b"\n", b"\r\n"), flags=[b"\\Seen"])
            model.add("Trash", raw, "S")
    for n in range(4):
        raw = mail("sent", n)
        near.add("Sent", raw, "S")
        model.add("Sent", raw, "S")
    for n in range(3):
        raw = mail("archive", n)
        near.add("Archive/2024/Q1", raw, "SR")
        model.add("Archive/2024/Q1", raw, "RS")
    near.add("INBOX", mail("inbox", 0))
    model.add("INBOX", mail("inbox", 0))

    sync(rc)
    with client(server, user) as c:
        names = {name for _, _, name in c.list_folders()}
        assert {"Archive/2024/Q1", "Sent", "Trash", "Lists/python/announce"} <= names
        # A client-side "move to Trash" on the far side: MOVE, then the near side follows.
        c.select_folder("Sent")
        moved = [content_hash(mail("sent", n)) for n in range(2)]
        uids = [uid for digest, uid in uids_by_digest(c).items() if digest in moved]
        assert len(uids) == 2
        c.move(uids, "Trash")
    for n in range(2):
        model.remove("Sent", content_hash(mail("sent", n)))
        model.add("Trash", mail("sent", n), "S")
    # Near side: empty Trash of the "trash" messages, delete a nested-folder message.
    for n in range(3):
        near.find("Trash", content_hash(mail("trash", n))).unlink()
        model.remove("Trash", content_hash(mail("trash", n)))
    digest = content_hash(mail("archive", 0))
    near.find("Archive/2024/Q1", digest).unlink()
    model.remove("Archive/2024/Q1", digest)

    sync(rc)
    sync(rc)
    far = far_state(server, user)
    assert far == near.state() == model.state()
    assert {f for f, _, _ in far} == {
        "INBOX",
        "Sent",
        "Trash",
        "Archive/2024/Q1",
        "Lists/python/announce",
    }
    assert len(server.admin.inbox(bystander.name)) == 1
