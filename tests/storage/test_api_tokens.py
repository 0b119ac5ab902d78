"""Contract: bearer tokens of the REST API (storage.base, issue #6), on every backend."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from msgstore.core.accounts import AccountChanges, AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import Backend, NewApiToken
from tests.storage.support import new_account

T0 = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.UTC)


def _new(account: AccountInfo, raw: str = "tok", **kw: object) -> NewApiToken:
    values: dict[str, object] = {
        "account": account.id,
        "token_hash": hashlib.sha256(raw.encode()).hexdigest(),
        "label": "ci",
        "created": T0,
        "expires": None,
    }
    values.update(kw)
    return NewApiToken(**values)  # type: ignore[arg-type]


async def test_a_created_token_is_found_by_its_hash(backend: Backend, alice: AccountInfo) -> None:
    new = _new(alice, expires=T0 + dt.timedelta(days=30))
    made = await backend.create_api_token(new)
    assert made.account == alice.id
    assert made.account_name == "alice"
    assert made.label == "ci"
    assert made.created == T0
    assert made.expires == T0 + dt.timedelta(days=30)
    found = await backend.find_api_token(new.token_hash)
    assert found is not None
    token, account = found
    assert token == made
    assert account.name == "alice"
    assert await backend.find_api_token(hashlib.sha256(b"other").hexdigest()) is None


async def test_the_account_comes_as_it_is_now(backend: Backend, alice: AccountInfo) -> None:
    new = _new(alice)
    await backend.create_api_token(new)
    await backend.update_account("alice", AccountChanges(manager=True, login_disabled=True))
    found = await backend.find_api_token(new.token_hash)
    assert found is not None
    assert found[1].manager is True
    assert found[1].login_disabled is True


async def test_list_and_delete(backend: Backend, alice: AccountInfo) -> None:
    bob = await new_account(backend, "bob")
    a1 = await backend.create_api_token(_new(alice, "a1"))
    b1 = await backend.create_api_token(_new(bob, "b1", label=""))
    a2 = await backend.create_api_token(_new(alice, "a2"))
    assert [t.id for t in await backend.list_api_tokens()] == [a1.id, a2.id, b1.id]
    assert [t.id for t in await backend.list_api_tokens(bob.id)] == [b1.id]
    await backend.delete_api_token(a1.id)
    assert [t.id for t in await backend.list_api_tokens(alice.id)] == [a2.id]
    assert await backend.find_api_token(hashlib.sha256(b"a1").hexdigest()) is None
    with pytest.raises(StoreError) as caught:
        await backend.delete_api_token(a1.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_errors(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_api_token(_new(alice))
    with pytest.raises(StoreError) as taken:
        await backend.create_api_token(_new(alice))
    assert taken.value.kind is ErrorKind.EXISTS
    with pytest.raises(StoreError) as unknown:
        await backend.create_api_token(NewApiToken(AccountId(999_999), "f" * 64, "", T0, None))
    assert unknown.value.kind is ErrorKind.NOT_FOUND


async def test_deleting_the_account_deletes_its_tokens(
    backend: Backend, alice: AccountInfo
) -> None:
    new = _new(alice)
    await backend.create_api_token(new)
    await backend.delete_account("alice")
    assert await backend.find_api_token(new.token_hash) is None
    assert await backend.list_api_tokens() == []
