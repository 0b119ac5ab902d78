"""Mailbox operations on one account's tree: list, create, delete, rename.

Names are checked by :func:`msgstore.core.names.mailbox_name` (the same rules IMAP applies);
special-use attributes are those of RFC 6154 and RFC 8457. A pop account has INBOX only, so
creating or renaming mailboxes in it is refused (NOT_POSSIBLE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import MailboxName, mailbox_name, match_pattern
from msgstore.management.accounts import find_account
from msgstore.management.operation import Access, ManagementContext, operation, param
from msgstore.storage.base import MailboxInfo

#: RFC 6154 §2 special-use attributes, and \Important from RFC 8457.
SPECIAL_USES: Final = (
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Important",
    "\\Junk",
    "\\Sent",
    "\\Trash",
)
_SPECIAL_USE_BY_WORD: Final = {s[1:].lower(): s for s in SPECIAL_USES}


def special_use(text: str) -> str:
    """The canonical attribute: ``\\sent`` or ``Sent`` -> ``\\Sent``; ``""`` is none.

    Raises PARAMS for anything else.
    """
    word = text.strip().removeprefix("\\").lower()
    if not word:
        return ""
    canon = _SPECIAL_USE_BY_WORD.get(word)
    if canon is None:
        allowed = " ".join(SPECIAL_USES)
        raise StoreError(
            ErrorKind.PARAMS, f"Unknown special-use attribute {text!r}: expected one of {allowed}"
        )
    return canon


def _imap_account(account: AccountInfo) -> AccountInfo:
    if account.kind is AccountKind.POP:
        raise StoreError(
            ErrorKind.NOT_POSSIBLE, f"{account.name!r} is a pop account: it has INBOX only"
        )
    return account


@dataclass(frozen=True, slots=True)
class MailboxReport:
    """One mailbox with its counters, as ``mailbox list`` reports it."""

    name: MailboxName
    special_use: frozenset[str]
    subscribed: bool
    messages: int
    unseen: int
    size_octets: int


@operation("mailbox list", access=Access.SELF, http=("GET", "/accounts/{user}/mailboxes"))
@dataclass(frozen=True, slots=True)
class MailboxList:
    """List an account's mailboxes with their counters, optionally matching a pattern.

    The pattern is an IMAP LIST pattern (RFC 9051 §6.3.9): ``*`` matches anything, ``%``
    anything but the hierarchy delimiter "/".
    """

    user: str = field(metadata=param("Account name.", positional=True))
    pattern: str = field(
        default="*", metadata=param("LIST pattern, e.g. 'Archive/*'.", positional=True)
    )

    async def run(self, ctx: ManagementContext) -> list[MailboxReport]:
        backend = ctx.backend
        account = await find_account(backend, self.user)
        out: list[MailboxReport] = []
        for info in await backend.list_mailboxes(account.id):
            if not match_pattern(self.pattern, info.name):
                continue
            status = await backend.mailbox_status(account.id, info.id)
            out.append(
                MailboxReport(
                    name=info.name,
                    special_use=info.special_use,
                    subscribed=info.subscribed,
                    messages=status.messages,
                    unseen=status.unseen,
                    size_octets=status.size_octets,
                )
            )
        return out


@operation("mailbox create", http=("POST", "/accounts/{user}/mailboxes"))
@dataclass(frozen=True, slots=True)
class MailboxCreate:
    """Create a mailbox (and any missing parents) in an account's tree."""

    user: str = field(metadata=param("Account name.", positional=True))
    name: MailboxName = field(
        metadata=param("Mailbox name, '/' between levels.", positional=True, parse=mailbox_name)
    )
    special_use: str = field(
        default="",
        metadata=param(
            "RFC 6154 attribute: \\Sent, \\Drafts, \\Trash, \\Junk, \\Archive, ...",
            parse=special_use,
            metavar="ATTR",
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", mailbox_name(self.name))
        object.__setattr__(self, "special_use", special_use(self.special_use))

    async def run(self, ctx: ManagementContext) -> MailboxInfo:
        account = _imap_account(await find_account(ctx.backend, self.user))
        return await ctx.backend.create_mailbox(
            account.id, self.name, special_use=self.special_use
        )


@operation("mailbox delete", http=("DELETE", "/accounts/{user}/mailboxes"))
@dataclass(frozen=True, slots=True)
class MailboxDelete:
    """Delete a mailbox and its messages. INBOX and mailboxes with children cannot go."""

    user: str = field(metadata=param("Account name.", positional=True))
    name: MailboxName = field(metadata=param("Mailbox name.", positional=True, parse=mailbox_name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", mailbox_name(self.name))

    async def run(self, ctx: ManagementContext) -> None:
        account = await find_account(ctx.backend, self.user)
        await ctx.backend.delete_mailbox(account.id, self.name)


@operation("mailbox rename", http=("POST", "/accounts/{user}/mailboxes/rename"))
@dataclass(frozen=True, slots=True)
class MailboxRename:
    """Rename a mailbox with all its children (RFC 9051 §6.3.6); no message file moves.

    Renaming INBOX moves its messages into the new mailbox and leaves INBOX empty.
    """

    user: str = field(metadata=param("Account name.", positional=True))
    old: MailboxName = field(metadata=param("Current name.", positional=True, parse=mailbox_name))
    new: MailboxName = field(metadata=param("New name.", positional=True, parse=mailbox_name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "old", mailbox_name(self.old))
        object.__setattr__(self, "new", mailbox_name(self.new))

    async def run(self, ctx: ManagementContext) -> None:
        account = _imap_account(await find_account(ctx.backend, self.user))
        await ctx.backend.rename_mailbox(account.id, self.old, self.new)


@dataclass(frozen=True, slots=True)
class MailboxStatusReport:
    """What ``mailbox status`` reports: the counters of IMAP STATUS (RFC 9051, RFC 7162,
    RFC 8438)."""

    name: MailboxName
    messages: int
    unseen: int
    recent: int
    deleted: int
    size_octets: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@operation("mailbox status", access=Access.SELF, http=("GET", "/accounts/{user}/mailboxes/status"))
@dataclass(frozen=True, slots=True)
class MailboxStatusOp:
    """Show one mailbox's counters: messages, unseen, size, UIDVALIDITY, UIDNEXT."""

    user: str = field(metadata=param("Account name.", positional=True))
    name: MailboxName = field(metadata=param("Mailbox name.", positional=True, parse=mailbox_name))

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", mailbox_name(self.name))

    async def run(self, ctx: ManagementContext) -> MailboxStatusReport:
        account = await find_account(ctx.backend, self.user)
        return await status_report(ctx, account.id, self.name)


async def status_report(
    ctx: ManagementContext, owner: AccountId, name: MailboxName
) -> MailboxStatusReport:
    info = await ctx.backend.get_mailbox(owner, name)
    status = await ctx.backend.mailbox_status(owner, info.id)
    return MailboxStatusReport(
        name=info.name,
        messages=status.messages,
        unseen=status.unseen,
        recent=status.recent,
        deleted=status.deleted,
        size_octets=status.size_octets,
        uidvalidity=int(status.uidvalidity),
        uidnext=int(status.uidnext),
        highestmodseq=int(status.highestmodseq),
    )
