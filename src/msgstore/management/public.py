"""Public folders ("Public/..." in IMAP): list, create, delete, ACL, owner, quota.

The public folders are one tree owned by a pseudo-account (``Backend.public_account``);
managers hold every right on it (storage/access.py), everyone else what its ACLs grant. The
tree's own INBOX exists only because every tree has one: it is not listed and cannot be
created or deleted here.

"Owner" of a public folder is a role, not a field: ``public owner FOLDER ACCOUNT`` gives the
account every right on the folder (``lrswipkxtea``), including ``a`` (it may change the
folder's ACL from any IMAP client).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.management.acl import (
    AclEntry,
    check_identifier,
    delete_acl,
    identifier_arg,
    rights_arg,
    set_acl,
    show_acl,
)
from msgstore.management.operation import (
    Limit,
    ManagementContext,
    octets_to_kib,
    operation,
    param,
)
from msgstore.management.quotas import QuotaReport

#: The prefix IMAP shows public folders under.
PUBLIC_PREFIX = "Public/"


def public_name(text: str) -> MailboxName:
    """A public folder's name inside the tree; a leading ``Public/`` is accepted and removed."""
    stripped = text.strip()
    if stripped.startswith(PUBLIC_PREFIX):
        stripped = stripped[len(PUBLIC_PREFIX) :]
    name = mailbox_name(stripped)
    if name == INBOX or str(name).startswith(INBOX + "/"):
        raise StoreError(ErrorKind.PARAMS, "INBOX is not a public folder name")
    return name


@dataclass(frozen=True, slots=True)
class PublicFolder:
    """One public folder with its counters and ACL."""

    name: MailboxName  # inside the tree; IMAP shows it as Public/<name>
    messages: int
    size_octets: int
    acl: dict[str, str]  # identifier -> rights


@operation("public list", http=("GET", "/public"))
@dataclass(frozen=True, slots=True)
class PublicList:
    """List the public folders with their message counts, sizes and ACLs."""

    async def run(self, ctx: ManagementContext) -> list[PublicFolder]:
        public = await ctx.backend.public_account()
        out: list[PublicFolder] = []
        for info in await ctx.backend.list_mailboxes(public.id):
            if info.name == INBOX:
                continue
            status = await ctx.backend.mailbox_status(public.id, info.id)
            acl = await ctx.backend.get_acl(public.id, info.id)
            out.append(
                PublicFolder(
                    name=info.name,
                    messages=status.messages,
                    size_octets=status.size_octets,
                    acl={ident: str(acl[ident]) for ident in sorted(acl)},
                )
            )
        return out


@operation("public create", http=("POST", "/public"))
@dataclass(frozen=True, slots=True)
class PublicCreate:
    """Create a public folder (and missing parents). Nobody but managers sees it until an
    ACL grants rights: e.g. ``public acl set NAME anyone lr``."""

    name: MailboxName = field(
        metadata=param("Folder name, '/' between levels.", positional=True, parse=public_name)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))

    async def run(self, ctx: ManagementContext) -> PublicFolder:
        public = await ctx.backend.public_account()
        info = await ctx.backend.create_mailbox(public.id, self.name)
        return PublicFolder(name=info.name, messages=0, size_octets=0, acl={})


@operation("public delete", confirm=True, http=("DELETE", "/public"))
@dataclass(frozen=True, slots=True)
class PublicDelete:
    """Delete a public folder and its messages; a folder with children cannot go."""

    name: MailboxName = field(metadata=param("Folder name.", positional=True, parse=public_name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))

    async def run(self, ctx: ManagementContext) -> None:
        public = await ctx.backend.public_account()
        await ctx.backend.delete_mailbox(public.id, self.name)


@operation("public acl show", http=("GET", "/public/acl"))
@dataclass(frozen=True, slots=True)
class PublicAclShow:
    """Show a public folder's ACL."""

    name: MailboxName = field(metadata=param("Folder name.", positional=True, parse=public_name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))

    async def run(self, ctx: ManagementContext) -> list[AclEntry]:
        public = await ctx.backend.public_account()
        return await show_acl(ctx.backend, public.id, self.name)


@operation("public acl set", http=("PUT", "/public/acl"))
@dataclass(frozen=True, slots=True)
class PublicAclSet:
    """Give IDENTIFIER rights on a public folder: RIGHTS replaces, +RIGHTS adds, -RIGHTS
    removes. ``anyone lr`` makes a read-only folder for everyone."""

    name: MailboxName = field(metadata=param("Folder name.", positional=True, parse=public_name))
    identifier: str = field(
        metadata=param(
            "Account, anyone, authenticated, or -NAME.", positional=True, parse=identifier_arg
        )
    )
    rights: str = field(
        metadata=param(
            "RFC 4314 letters lrswipkxtea, optionally after + or -.",
            positional=True,
            parse=rights_arg,
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))
        object.__setattr__(self, "identifier", identifier_arg(self.identifier))
        rights_arg(self.rights)

    async def run(self, ctx: ManagementContext) -> AclEntry:
        public = await ctx.backend.public_account()
        return await set_acl(ctx.backend, public.id, self.name, self.identifier, self.rights)


@operation("public acl delete", http=("DELETE", "/public/acl"))
@dataclass(frozen=True, slots=True)
class PublicAclDelete:
    """Remove IDENTIFIER's entry from a public folder's ACL."""

    name: MailboxName = field(metadata=param("Folder name.", positional=True, parse=public_name))
    identifier: str = field(
        metadata=param(
            "Account, anyone, authenticated, or -NAME.", positional=True, parse=identifier_arg
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))
        object.__setattr__(self, "identifier", identifier_arg(self.identifier))

    async def run(self, ctx: ManagementContext) -> None:
        public = await ctx.backend.public_account()
        await delete_acl(ctx.backend, public.id, self.name, self.identifier)


@operation("public owner", http=("PUT", "/public/owner"))
@dataclass(frozen=True, slots=True)
class PublicOwner:
    """Make ACCOUNT an owner of a public folder: every right, including ``a`` (it may then
    manage the folder's ACL itself from an IMAP client)."""

    name: MailboxName = field(metadata=param("Folder name.", positional=True, parse=public_name))
    account: str = field(metadata=param("Account name.", positional=True))

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", public_name(self.name))

    async def run(self, ctx: ManagementContext) -> AclEntry:
        public = await ctx.backend.public_account()
        ident = await check_identifier(ctx.backend, self.account)
        if ident in ("anyone", "authenticated"):
            raise StoreError(ErrorKind.PARAMS, "An owner is an account, not anyone/authenticated")
        return await set_acl(ctx.backend, public.id, self.name, ident, str(Rights.all()))


@operation("public quota show", http=("GET", "/public/quota"))
@dataclass(frozen=True, slots=True)
class PublicQuotaShow:
    """Show the quota of the public folder tree (quota root "Public", RFC 9208)."""

    async def run(self, ctx: ManagementContext) -> QuotaReport:
        public = await ctx.backend.public_account()
        return QuotaReport.of("Public", await ctx.backend.get_quota(public.id))


@operation("public quota set", http=("PUT", "/public/quota"))
@dataclass(frozen=True, slots=True)
class PublicQuotaSet:
    """Set the public tree's storage and/or message limit; a limit not given stays."""

    storage: Limit | None = field(
        default=None,
        metadata=param(
            "Storage limit: a size with K, M or G, or 'unlimited'.",
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
        public = await ctx.backend.public_account()
        current = await ctx.backend.get_quota(public.id)
        storage = (
            current.storage_limit_kib
            if self.storage is None
            else octets_to_kib(self.storage.value)
        )
        messages = current.message_limit if self.messages is None else self.messages.value
        quota = await ctx.backend.set_quota(
            public.id, storage_limit_kib=storage, message_limit=messages
        )
        return QuotaReport.of("Public", quota)
