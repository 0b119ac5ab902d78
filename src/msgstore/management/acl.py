"""ACL operations on any account's mailbox: show, set, delete (RFC 4314).

Identifiers are checked twice: their syntax when the operation is built
(:func:`msgstore.core.acl.validate_identifier`), and that they name something when it runs:
``anyone``, ``authenticated``, an existing account, or one of those with a leading ``-`` (a
negative right). Rights are the RFC 4314 letters ``l r s w i p k x t e a`` (the obsolete ``c``
and ``d`` expand to ``k x`` and ``t e``); ``+rights`` adds to and ``-rights`` removes from the
identifier's current rights, as SETACL does. Anything else is PARAMS with the reason.

The same helpers serve the public folders (management/public.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgstore.core.acl import ANYONE, AUTHENTICATED, Rights, modify_rights, validate_identifier
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import MailboxName, mailbox_name
from msgstore.management.accounts import find_account
from msgstore.management.operation import ManagementContext, ParamError, operation, param
from msgstore.storage.base import Backend


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One identifier's rights on one mailbox."""

    mailbox: str
    identifier: str
    rights: str  # canonical RFC 4314 letters, e.g. "lrs"


def identifier_arg(text: str) -> str:
    """Syntax check of an identifier (PARAMS); existence is checked when the operation runs."""
    return validate_identifier(text)


def rights_arg(text: str) -> str:
    """Syntax check of ``[+|-]rights`` (PARAMS naming an unknown letter); returned as given."""
    Rights.parse(text[1:] if text[:1] in "+-" else text)
    return text


async def check_identifier(backend: Backend, identifier: str) -> str:
    """PARAMS unless ``identifier`` names anyone, authenticated or an existing account."""
    base = identifier.removeprefix("-")
    if base in (ANYONE, AUTHENTICATED):
        return identifier
    if base.startswith("#"):
        raise ParamError(f"Unknown ACL identifier {identifier!r}", value=identifier)
    try:
        account = await backend.get_account(base)
    except StoreError as exc:
        if exc.kind is ErrorKind.NOT_FOUND:
            raise ParamError(
                f"Unknown ACL identifier {identifier!r}: not an account, 'anyone' or "
                "'authenticated'",
                value=identifier,
            ) from exc
        raise
    return ("-" if identifier.startswith("-") else "") + account.name


async def show_acl(backend: Backend, owner: AccountId, name: MailboxName) -> list[AclEntry]:
    info = await backend.get_mailbox(owner, name)
    acl = await backend.get_acl(owner, info.id)
    return [AclEntry(str(info.name), ident, str(acl[ident])) for ident in sorted(acl)]


async def set_acl(
    backend: Backend, owner: AccountId, name: MailboxName, identifier: str, change: str
) -> AclEntry:
    identifier = await check_identifier(backend, identifier)
    info = await backend.get_mailbox(owner, name)
    current = (await backend.get_acl(owner, info.id)).get(identifier, Rights())
    rights = modify_rights(current, change)
    await backend.set_acl(owner, info.id, identifier, rights)
    return AclEntry(str(info.name), identifier, str(rights))


async def delete_acl(
    backend: Backend, owner: AccountId, name: MailboxName, identifier: str
) -> None:
    identifier = await check_identifier(backend, identifier)
    info = await backend.get_mailbox(owner, name)
    if identifier not in await backend.get_acl(owner, info.id):
        raise StoreError(
            ErrorKind.NOT_FOUND, f"{identifier!r} has no ACL entry on {str(info.name)!r}"
        )
    await backend.delete_acl(owner, info.id, identifier)


# --- operations -------------------------------------------------------------------------------


@operation("acl show", http=("GET", "/accounts/{user}/acl"))
@dataclass(frozen=True, slots=True)
class AclShow:
    """Show the ACL of one of an account's mailboxes (the owner's own rights are implicit)."""

    user: str = field(metadata=param("Account name.", positional=True))
    mailbox: MailboxName = field(
        metadata=param("Mailbox name.", positional=True, parse=mailbox_name)
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mailbox", mailbox_name(self.mailbox))

    async def run(self, ctx: ManagementContext) -> list[AclEntry]:
        account = await find_account(ctx.backend, self.user)
        return await show_acl(ctx.backend, account.id, self.mailbox)


@operation("acl set", http=("PUT", "/accounts/{user}/acl"))
@dataclass(frozen=True, slots=True)
class AclSet:
    """Give IDENTIFIER rights on an account's mailbox: RIGHTS replaces, +RIGHTS adds, -RIGHTS
    removes (RFC 4314 SETACL). IDENTIFIER is an account, anyone, authenticated, or -NAME for a
    negative right (write ``--`` before a leading ``-`` on the command line)."""

    user: str = field(metadata=param("Account name.", positional=True))
    mailbox: MailboxName = field(
        metadata=param("Mailbox name.", positional=True, parse=mailbox_name)
    )
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
        object.__setattr__(self, "mailbox", mailbox_name(self.mailbox))
        object.__setattr__(self, "identifier", identifier_arg(self.identifier))
        rights_arg(self.rights)

    async def run(self, ctx: ManagementContext) -> AclEntry:
        account = await find_account(ctx.backend, self.user)
        return await set_acl(ctx.backend, account.id, self.mailbox, self.identifier, self.rights)


@operation("acl delete", http=("DELETE", "/accounts/{user}/acl"))
@dataclass(frozen=True, slots=True)
class AclDelete:
    """Remove IDENTIFIER's entry from the ACL of an account's mailbox."""

    user: str = field(metadata=param("Account name.", positional=True))
    mailbox: MailboxName = field(
        metadata=param("Mailbox name.", positional=True, parse=mailbox_name)
    )
    identifier: str = field(
        metadata=param(
            "Account, anyone, authenticated, or -NAME.", positional=True, parse=identifier_arg
        )
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mailbox", mailbox_name(self.mailbox))
        object.__setattr__(self, "identifier", identifier_arg(self.identifier))

    async def run(self, ctx: ManagementContext) -> None:
        account = await find_account(ctx.backend, self.user)
        await delete_acl(ctx.backend, account.id, self.mailbox, self.identifier)
