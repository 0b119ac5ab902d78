"""``account list``: the backend filters and pages; a glob is tested on keyset batches. Each
page of every filter equals the same page of the whole list filtered in memory."""

from __future__ import annotations

import pytest

from msgstore.api import Store
from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.management import accounts as accounts_module
from msgstore.management.accounts import AccountList, _longest_literal


def test_the_literal_part_of_a_glob() -> None:
    assert _longest_literal("b*@example.org") == "@example.org"
    assert _longest_literal("[!]x]abc*") == "abc"
    assert _longest_literal("a[b") == "a[b"  # an unclosed [ is literal
    assert _longest_literal("?x?yy") == "yy"
    assert _longest_literal("*") == ""


async def test_every_filter_and_page_matches_the_list_filtered_in_memory(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts_module, "LIST_BATCH", 4)  # many batches for few accounts
    names = [f"{stem}{i}" for i in range(6) for stem in ("Ann", "bob@x.org", "Bert", "zoë")]
    for n, name in enumerate(names):
        await store.accounts.add(name, password="pw", kind="pop" if n % 3 == 0 else None)
        if n % 4 == 1:
            await store.accounts.modify(name, manager=True)
    everyone: list[AccountInfo] = await store.accounts.list()
    assert len(everyone) == len(names)
    for spec in (
        AccountList(),
        AccountList(match="B"),
        AccountList(match="*o*"),
        AccountList(match="b*@x.org?"),
        AccountList(match="[ab]*[0-2]"),
        AccountList(match="ZOË?", kind=AccountKind.IMAP),
        AccountList(match="*", manager=True),
        AccountList(kind=AccountKind.POP, manager=False),
    ):
        wanted = [a for a in everyone if spec.wanted(a)]
        assert wanted, spec
        for limit in (0, 1, 3, 5):
            for offset in range(0, len(wanted) + 2, 2):
                page = await store.run(
                    "account list",
                    match=spec.match,
                    kind=spec.kind,
                    manager=spec.manager,
                    limit=limit,
                    offset=offset,
                )
                end = offset + limit if limit else None
                assert page == wanted[offset:end], (spec, limit, offset)
