"""Contract: web sessions and last logins (storage.base, issue #7), on every backend."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from msgstore.core.accounts import AccountChanges, AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import MAX_LOGINS_KEPT, Backend, LoginRecord, NewWebSession
from tests.storage.support import new_account

T0 = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.UTC)


def _session(
    account: AccountInfo, cookie: str = "cookie", *, at: dt.datetime = T0
) -> NewWebSession:
    return NewWebSession(
        id_hash=hashlib.sha256(cookie.encode()).hexdigest(),
        account=account.id,
        csrf_token="csrf-" + cookie,
        created=at,
        address="192.0.2.7",
    )


async def test_a_created_session_is_found_with_its_account(
    backend: Backend, alice: AccountInfo
) -> None:
    new = _session(alice)
    await backend.create_web_session(new)
    found = await backend.get_web_session(new.id_hash)
    assert found is not None
    assert found.account.name == "alice"
    assert found.csrf_token == "csrf-cookie"
    assert found.created == T0
    assert found.last_seen == T0
    assert found.address == "192.0.2.7"
    assert await backend.get_web_session("0" * 64) is None


async def test_a_session_id_is_used_once(backend: Backend, alice: AccountInfo) -> None:
    await backend.create_web_session(_session(alice))
    with pytest.raises(StoreError) as exc:
        await backend.create_web_session(_session(alice))
    assert exc.value.kind is ErrorKind.EXISTS


async def test_a_session_needs_an_account(backend: Backend) -> None:
    with pytest.raises(StoreError) as exc:
        await backend.create_web_session(
            NewWebSession("ab" * 32, AccountId(999_999), "t", T0, "192.0.2.7")
        )
    assert exc.value.kind is ErrorKind.NOT_FOUND


async def test_touch_moves_last_seen_forward_only(backend: Backend, alice: AccountInfo) -> None:
    new = _session(alice)
    await backend.create_web_session(new)
    await backend.touch_web_session(new.id_hash, T0 + dt.timedelta(minutes=5))
    await backend.touch_web_session(new.id_hash, T0 + dt.timedelta(minutes=1))
    await backend.touch_web_session("1" * 64, T0)  # gone: no error
    found = await backend.get_web_session(new.id_hash)
    assert found is not None
    assert found.last_seen == T0 + dt.timedelta(minutes=5)


async def test_a_password_change_ends_every_session_of_the_account(
    backend: Backend, alice: AccountInfo
) -> None:
    bob = await new_account(backend, "bob")
    mine, other, bobs = _session(alice, "a1"), _session(alice, "a2"), _session(bob, "b1")
    for new in (mine, other, bobs):
        await backend.create_web_session(new)
    await backend.set_password_hash("alice", "$argon2id$v=19$m=65536,t=3,p=4$bmV3$bmV3bmV3")
    assert await backend.get_web_session(mine.id_hash) is None
    assert await backend.get_web_session(other.id_hash) is None
    assert await backend.get_web_session(bobs.id_hash) is not None


async def test_sessions_show_the_account_as_it_is_now(
    backend: Backend, alice: AccountInfo
) -> None:
    new = _session(alice)
    await backend.create_web_session(new)
    await backend.update_account("alice", AccountChanges(login_disabled=True))
    found = await backend.get_web_session(new.id_hash)
    assert found is not None
    assert found.account.login_disabled


async def test_deleting_sessions(backend: Backend, alice: AccountInfo) -> None:
    bob = await new_account(backend, "bob")
    a1, a2, b1 = _session(alice, "a1"), _session(alice, "a2"), _session(bob, "b1")
    for new in (a1, a2, b1):
        await backend.create_web_session(new)
    await backend.delete_web_session(a1.id_hash)
    await backend.delete_web_session(a1.id_hash)  # twice: no error
    assert await backend.get_web_session(a1.id_hash) is None
    assert await backend.delete_web_sessions(alice.id) == 1
    assert await backend.get_web_session(a2.id_hash) is None
    assert await backend.get_web_session(b1.id_hash) is not None
    await backend.delete_account("bob")
    assert await backend.get_web_session(b1.id_hash) is None


async def test_expiry_by_idle_time_and_by_age(backend: Backend, alice: AccountInfo) -> None:
    old = _session(alice, "old", at=T0 - dt.timedelta(days=2))
    idle = _session(alice, "idle", at=T0 - dt.timedelta(hours=2))
    fresh = _session(alice, "fresh", at=T0 - dt.timedelta(hours=2))
    for new in (old, idle, fresh):
        await backend.create_web_session(new)
    await backend.touch_web_session(old.id_hash, T0)
    await backend.touch_web_session(fresh.id_hash, T0)
    gone = await backend.expire_web_sessions(
        idle_before=T0 - dt.timedelta(hours=1), created_before=T0 - dt.timedelta(days=1)
    )
    assert gone == 2
    assert await backend.get_web_session(fresh.id_hash) is not None
    assert await backend.get_web_session(old.id_hash) is None
    assert await backend.get_web_session(idle.id_hash) is None


async def test_last_logins_keep_the_newest_time_per_protocol_and_address(
    backend: Backend, alice: AccountInfo
) -> None:
    bob = await new_account(backend, "bob")
    await backend.record_logins(
        [
            LoginRecord(alice.id, "imap", "192.0.2.1", T0),
            LoginRecord(alice.id, "imap", "192.0.2.1", T0 - dt.timedelta(hours=1)),
            LoginRecord(alice.id, "web", "192.0.2.2", T0 + dt.timedelta(minutes=1)),
            LoginRecord(bob.id, "pop3", "192.0.2.3", T0),
            LoginRecord(AccountId(999_999), "pop3", "192.0.2.3", T0),  # deleted: ignored
        ]
    )
    await backend.record_logins([LoginRecord(alice.id, "imap", "192.0.2.1", T0 - dt.timedelta(1))])
    await backend.record_logins([])
    logins = await backend.last_logins(alice.id)
    assert [(r.protocol, r.address, r.at) for r in logins] == [
        ("web", "192.0.2.2", T0 + dt.timedelta(minutes=1)),
        ("imap", "192.0.2.1", T0),
    ]
    assert [r.protocol for r in await backend.last_logins(bob.id)] == ["pop3"]
    assert len(await backend.last_logins(alice.id, limit=1)) == 1
    await backend.delete_account("bob")
    assert await backend.last_logins(bob.id) == []


async def test_last_logins_are_bounded_per_account(backend: Backend, alice: AccountInfo) -> None:
    records = [
        LoginRecord(alice.id, "imap", f"192.0.2.{i}", T0 + dt.timedelta(seconds=i))
        for i in range(MAX_LOGINS_KEPT + 10)
    ]
    await backend.record_logins(records)
    kept = await backend.last_logins(alice.id, limit=1000)
    assert len(kept) == MAX_LOGINS_KEPT
    assert kept[0].address == f"192.0.2.{MAX_LOGINS_KEPT + 9}"
    assert kept[-1].address == "192.0.2.10"
