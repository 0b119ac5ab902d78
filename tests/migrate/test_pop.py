"""POP-only accounts of this store become full accounts in place: every message keeps its
UIDL (fetchmail and getmail keep their state by UIDL), and the old address can be pointed at
the account with a forwarding-database entry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from msgstore.core.accounts import AccountKind
from msgstore.core.names import INBOX
from msgstore.storage.base import NewAccount
from msgstore.storage.local import LocalBackend
from tests.migrate.conftest import expect, msgstore, read_store


def _kind(data: Path, name: str) -> AccountKind:
    async def main() -> AccountKind:
        backend = await LocalBackend.open(data)
        try:
            return (await backend.get_account(name)).kind
        finally:
            await backend.close()

    return asyncio.run(main())


def test_pop_account_becomes_full_keeping_uidls(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def seed() -> None:
        backend = await LocalBackend.open(data)
        try:
            spec = NewAccount(name="popper", password_hash="{PLAIN}x", kind=AccountKind.POP)
            account = await backend.create_account(spec)
            inbox = (await backend.get_mailbox(account.id, INBOX)).id
            for i in range(3):
                async with backend.stage(max_octets=1 << 20) as staged:
                    await staged.write(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
                    await staged.finish()
                    await backend.append(account.id, inbox, staged)
        finally:
            await backend.close()

    asyncio.run(seed())
    before = {uid: m.uidl for uid, m in read_store(data, "popper")["INBOX"].messages.items()}
    assert len(before) == 3
    dry = msgstore(data, "migrate", "pop", "popper", "--dry-run")
    expect(dry, 0, "would become a full account")
    assert _kind(data, "popper") is AccountKind.POP
    result = msgstore(data, "migrate", "pop", "popper", "--old-address", "popper@old.example.org")
    expect(result, 0, "kept their UIDLs", "forwarding entry popper@old.example.org -> popper")
    assert _kind(data, "popper") is AccountKind.IMAP
    store = read_store(data, "popper")
    assert {uid: m.uidl for uid, m in store["INBOX"].messages.items()} == before
    assert "Sent" in store  # the autocreate mailboxes of a full account
    shown = msgstore(data, "forward", "show", "popper@old.example.org")
    expect(shown, 0, "popper")
    again = msgstore(data, "migrate", "pop", "--all")
    expect(again, 0, "nothing to do")
    missing = msgstore(data, "migrate", "pop", "nobody-here")
    expect(missing, 1, "no such account")
