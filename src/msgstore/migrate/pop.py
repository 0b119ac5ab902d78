"""POP-only accounts of this store into full (IMAP) accounts, keeping every UIDL.

The messages do not move: the account's kind changes through the ``account modify``
operation (which also creates the autocreate mailboxes), and the INBOX UIDLs are compared
before and after, so a POP3 client that keeps state by UIDL (fetchmail, getmail) downloads
nothing twice.
"""

from __future__ import annotations

from msgstore.core.accounts import AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX
from msgstore.management.accounts import AccountModify
from msgstore.management.operation import ManagementContext, run_operation
from msgstore.migrate.model import Summary
from msgstore.storage.base import Want


async def _uidls(ctx: ManagementContext, name: str) -> list[tuple[int, str]]:
    account = await ctx.backend.get_account(name)
    inbox = await ctx.backend.get_mailbox(account.id, INBOX)
    metas = await ctx.backend.fetch_meta(account.id, inbox.id, UidSet.all(), Want.FLAGS)
    return [(int(m.uid), m.uidl) for m in metas]


async def pop_to_full(
    ctx: ManagementContext, name: str, summary: Summary, *, dry_run: bool
) -> None:
    try:
        account = await ctx.backend.get_account(name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        summary.problem(name, "", "no such account")
        return
    summary.accounts += 1
    if account.kind is not AccountKind.POP:
        summary.notes.append(f"{name}: already a full account; nothing to do")
        return
    before = await _uidls(ctx, account.name)
    if dry_run:
        summary.notes.append(
            f"{name}: would become a full account; {len(before)} message(s) keep their UIDLs"
        )
        return
    await run_operation(AccountModify(name=account.name, kind=AccountKind.IMAP), ctx)
    after = await _uidls(ctx, account.name)
    if after != before:
        summary.problem(name, "INBOX", "UIDLs changed while converting (run reconstruct --check)")
        return
    summary.notes.append(f"{name}: now a full account; {len(after)} message(s) kept their UIDLs")
