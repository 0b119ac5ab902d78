"""The audit log: run_operation records every change and every refusal, secrets redacted."""

from __future__ import annotations

import datetime as dt

import pytest

from msgstore.api import Store
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import load_operations
from msgstore.management.operation import READ_VERBS


async def test_a_change_is_recorded_with_redacted_secret(store: Store) -> None:
    await store.accounts.add("bob", password="hunter2-hunter2", quota="1M")
    (entry,) = await store.audit.list()
    assert entry.operation == "account add"
    assert entry.outcome == "ok"
    assert entry.actor.startswith("os:")
    assert entry.origin == "python"
    assert entry.params["password"] == "<redacted>"
    assert entry.params["quota"] == 1024 * 1024
    assert "hunter2" not in repr(entry)
    assert entry.ts <= dt.datetime.now(dt.UTC)


async def test_a_failed_change_is_recorded_with_its_kind(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    with pytest.raises(StoreError) as err:
        await store.accounts.add("BOB", password="pw")
    assert err.value.kind is ErrorKind.EXISTS
    newest = (await store.audit.list())[0]
    assert (newest.operation, newest.outcome) == ("account add", "exists")
    assert "already exists" in newest.message


async def test_reads_are_not_recorded_but_refusals_are(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await store.accounts.list()
    await store.accounts.show("bob")
    assert [e.operation for e in await store.audit.list()] == ["account add"]
    bob = await store.as_account("bob")
    with pytest.raises(StoreError) as err:
        await bob.accounts.list()
    assert err.value.kind is ErrorKind.NO_PERM
    newest = (await store.audit.list())[0]
    assert (newest.actor, newest.operation, newest.outcome) == ("bob", "account list", "no_perm")


async def test_filters(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await store.accounts.add("carol", password="pw")
    bob = await store.as_account("bob", origin="test 192.0.2.1")
    await bob.passwords.set("bob", "a Longer password 1")
    mine = await store.audit.list(actor="bob")
    assert [(e.operation, e.origin) for e in mine] == [("password set", "test 192.0.2.1")]
    assert len(await store.audit.list(operation="account add")) == 2
    assert len(await store.audit.list(limit=1)) == 1
    assert await store.audit.list(since="2999-01-01") == []
    with pytest.raises(StoreError, match="ISO 8601"):
        await store.audit.list(since="yesterday")


def test_reading_verbs_are_not_recorded_by_default() -> None:
    ops = load_operations()
    for name in ("account list", "account show", "mailbox status", "audit list", "stats show"):
        assert name.split()[-1] in READ_VERBS
        assert not ops[name].mutates, name
    for name in ("account add", "account export", "password reset", "acl set"):
        assert ops[name].mutates, name
