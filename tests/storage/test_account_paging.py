"""Contract: ``list_accounts(AccountQuery)`` filters and pages in the database, and every
backend answers the same: code point order of the case-folded name, then id."""

from __future__ import annotations

import random
from collections.abc import Callable

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.storage.base import AccountQuery, Backend
from tests.storage.support import new_account

#: Names with mixed case, non-ASCII letters and shared substrings, in no particular order.
STEMS = ("alice", "Bob", "émile", "Zoë", "ßtraße", "carol@example.org", "dave.x", "Ångström")


async def _fill(backend: Backend, count: int) -> list[AccountInfo]:
    rng = random.Random(6)
    made = []
    for i in rng.sample(range(count), count):
        stem = STEMS[i % len(STEMS)]
        kind = AccountKind.POP if i % 3 == 0 else AccountKind.IMAP
        made.append(await new_account(backend, f"{stem}{i:04d}", kind=kind, manager=i % 7 == 0))
    for info in made[::5]:
        await backend.update_account(info.name, AccountChanges(login_disabled=True))
    for info in made[1::4]:
        await backend.update_account(info.name, AccountChanges(receive_disabled=True))
    return await backend.list_accounts()


def _key(info: AccountInfo) -> tuple[str, int]:
    return (info.name.casefold(), int(info.id))


async def test_every_page_gives_every_account_exactly_once(backend: Backend) -> None:
    everyone = await _fill(backend, 200)
    assert len(everyone) == 200
    # The order both backends promise, computed here.
    assert [a.name for a in everyone] == [a.name for a in sorted(everyone, key=_key)]
    for size in (1, 7, 50, 199, 200, 201):
        by_offset: list[AccountInfo] = []
        while page := await backend.list_accounts(AccountQuery(limit=size, offset=len(by_offset))):
            assert len(page) <= size
            by_offset += page
        assert by_offset == everyone, size
        by_key: list[AccountInfo] = []
        after: tuple[str, int] | None = None
        while page := await backend.list_accounts(AccountQuery(limit=size, after=after)):
            by_key += page
            after = _key(page[-1])
        assert by_key == everyone, size
    assert await backend.list_accounts(AccountQuery(offset=200)) == []
    assert await backend.list_accounts(AccountQuery(offset=190)) == everyone[190:]


async def test_filters_are_the_database_s(backend: Backend) -> None:
    everyone = await _fill(backend, 60)
    cases: list[tuple[AccountQuery, Callable[[AccountInfo], bool]]] = [
        (AccountQuery(kind=AccountKind.POP), lambda a: a.kind is AccountKind.POP),
        (AccountQuery(manager=True), lambda a: a.manager),
        (
            AccountQuery(manager=False, login_disabled=True),
            lambda a: not a.manager and a.login_disabled,
        ),
        (AccountQuery(receive_disabled=True), lambda a: a.receive_disabled),
        (AccountQuery(contains="ss"), lambda a: "ss" in a.name.casefold()),  # ß folds to ss
        (AccountQuery(contains="zoë00"), lambda a: "zoë00" in a.name.casefold()),
        (AccountQuery(contains="@example."), lambda a: "@example." in a.name.casefold()),
        (
            AccountQuery(kind=AccountKind.IMAP, contains="e", limit=9, offset=4),
            lambda a: a.kind is AccountKind.IMAP and "e" in a.name.casefold(),
        ),
    ]
    for query, wanted in cases:
        expected = [a for a in everyone if wanted(a)]
        if query.limit is not None:
            expected = expected[query.offset : query.offset + query.limit]
        got = await backend.list_accounts(query)
        assert got == expected, query
        assert got, query  # every case selects something: the test can fail
    # Nothing and everything.
    assert await backend.list_accounts(AccountQuery(contains="no such name")) == []
    assert await backend.list_accounts(AccountQuery()) == everyone
