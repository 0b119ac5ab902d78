"""RELIABILITY.md §7 case 14 at the store layer: hostile mailbox names never reach the disk.

The backend takes ``MailboxName`` values, but a ``NewType`` proves nothing: any caller can wrap
any string. So the backend must refuse what ``core.names`` refuses (PARAMS) and treat names
that are equal after INBOX case-folding or Unicode normalisation as the same mailbox (EXISTS),
and in every refusal nothing under the data directory may change -- no directory, no file, no
index write (compared as a snapshot of the whole tree, contents included).
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import MAX_LEVELS, MAX_NAME_OCTETS, MailboxName
from msgstore.storage.local import LocalBackend
from tests.storage.helpers.store import new_account, open_local, tree

#: Names the store must refuse as malformed (PARAMS).
MALFORMED: Final = {
    "dot-dot": "../x",
    "dot-dot-inside": "a/../b",
    "dot": "./x",
    "leading-slash": "/x",
    "double-slash": "a//b",
    "trailing-slash": "x/",
    "only-slash": "/",
    "empty": "",
    "1000-levels": "/".join(["l"] * 1000),
    "one-level-too-many": "/".join(["l"] * (MAX_LEVELS + 1)),
    "64-KiB": "x" * 65536,
    "one-octet-too-long": "\u00e9" * (MAX_NAME_OCTETS // 2) + "xx",
    "nul": "a\x00b",
    "nul-only": "\x00",
    "newline": "a\nb",
    "lone-surrogate": "a\udc80b",
}
#: Names that are INBOX, or a child of it, in another spelling (EXISTS).
INBOX_SPELLINGS: Final = ("inbox", "INBOX", "Inbox", "iNbOx")
ACCOUNT: Final = "namer"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[LocalBackend, AccountId, Path]]:
    data_dir = tmp_path / "data"
    backend = await open_local(data_dir)
    try:
        account = (await new_account(backend, ACCOUNT)).id
        yield backend, account, data_dir
    finally:
        await backend.close()


async def _refused(
    backend: LocalBackend, account: AccountId, data_dir: Path, raw: str, kind: ErrorKind
) -> None:
    """create_mailbox(raw) fails with ``kind`` and changes nothing, on disk or in the list."""
    names_before = [m.name for m in await backend.list_mailboxes(account)]
    tree_before = tree(data_dir)
    with pytest.raises(StoreError) as caught:
        await backend.create_mailbox(account, MailboxName(raw))
    assert caught.value.kind is kind, f"{raw[:40]!r}: {caught.value!r}"
    assert tree(data_dir) == tree_before, f"{raw[:40]!r}: the data directory changed"
    assert [m.name for m in await backend.list_mailboxes(account)] == names_before


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_name_is_refused_without_touching_the_disk(
    store: tuple[LocalBackend, AccountId, Path], raw: str
) -> None:
    """Traversal, empty levels, absurd depth and length, control characters: PARAMS."""
    backend, account, data_dir = store
    await _refused(backend, account, data_dir, raw, ErrorKind.PARAMS)


async def test_names_at_the_limits_are_accepted(
    store: tuple[LocalBackend, AccountId, Path],
) -> None:
    """The refusals above are limits, not accidents: the deepest and the longest allowed
    names are created (and still put nothing of the name on disk)."""
    backend, account, data_dir = store
    deepest = "/".join(["l"] * MAX_LEVELS)
    longest = "\u00e9" * ((MAX_NAME_OCTETS - 1) // 2) + "x"
    assert len(longest.encode()) == MAX_NAME_OCTETS
    for raw in (deepest, longest):
        created = await backend.create_mailbox(account, MailboxName(raw))
        assert created.name == raw
    for path in tree(data_dir):
        assert "\u00e9" not in path, f"a mailbox name reached the file system: {path}"
        assert "l/l" not in path, f"a mailbox name reached the file system: {path}"


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_rename_to_a_malformed_name_is_refused_without_touching_the_disk(
    store: tuple[LocalBackend, AccountId, Path], raw: str
) -> None:
    """RENAME checks the new name as CREATE does; the old mailbox stays where it was."""
    backend, account, data_dir = store
    await backend.create_mailbox(account, MailboxName("Plain"))
    tree_before = tree(data_dir)
    with pytest.raises(StoreError) as caught:
        await backend.rename_mailbox(account, MailboxName("Plain"), MailboxName(raw))
    assert caught.value.kind is ErrorKind.PARAMS, repr(caught.value)
    assert tree(data_dir) == tree_before
    assert (await backend.get_mailbox(account, MailboxName("Plain"))).name == "Plain"


@pytest.mark.parametrize("spelling", INBOX_SPELLINGS)
async def test_every_spelling_of_inbox_is_the_existing_inbox(
    store: tuple[LocalBackend, AccountId, Path], spelling: str
) -> None:
    """INBOX is case-insensitive (RFC 9051 §5.1): creating it in any case is EXISTS, and a
    child made under one spelling exists under all of them."""
    backend, account, data_dir = store
    await _refused(backend, account, data_dir, spelling, ErrorKind.EXISTS)
    await backend.create_mailbox(account, MailboxName("INBOX/Child"))
    await _refused(backend, account, data_dir, f"{spelling}/Child", ErrorKind.EXISTS)
    inbox = await backend.get_mailbox(account, MailboxName("INBOX"))
    assert (await backend.get_mailbox(account, MailboxName(spelling))).id == inbox.id


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Caf\u00e9", "Cafe\u0301"),  # precomposed vs e + combining acute
        ("\u00c5ngstr\u00f6m", "\u212bngstro\u0308m"),  # ANGSTROM SIGN, o + diaeresis
        ("\ud55c\uae00", "\u1112\u1161\u11ab\u1100\u1173\u11af"),  # Hangul syllables vs jamo
    ],
    ids=["combining-acute", "angstrom-sign", "hangul-jamo"],
)
async def test_names_equal_after_normalisation_are_the_same_mailbox(
    store: tuple[LocalBackend, AccountId, Path], first: str, second: str
) -> None:
    """Two spellings with the same NFC form name one mailbox: the second CREATE is EXISTS and
    leaves no trace, and either spelling finds the first."""
    assert first != second
    assert unicodedata.normalize("NFC", second) == first
    backend, account, data_dir = store
    created = await backend.create_mailbox(account, MailboxName(first))
    await _refused(backend, account, data_dir, second, ErrorKind.EXISTS)
    await _refused(backend, account, data_dir, f"INBOX/../{second}", ErrorKind.PARAMS)
    assert (await backend.get_mailbox(account, MailboxName(second))).id == created.id
