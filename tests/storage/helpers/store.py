"""Shared pieces of the store fault, crash and damage tests.

- self-checking messages: each carries the SHA-256 of its own body in a header, so a message
  found in the store after a crash can be judged complete or torn without knowing who sent it;
- opening the local backend the way the servers do, with an optional fault plan;
- reading the data directory as the filesystem sees it (message files, temp files, the whole
  tree) and checking it against what the backend reports (rows, sizes, quota).

Layout (ARCHITECTURE.md): ``DATA/users/<aa>/<account-id>/mail/<mailbox-id>/<uid>``, staging in
``DATA/tmp/``.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.flags import Flags
from msgstore.core.ids import AccountId, MailboxId, Uid, UidSet
from msgstore.core.names import INBOX
from msgstore.storage.base import AppendResult, Backend, NewAccount, Want
from msgstore.storage.local import LocalBackend
from msgstore.storage.local.faults import FaultPlan

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
#: Any string the backend stores as-is; these tests never log in.
PASSWORD_HASH: Final = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
MAX_STAGE_OCTETS: Final = 10 * 1024 * 1024
_CHECK_HEADER: Final = b"X-Body-Sha256: "
_WORDS: Final = (
    b"mail store durable fsync rename link commit index quota crash kill recover "
    b"unicode mailbox envelope header body part octet modseq uidnext"
).split()


# --- messages --------------------------------------------------------------------------------


def make_message(rng: random.Random, tag: str, *, body_octets: int | None = None) -> bytes:
    """A CRLF message whose ``X-Body-Sha256`` header is the SHA-256 of its body.

    ``body_octets`` fixes the body size (rounded up to whole lines); by default it is random
    between 200 octets and 8 KiB, so kills land in writes of different lengths.
    """
    target = body_octets if body_octets is not None else rng.randint(200, 8192)
    lines: list[bytes] = []
    size = 0
    while size < target:
        line = b" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + b"\r\n"
        lines.append(line)
        size += len(line)
    body = b"".join(lines)
    head = (
        f"From: Crash Test <crash@example.org>\r\n"
        f"To: victim@example.org\r\n"
        f"Subject: message {tag}\r\n"
        f"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n"
        f"Message-ID: <{tag}@msgstore.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
    ).encode("ascii")
    check = _CHECK_HEADER + hashlib.sha256(body).hexdigest().encode("ascii") + b"\r\n"
    return head + check + b"\r\n" + body


def message_is_complete(data: bytes) -> bool:
    """True if ``data`` is a message from :func:`make_message`, whole and unchanged."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.startswith(_CHECK_HEADER):
            return line[len(_CHECK_HEADER) :].decode("ascii") == hashlib.sha256(body).hexdigest()
    return False


# --- the backend -----------------------------------------------------------------------------


async def open_local(data_dir: Path, faults: FaultPlan | None = None) -> LocalBackend:
    """Open (and recover) the local store in ``data_dir``, with an optional fault plan."""
    return await LocalBackend.open(data_dir, fault_plan=faults)


async def new_account(backend: Backend, name: str) -> AccountInfo:
    return await backend.create_account(NewAccount(name=name, password_hash=PASSWORD_HASH))


async def inbox_of(backend: Backend, account: AccountId) -> MailboxId:
    return (await backend.get_mailbox(account, INBOX)).id


async def add_message(
    backend: Backend,
    account: AccountId,
    mailbox: MailboxId,
    data: bytes,
    *,
    flags: Flags = frozenset(),
) -> AppendResult:
    """Stage ``data`` and append it: the path APPEND, LMTP and the CLI all take."""
    async with backend.stage(max_octets=MAX_STAGE_OCTETS) as staged:
        await staged.write(data)
        await staged.finish()
        return await backend.append(account, mailbox, staged, flags=flags)


async def read_body(backend: Backend, account: AccountId, mailbox: MailboxId, uid: Uid) -> bytes:
    """The stored bytes of one message, read through ``open_body``."""
    async with backend.open_body(account, mailbox, uid) as reader:
        size = reader.size
        data = await reader.read(0, size)
        assert len(data) == size, f"open_body read {len(data)} octets of {size}"
        return data


# --- the data directory ----------------------------------------------------------------------


def account_dir(data_dir: Path, account: AccountId) -> Path:
    """``DATA/users/<aa>/<account-id>``: found by id, whatever the fan-out prefix is."""
    found = sorted((data_dir / "users").glob(f"*/{int(account)}"))
    assert len(found) == 1, f"account {account}: expected one tree, found {found}"
    return found[0]


@dataclass(frozen=True, slots=True)
class MailFiles:
    """What the filesystem holds under one account's ``mail/``."""

    files: dict[tuple[int, int], int]  # (mailbox id, uid) -> file size
    strays: list[Path]  # anything that is not mail/<number>/<number> as a regular file


def mail_files(data_dir: Path, account: AccountId) -> MailFiles:
    files: dict[tuple[int, int], int] = {}
    strays: list[Path] = []
    mail = account_dir(data_dir, account) / "mail"
    if not mail.exists():
        return MailFiles(files, strays)
    for mbox_dir in sorted(mail.iterdir()):
        if not (mbox_dir.is_dir() and mbox_dir.name.isdigit()):
            strays.append(mbox_dir)
            continue
        for entry in sorted(mbox_dir.iterdir()):
            if entry.name.isdigit() and entry.is_file() and not entry.is_symlink():
                files[int(mbox_dir.name), int(entry.name)] = entry.stat().st_size
            else:
                strays.append(entry)
    return MailFiles(files, strays)


def tmp_files(data_dir: Path) -> list[Path]:
    """Everything left in the staging directory ``DATA/tmp``."""
    tmp = data_dir / "tmp"
    return sorted(tmp.rglob("*")) if tmp.exists() else []


def tree(data_dir: Path) -> dict[str, str]:
    """Every path under ``data_dir`` with its type and content hash.

    SQLite's shared-memory index (``*-shm``) is recorded by presence only: readers write their
    read marks there, so it changes on a pure read.
    """
    out: dict[str, str] = {}
    for path in sorted(data_dir.rglob("*")):
        rel = str(path.relative_to(data_dir))
        if path.is_symlink():
            out[rel] = "symlink"
        elif path.is_dir():
            out[rel] = "dir"
        elif path.name.endswith("-shm"):
            out[rel] = "shm"
        else:
            out[rel] = "file " + hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# --- consistency -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxState:
    uidnext: int
    highestmodseq: int
    messages: dict[int, tuple[int, bytes]]  # uid -> (size, sha256)


async def check_account(
    backend: Backend, data_dir: Path, account: AccountId
) -> dict[int, MailboxState]:
    """Check one account's rows against its files and quota, and return what it holds.

    Asserts: every row has its file, of the recorded size; no file without a row and nothing
    else under ``mail/``; quota usage equals the sum of the sizes and the message count;
    UIDs are below UIDNEXT and modseqs at most HIGHESTMODSEQ.
    """
    state: dict[int, MailboxState] = {}
    rows: dict[tuple[int, int], int] = {}
    for info in await backend.list_mailboxes(account):
        status = await backend.mailbox_status(account, info.id)
        snap = await backend.snapshot(account, info.id)
        assert list(snap.uids) == sorted(set(snap.uids)), "snapshot UIDs not strictly ascending"
        metas = await backend.fetch_meta(account, info.id, UidSet.from_uids(snap.uids), Want.FLAGS)
        assert [m.uid for m in metas] == list(snap.uids), "fetch_meta and snapshot disagree"
        assert status.messages == len(metas)
        assert status.uidnext == snap.uidnext
        assert status.highestmodseq == snap.highestmodseq
        for meta in metas:
            assert meta.uid < snap.uidnext, f"UID {meta.uid} >= UIDNEXT {snap.uidnext}"
            assert meta.modseq <= snap.highestmodseq
            rows[int(info.id), int(meta.uid)] = meta.size
        assert status.size_octets == sum(m.size for m in metas)
        state[int(info.id)] = MailboxState(
            uidnext=int(snap.uidnext),
            highestmodseq=int(snap.highestmodseq),
            messages={int(m.uid): (m.size, m.sha256) for m in metas},
        )
    on_disk = mail_files(data_dir, account)
    assert not on_disk.strays, f"unexpected entries under mail/: {on_disk.strays}"
    orphans = sorted(set(on_disk.files) - set(rows))
    assert not orphans, f"message files without an index row (mailbox, uid): {orphans}"
    dangling = sorted(set(rows) - set(on_disk.files))
    assert not dangling, f"index rows without a message file (mailbox, uid): {dangling}"
    wrong = {k: (rows[k], on_disk.files[k]) for k in rows if rows[k] != on_disk.files[k]}
    assert not wrong, f"recorded size != file size (mailbox, uid): (row, file) {wrong}"
    quota = await backend.get_quota(account)
    assert quota.storage_used_octets == sum(rows.values()), "quota usage != sum of sizes"
    assert quota.messages_used == len(rows), "quota message count != number of messages"
    return state
