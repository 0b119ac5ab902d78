"""RELIABILITY.md §7 case 37 (first half): a damaged store logs and serves what it can.

Two accounts are filled, the store is closed, one account's files are damaged on disk, and the
store is reopened. The other account must be untouched in every case. The damaged account's
operations either fail with ``StoreError(CORRUPTED)`` and a text that says what to do, or keep
working where the damage allows -- but never return message bytes that do not match the
recorded size and hash, never raise anything but a ``StoreError``, and never delete message
files the damaged index no longer knows (reconstruct needs them). Repair (``msgstore
reconstruct``) is a later issue and is not tested here.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, MailboxId, Uid, UidSet
from msgstore.core.names import MailboxName
from msgstore.storage.base import Want
from msgstore.storage.local import LocalBackend
from tests.storage.helpers.store import (
    account_dir,
    add_message,
    check_account,
    inbox_of,
    make_message,
    new_account,
    open_local,
    read_body,
)

MESSAGES: Final = 12
#: What a client is told about a damaged index must say how to fix it.
REMEDY_WORDS: Final = ("reconstruct", "damaged", "corrupt")
SQLITE_PAGE_SIZE_OFFSET: Final = 16


@dataclass(frozen=True, slots=True)
class Filled:
    data_dir: Path
    alice: AccountId
    bob: AccountId
    inbox: MailboxId  # alice's
    sent: dict[int, bytes]  # alice's INBOX: uid -> bytes
    files: dict[Path, bytes]  # alice's message files and their contents


async def _fill(data_dir: Path) -> Filled:
    rng = random.Random(37)
    backend = await open_local(data_dir)
    try:
        alice = (await new_account(backend, "alice")).id
        bob = (await new_account(backend, "bob")).id
        sent: dict[int, bytes] = {}
        for account in (alice, bob):
            inbox = await inbox_of(backend, account)
            for i in range(MESSAGES):
                data = make_message(rng, f"{account}.{i}")
                result = await add_message(backend, account, inbox, data)
                if account == alice:
                    sent[int(result.uid)] = data
        archive = await backend.create_mailbox(alice, MailboxName("Archive"))
        await add_message(backend, alice, archive.id, make_message(rng, "archived"))
        inbox = await inbox_of(backend, alice)
    finally:
        await backend.close()
    mail = account_dir(data_dir, alice) / "mail"
    files = {p: p.read_bytes() for p in mail.rglob("*") if p.is_file()}
    assert len(files) == MESSAGES + 1
    return Filled(data_dir, alice, bob, inbox, sent, files)


async def _bob_is_fine(backend: LocalBackend, filled: Filled) -> None:
    """The undamaged account reads, writes and checks out completely."""
    state = await check_account(backend, filled.data_dir, filled.bob)
    inbox = await inbox_of(backend, filled.bob)
    assert len(state[int(inbox)].messages) >= MESSAGES
    for uid, (size, sha) in state[int(inbox)].messages.items():
        data = await read_body(backend, filled.bob, inbox, Uid(uid))
        assert (len(data), hashlib.sha256(data).digest()) == (size, sha)
    data = make_message(random.Random(99), "bob-after-damage")
    result = await add_message(backend, filled.bob, inbox, data)
    assert await read_body(backend, filled.bob, inbox, result.uid) == data


def _corrupted(exc: StoreError) -> None:
    assert exc.kind is ErrorKind.CORRUPTED, f"expected CORRUPTED, got {exc!r} ({exc.detail})"
    assert any(w in exc.public.lower() for w in REMEDY_WORDS), f"unhelpful text {exc.public!r}"


async def _tolerated(step: Callable[[], Awaitable[None]]) -> bool:
    """Run one operation on the damaged account: it works (True) or says CORRUPTED (False)."""
    try:
        await step()
    except StoreError as exc:
        _corrupted(exc)
        return False
    return True


async def _damaged_account_serves_what_it_can(backend: LocalBackend, filled: Filled) -> int:
    """Try every read and a write on alice; returns how many operations said CORRUPTED."""
    alice = filled.alice
    failures = 0

    async def listing() -> None:
        names = {m.name for m in await backend.list_mailboxes(alice)}
        assert MailboxName("INBOX") in names

    async def reading() -> None:
        inbox = await inbox_of(backend, alice)
        snap = await backend.snapshot(alice, inbox)
        metas = await backend.fetch_meta(alice, inbox, UidSet.all(), Want.ALL)
        assert [m.uid for m in metas] == list(snap.uids)
        for meta in metas:
            assert meta.uid in filled.sent, f"UID {meta.uid} appeared from nowhere"
            try:
                data = await read_body(backend, alice, inbox, meta.uid)
            except StoreError as exc:
                _corrupted(exc)
                continue
            assert len(data) == meta.size
            assert hashlib.sha256(data).digest() == meta.sha256
            assert data == filled.sent[meta.uid], f"UID {meta.uid}: wrong bytes served"

    async def status() -> None:
        inbox = await inbox_of(backend, alice)
        got = await backend.mailbox_status(alice, inbox)
        assert got.messages <= MESSAGES
        await backend.get_quota(alice)

    async def writing() -> None:
        inbox = await inbox_of(backend, alice)
        data = make_message(random.Random(7), "alice-after-damage")
        result = await add_message(backend, alice, inbox, data)
        assert await read_body(backend, alice, inbox, result.uid) == data

    for step in (listing, reading, status, writing):
        failures += not await _tolerated(step)
    return failures


def _files_kept(filled: Filled, *, except_: frozenset[Path] = frozenset()) -> None:
    """Every message file alice had is still there, unchanged (unless we damaged it)."""
    for path, data in filled.files.items():
        if path in except_:
            continue
        assert path.is_file(), f"{path} was deleted while the index was damaged"
        assert path.read_bytes() == data, f"{path} was changed"


def _page_size(index: Path) -> int:
    header = index.read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\x00"), "index.db is not a SQLite file"
    size = int.from_bytes(header[SQLITE_PAGE_SIZE_OFFSET : SQLITE_PAGE_SIZE_OFFSET + 2], "big")
    return 65536 if size == 1 else size


def _truncate(index: Path) -> None:
    with index.open("r+b") as f:
        f.truncate(index.stat().st_size // 2)


def _zero_page(index: Path) -> None:
    """Zero the page in the middle of the file (a b-tree page of rows, not the header)."""
    page = _page_size(index)
    pages = index.stat().st_size // page
    assert pages >= 4, f"index.db has only {pages} pages"
    with index.open("r+b") as f:
        f.seek((pages // 2) * page)
        f.write(bytes(page))


def _zero_header_page(index: Path) -> None:
    page = _page_size(index)
    with index.open("r+b") as f:
        f.write(bytes(page))


def _delete(index: Path) -> None:
    index.unlink()


INDEX_DAMAGE: Final = {
    "truncated": _truncate,
    "zeroed-page": _zero_page,
    "zeroed-first-page": _zero_header_page,
    "deleted": _delete,
}


@pytest.mark.parametrize("damage", list(INDEX_DAMAGE), ids=list(INDEX_DAMAGE))
async def test_damaged_index_fails_only_its_own_account(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated, partly zeroed or deleted index.db: the store opens, the other account
    works, the damaged account answers CORRUPTED (or correct data), the damage is logged, and
    no message file is removed."""
    filled = await _fill(tmp_path / "data")
    index = account_dir(filled.data_dir, filled.alice) / "index.db"
    wal = index.with_name("index.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "close() left WAL frames behind"
    INDEX_DAMAGE[damage](index)
    caplog.set_level(logging.WARNING, logger="msgstore")
    backend = await open_local(filled.data_dir)
    try:
        await _bob_is_fine(backend, filled)
        failures = await _damaged_account_serves_what_it_can(backend, filled)
        if damage in ("deleted", "zeroed-first-page"):
            # Nothing of the index is left: every operation must say so.
            assert failures == 4, f"only {failures} of 4 operations reported the damage"
        if failures:
            damage_logged = [
                r
                for r in caplog.records
                if r.levelno >= logging.WARNING
                and any(w in r.getMessage().lower() for w in (*REMEDY_WORDS, "missing"))
            ]
            assert damage_logged, "CORRUPTED was returned but nothing was logged"
        await _bob_is_fine(backend, filled)
    finally:
        await backend.close()
    _files_kept(filled)
    if damage == "deleted":
        assert not index.exists(), "a fresh empty index.db was created over a damaged account"


async def _open_body_fails(backend: LocalBackend, filled: Filled, uid: int) -> None:
    with pytest.raises(StoreError) as caught:
        await read_body(backend, filled.alice, filled.inbox, Uid(uid))
    assert caught.value.kind is ErrorKind.CORRUPTED, repr(caught.value)


@pytest.mark.parametrize("damage", ["missing", "shorter", "longer", "same-size-replaced"])
async def test_damaged_message_file_fails_only_that_message(tmp_path: Path, damage: str) -> None:
    """A message file deleted, truncated, grown, or replaced by other bytes of the same size:
    open_body of that message raises CORRUPTED (never serving bytes that disagree with the
    recorded size), or -- for same-size bytes, which only a hash check could see -- serves the
    file; every other message and the other account are served normally."""
    filled = await _fill(tmp_path / "data")
    victim_uid = 3
    victim = account_dir(filled.data_dir, filled.alice) / "mail" / str(filled.inbox) / "3"
    original = victim.read_bytes()
    if damage == "missing":
        victim.unlink()
    elif damage == "shorter":
        victim.write_bytes(original[:-10])
    elif damage == "longer":
        victim.write_bytes(original + b"appended garbage\r\n")
    else:
        victim.write_bytes(bytes(len(original)))
    backend = await open_local(filled.data_dir)
    try:
        snap = await backend.snapshot(filled.alice, filled.inbox)
        assert list(snap.uids) == sorted(filled.sent), "the damaged message's row was dropped"
        metas = await backend.fetch_meta(filled.alice, filled.inbox, UidSet.all(), Want.ALL)
        assert [m.uid for m in metas] == list(snap.uids)
        if damage == "same-size-replaced":
            async with backend.open_body(filled.alice, filled.inbox, Uid(victim_uid)) as r:
                assert r.size == len(original)
        else:
            await _open_body_fails(backend, filled, victim_uid)
        for uid, data in filled.sent.items():
            if uid != victim_uid:
                assert await read_body(backend, filled.alice, filled.inbox, Uid(uid)) == data
        await _bob_is_fine(backend, filled)
        data = make_message(random.Random(5), "after-file-damage")
        result = await add_message(backend, filled.alice, filled.inbox, data)
        assert await read_body(backend, filled.alice, filled.inbox, result.uid) == data
    finally:
        await backend.close()
    _files_kept(filled, except_=frozenset({victim}))


async def test_unknown_files_in_mail_do_not_disturb_the_account(tmp_path: Path) -> None:
    """Unknown names in a mailbox directory and an unknown mailbox directory: the account
    is served as before, the stray entries are never served as messages, and appends work."""
    filled = await _fill(tmp_path / "data")
    mail = account_dir(filled.data_dir, filled.alice) / "mail"
    (mail / str(filled.inbox) / "notes.txt").write_bytes(b"not a message\r\n")
    (mail / str(filled.inbox) / "007").write_bytes(b"leading zero is no UID\r\n")
    (mail / "999999").mkdir()
    (mail / "999999" / "1").write_bytes(b"no such mailbox\r\n")
    backend = await open_local(filled.data_dir)
    try:
        snap = await backend.snapshot(filled.alice, filled.inbox)
        assert list(snap.uids) == sorted(filled.sent)
        for uid, data in filled.sent.items():
            assert await read_body(backend, filled.alice, filled.inbox, Uid(uid)) == data
        data = make_message(random.Random(6), "after-strays")
        result = await add_message(backend, filled.alice, filled.inbox, data)
        assert result.uid == max(filled.sent) + 1
        assert await read_body(backend, filled.alice, filled.inbox, result.uid) == data
        with pytest.raises(StoreError) as caught:
            await read_body(backend, filled.alice, MailboxId(999999), Uid(1))
        assert caught.value.kind is ErrorKind.NOT_FOUND
        await _bob_is_fine(backend, filled)
    finally:
        await backend.close()
    _files_kept(filled)
