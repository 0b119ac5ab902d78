"""``stats show``: how big the store is (accounts, mailboxes, messages, octets).

Counted from each account's quota root (kept up to date in the same transaction as every
change), so this costs one small query per account. Rates per minute are ``stats live``
(management/stats_live.py), served by a running server.
"""

from __future__ import annotations

from dataclasses import dataclass

from msgstore.management.operation import ManagementContext, operation


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals over every account (and, separately, the public folders)."""

    accounts: int
    managers: int
    login_disabled: int
    messages: int
    octets: int
    public_folders: int
    public_messages: int
    public_octets: int


@operation("stats show", http=("GET", "/stats"))
@dataclass(frozen=True, slots=True)
class StatsShow:
    """Show store totals: accounts, messages and octets, and the public folders'."""

    async def run(self, ctx: ManagementContext) -> StoreStats:
        backend = ctx.backend
        accounts = await backend.list_accounts()
        messages = octets = 0
        for account in accounts:
            quota = await backend.get_quota(account.id)
            messages += quota.messages_used
            octets += quota.storage_used_octets
        public = await backend.public_account()
        public_quota = await backend.get_quota(public.id)
        folders = [m for m in await backend.list_mailboxes(public.id) if m.name != "INBOX"]
        return StoreStats(
            accounts=len(accounts),
            managers=sum(a.manager for a in accounts),
            login_disabled=sum(a.login_disabled for a in accounts),
            messages=messages,
            octets=octets,
            public_folders=len(folders),
            public_messages=public_quota.messages_used,
            public_octets=public_quota.storage_used_octets,
        )
