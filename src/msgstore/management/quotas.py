"""Quota operations: set and show an account's limits and usage (RFC 9208).

STORAGE is kept in KiB (RFC 9208 §5.1); a limit given in octets is rounded up to whole KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.quota import QuotaInfo
from msgstore.management.accounts import find_account
from msgstore.management.operation import (
    Access,
    Limit,
    ManagementContext,
    octets_to_kib,
    operation,
    param,
)


@dataclass(frozen=True, slots=True)
class QuotaReport:
    """An account's quota root: limits (None = unlimited) and usage."""

    account: str
    storage_limit_kib: int | None
    storage_used_kib: int
    storage_used_octets: int
    message_limit: int | None
    messages_used: int

    @classmethod
    def of(cls, account: str, quota: QuotaInfo) -> QuotaReport:
        return cls(
            account=account,
            storage_limit_kib=quota.storage_limit_kib,
            storage_used_kib=quota.storage_used_kib,
            storage_used_octets=quota.storage_used_octets,
            message_limit=quota.message_limit,
            messages_used=quota.messages_used,
        )


@operation("quota set", http=("PUT", "/accounts/{user}/quota"))
@dataclass(frozen=True, slots=True)
class QuotaSet:
    """Set an account's storage and/or message limit; a limit not given stays as it is.

    ``unlimited`` (or 0) removes a limit. Lowering a limit below the current usage is
    allowed: existing mail stays, new mail is refused until usage drops.
    """

    user: str = field(metadata=param("Account name.", positional=True))
    storage: Limit | None = field(
        default=None,
        metadata=param(
            "Storage limit: a size with K, M or G (binary units), or 'unlimited'.",
            parse=Limit.parse_size,
            metavar="SIZE",
        ),
    )
    messages: Limit | None = field(
        default=None,
        metadata=param(
            "Message count limit, or 'unlimited'.", parse=Limit.parse_count, metavar="N"
        ),
    )

    async def run(self, ctx: ManagementContext) -> QuotaReport:
        if self.storage is None and self.messages is None:
            raise StoreError(
                ErrorKind.PARAMS, "Nothing to change: give a storage or a message limit"
            )
        account = await find_account(ctx.backend, self.user)
        current = await ctx.backend.get_quota(account.id)
        storage_kib = (
            current.storage_limit_kib
            if self.storage is None
            else octets_to_kib(self.storage.value)
        )
        messages = current.message_limit if self.messages is None else self.messages.value
        quota = await ctx.backend.set_quota(
            account.id, storage_limit_kib=storage_kib, message_limit=messages
        )
        return QuotaReport.of(account.name, quota)


@operation("quota show", access=Access.SELF, http=("GET", "/accounts/{user}/quota"))
@dataclass(frozen=True, slots=True)
class QuotaShow:
    """Show an account's quota limits and usage."""

    user: str = field(metadata=param("Account name.", positional=True))

    async def run(self, ctx: ManagementContext) -> QuotaReport:
        account = await find_account(ctx.backend, self.user)
        return QuotaReport.of(account.name, await ctx.backend.get_quota(account.id))
