"""Account rename/list/search, passwords (policy, reset), mailbox status, ACLs, public
folders, stats and reconstruct, through the Python API (one store per test)."""

from __future__ import annotations

import dataclasses

import pytest

from msgstore.api import Store
from msgstore.auth.passwords import verify_password
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.passwords import check_policy, classes_of, generate_password
from tests.management.conftest import deliver


def kind_of(err: pytest.ExceptionInfo[StoreError]) -> ErrorKind:
    return err.value.kind


async def test_rename_keeps_mail_and_refuses_clashes(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await store.accounts.add("carol", password="pw")
    await deliver(store, "bob", count=2)
    renamed = await store.accounts.rename("bob", "robert")
    assert renamed.name == "robert"
    assert (await store.mailboxes.status("robert", "INBOX")).messages == 2
    with pytest.raises(StoreError) as err:
        await store.accounts.rename("robert", "Carol")
    assert kind_of(err) is ErrorKind.EXISTS
    with pytest.raises(StoreError) as err:
        await store.accounts.rename("ghost", "casper")
    assert kind_of(err) is ErrorKind.NOT_FOUND
    with pytest.raises(StoreError) as err:
        await store.accounts.rename("robert", "a/b")
    assert kind_of(err) is ErrorKind.PARAMS
    assert [a.name for a in await store.accounts.list()] == ["carol", "robert"]


async def test_list_filters_and_pages(store: Store) -> None:
    for name in ("ann", "bob", "bert", "carl", "dora"):
        await store.accounts.add(name, password="pw", kind="pop" if name == "bob" else None)
    await store.accounts.modify("bert", manager=True)
    await store.accounts.modify("carl", login_disabled=True)
    names = [a.name for a in await store.accounts.list()]
    assert names == ["ann", "bert", "bob", "carl", "dora"]
    assert [a.name for a in await store.accounts.list(kind="pop")] == ["bob"]
    assert [a.name for a in await store.accounts.list(manager=True)] == ["bert"]
    assert [a.name for a in await store.accounts.list(login_disabled=True)] == ["carl"]
    assert [a.name for a in await store.accounts.list(match="B")] == ["bert", "bob"]
    assert [a.name for a in await store.accounts.list(match="*r?")] == ["bert", "carl", "dora"]
    assert [a.name for a in await store.accounts.search("o")] == ["bob", "dora"]
    pages = [[a.name for a in await store.accounts.list(limit=2, offset=n)] for n in (0, 2, 4, 6)]
    assert pages == [["ann", "bert"], ["bob", "carl"], ["dora"], []]


async def test_account_add_uses_the_configured_default_quota(tmp_path: object) -> None:
    from pathlib import Path

    from msgstore.config import load_config

    base = load_config(data_dir=Path(str(tmp_path)) / "data")
    config = base.model_copy(
        update={"store": base.store.model_copy(update={"default_quota": 2 * 1024 * 1024})}
    )
    async with Store.open(config=config) as store:
        await store.accounts.add("bob", password="pw")
        await store.accounts.add("carol", password="pw", quota="unlimited")
        assert (await store.quotas.show("bob")).storage_limit_kib == 2048
        assert (await store.quotas.show("carol")).storage_limit_kib is None


async def test_password_policy_binds_accounts_not_the_os_admin(store: Store) -> None:
    await store.accounts.add("bob", password="pw")  # the OS administrator: hard limits only
    await store.accounts.add("mgr", password="pw", manager=True)
    await store.accounts.add("bobbybobby", password="pw")
    bobby = await store.as_account("bobbybobby")
    for weak, reason in (("short", "at least 8"), ("BobbyBobby", "user name")):
        with pytest.raises(StoreError) as err:
            await bobby.passwords.set("bobbybobby", weak)
        assert kind_of(err) is ErrorKind.PARAMS
        assert reason in err.value.public
    bob = await store.as_account("bob")
    await bob.passwords.set("bob", "a much longer one")
    mgr = await store.as_account("mgr")
    with pytest.raises(StoreError, match="at least 8"):
        await mgr.accounts.add("carol", password="pw")
    await mgr.accounts.add("carol", password="carol's own password")


def test_policy_rules_and_generated_passwords() -> None:
    from msgstore.config import load_config

    config = load_config()
    strict = config.model_copy(
        update={"auth": config.auth.model_copy(update={"password_classes": 3})}
    )
    with pytest.raises(StoreError, match="mix at least 3"):
        check_policy(strict, "bob", "onlylowercase")
    check_policy(strict, "bob", "Lower and 1 digit")
    with pytest.raises(StoreError, match="user name"):
        check_policy(config, "Bob.Example", "bob.example")
    for _ in range(50):
        password = generate_password(strict, "bob")
        assert len(password) >= 20
        assert classes_of(password) == 4
        check_policy(strict, "bob", password)


async def test_password_reset_returns_a_working_password_once(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    new = await store.passwords.reset("bob")
    assert new.name == "bob"
    _, stored = await store.backend.get_password_hash("bob")
    assert verify_password(new.password, stored).ok
    assert not verify_password("pw", stored).ok
    (entry,) = [e for e in await store.audit.list() if e.operation == "password reset"]
    assert new.password not in repr(entry)


async def test_mailbox_status(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await deliver(store, "bob", count=3)
    status = await store.mailboxes.status("bob", "inbox")
    assert (status.name, status.messages, status.unseen, status.uidnext) == ("INBOX", 3, 3, 4)
    assert status.size_octets > 0
    assert status.uidvalidity > 0
    with pytest.raises(StoreError) as err:
        await store.mailboxes.status("bob", "Nope")
    assert kind_of(err) is ErrorKind.NOT_FOUND


async def test_acl_set_show_delete_and_bad_input(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await store.accounts.add("carol", password="pw")
    await store.mailboxes.create("bob", "Shared")
    entry = await store.acl.set("bob", "Shared", "carol", "lrc")
    assert (entry.identifier, entry.rights) == ("carol", "lrkx")
    await store.acl.set("bob", "Shared", "carol", "+w")
    await store.acl.set("bob", "Shared", "-anyone", "p")
    await store.acl.set("bob", "Shared", "Authenticated", "l")
    shown = {e.identifier: e.rights for e in await store.acl.show("bob", "Shared")}
    assert shown == {"carol": "lrwkx", "-anyone": "p", "authenticated": "l"}
    await store.acl.set("bob", "Shared", "carol", "-kx")
    await store.acl.delete("bob", "Shared", "-anyone")
    shown = {e.identifier: e.rights for e in await store.acl.show("bob", "Shared")}
    assert shown == {"carol": "lrw", "authenticated": "l"}
    before = await store.acl.show("bob", "Shared")
    bad = [
        ("ghost", "lr", "Unknown ACL identifier 'ghost'"),
        ("-ghost", "lr", "Unknown ACL identifier '-ghost'"),
        ("#public", "lr", "Unknown ACL identifier"),
        ("carol", "lrq", "Unknown access right 'q'"),
        ("carol", "+Z", "Unknown access right 'Z'"),
        ("car ol", "lr", "space"),
        ("--carol", "lr", "only one '-'"),
    ]
    for identifier, rights, message in bad:
        with pytest.raises(StoreError) as err:
            await store.acl.set("bob", "Shared", identifier, rights)
        assert kind_of(err) is ErrorKind.PARAMS, identifier
        assert message in err.value.public
    assert await store.acl.show("bob", "Shared") == before
    with pytest.raises(StoreError) as err:
        await store.acl.delete("bob", "Shared", "anyone")
    assert kind_of(err) is ErrorKind.NOT_FOUND


async def test_public_folders(store: Store) -> None:
    await store.accounts.add("editor", password="pw")
    folder = await store.public.create("Public/News")
    assert folder.name == "News"
    await store.public.create("News/Archive")
    await store.public.acl_set("News", "anyone", "lr")
    owner = await store.public.owner("News", "editor")
    assert owner.rights == "lrswipkxtea"
    listed = {f.name: f.acl for f in await store.public.list()}
    assert listed == {"News": {"anyone": "lr", "editor": "lrswipkxtea"}, "News/Archive": {}}
    with pytest.raises(StoreError) as err:
        await store.public.owner("News", "anyone")
    assert kind_of(err) is ErrorKind.PARAMS
    with pytest.raises(StoreError) as err:
        await store.public.create("INBOX")
    assert kind_of(err) is ErrorKind.PARAMS
    with pytest.raises(StoreError) as err:
        await store.public.delete("News")
    assert kind_of(err) is ErrorKind.HAS_CHILDREN
    await store.public.delete("News/Archive")
    await store.public.acl_delete("News", "anyone")
    assert [(f.name, f.acl) for f in await store.public.list()] == [
        ("News", {"editor": "lrswipkxtea"})
    ]
    quota = await store.public.quota_set(storage="10M", messages=100)
    assert (quota.account, quota.storage_limit_kib, quota.message_limit) == ("Public", 10240, 100)
    assert await store.public.quota_show() == quota
    for bad in ("-5", "12 parsecs"):
        with pytest.raises(StoreError) as err:
            await store.public.quota_set(storage=bad)
        assert kind_of(err) is ErrorKind.PARAMS
    assert await store.public.quota_show() == quota


async def test_stats(store: Store) -> None:
    await store.accounts.add("bob", password="pw", manager=True)
    await store.accounts.add("carol", password="pw")
    await deliver(store, "bob", count=2)
    await deliver(store, "carol")
    await store.public.create("News")
    stats = await store.stats.show()
    assert (stats.accounts, stats.managers, stats.messages, stats.public_folders) == (2, 1, 3, 1)
    assert stats.octets > 0


async def test_reconstruct_operation_reports(store: Store) -> None:
    await store.accounts.add("bob", password="pw")
    await deliver(store, "bob", count=2)
    report = await store.accounts.reconstruct("bob", check=True)
    assert report.clean
    assert report.messages == 2
    report = await store.accounts.reconstruct("bob", new_uidvalidity=True)
    assert report.applied
    assert {d.code for d in report.discrepancies} >= {"uidvalidity-changed"}
    with pytest.raises(StoreError) as err:
        await store.accounts.reconstruct("bob", check=True, new_uidvalidity=True)
    assert kind_of(err) is ErrorKind.PARAMS
    assert dataclasses.is_dataclass(report)
