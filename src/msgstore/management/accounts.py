"""Account operations: add, delete, list, show, modify, and setting a password.

Account names are checked here, once, for every face (:func:`account_name`); the backend
compares them case-insensitively. A new ``imap`` account gets INBOX plus the mailboxes of
``[store] autocreate`` with their special-use attributes; a ``pop`` account gets INBOX only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import fnmatch
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from msgstore.core.accounts import AccountChanges, AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.management.operation import (
    Access,
    Limit,
    ManagementContext,
    ParamError,
    Secret,
    about,
    octets_to_kib,
    operation,
    param,
)
from msgstore.management.passwords import enforce_policy, generate_password
from msgstore.storage.base import AccountQuery, Backend, NewAccount

MAX_ACCOUNT_OCTETS: Final = 255
#: ACL identifiers (RFC 4314 §3) and the anonymous login: never account names.
RESERVED_ACCOUNT_NAMES: Final = frozenset({"anyone", "authenticated", "anonymous"})
#: Longest password accepted; argon2 takes any length, this only bounds the work per login.
MAX_PASSWORD_OCTETS: Final = 1024


def account_name(raw: str) -> str:
    """Check an account name and return it unchanged, or raise PARAMS with the reason.

    An account name is 1 to 255 octets of UTF-8 without whitespace, control characters, "/"
    or "\\". It may not start with "." (hidden and relative path names, which also excludes
    "." and ".."), "#" (IMAP namespace prefixes, RFC 2342; pseudo-accounts) or "-" (negative
    ACL identifiers, RFC 4314 §2), nor be an ACL keyword (``anyone``, ``authenticated``,
    ``anonymous``). Names may look like addresses (``bob@example.org``). The backend checks
    a subset of these rules again; this is the full set every face applies.
    """
    if not raw:
        raise ParamError("Account name is empty", value=raw)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise ParamError("Account name is not valid UTF-8", value=raw)
    if len(raw.encode("utf-8")) > MAX_ACCOUNT_OCTETS:
        raise ParamError(
            f"Account name is longer than {MAX_ACCOUNT_OCTETS} octets",
            value=raw,
        )
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in raw):
        raise ParamError("Account name contains a space or control character", value=raw)
    if "/" in raw or "\\" in raw:
        raise ParamError("Account name contains '/' or '\\'", value=raw)
    if raw in (".", ".."):
        raise ParamError(f"{raw!r} is not an account name", value=raw)
    if raw[0] in ".#-":
        raise ParamError("Account name may not start with '.', '#' or '-'", value=raw)
    if raw.casefold() in RESERVED_ACCOUNT_NAMES:
        raise ParamError(f"Account name {raw!r} is reserved", value=raw)
    return raw


def check_password(secret: Secret) -> None:
    """Refuse passwords no login can carry: empty, not UTF-8, NUL/CR/LF, over 1024 octets."""
    value = secret.reveal()
    if not value:
        raise ParamError("Password is empty", value=secret)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ParamError("Password is not valid UTF-8", value=secret)
    if any(c in value for c in "\0\r\n"):
        raise ParamError("Password contains NUL, CR or LF", value=secret)
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_OCTETS:
        raise ParamError(f"Password is longer than {MAX_PASSWORD_OCTETS} octets", value=secret)


async def find_account(backend: Backend, name: str) -> AccountInfo:
    """The account called ``name``; NOT_FOUND names it."""
    try:
        return await backend.get_account(name)
    except StoreError as exc:
        if exc.kind is ErrorKind.NOT_FOUND:
            raise StoreError(ErrorKind.NOT_FOUND, f"No such account {name!r}") from exc
        if exc.kind is ErrorKind.PARAMS and not isinstance(exc, ParamError):
            raise ParamError(exc.public, value=name, detail=exc.detail) from exc
        raise


def autocreate_mailboxes(
    ctx: ManagementContext, kind: AccountKind
) -> tuple[tuple[MailboxName, str], ...]:
    """The mailboxes a new account of ``kind`` starts with, besides INBOX."""
    if kind is AccountKind.POP:
        return ()
    out: list[tuple[MailboxName, str]] = []
    for raw, special_use in ctx.config.store.autocreate.items():
        name = mailbox_name(raw)
        if name != INBOX:
            out.append((name, special_use))
    return tuple(out)


@runtime_checkable
class TreePaths(Protocol):
    """Optional backend capability: where an account's tree lives on this machine."""

    def account_path(self, account: AccountId) -> Path: ...


@dataclass(frozen=True, slots=True)
class AccountReport:
    """One account with its quota usage, as ``account show`` reports it."""

    name: str
    id: int
    kind: AccountKind
    manager: bool
    login_disabled: bool
    receive_disabled: bool
    created: dt.datetime
    storage_limit_kib: int | None
    storage_used_kib: int
    storage_used_octets: int
    message_limit: int | None
    messages_used: int
    mailboxes: int
    #: The account's directory tree, on backends that keep one (None otherwise).
    path: str | None


# --- operations -------------------------------------------------------------------------------


@operation("account add", http=("POST", "/accounts"))
@dataclass(frozen=True, slots=True)
class AccountAdd:
    """Create an account with INBOX (imap accounts: also the autocreate mailboxes).

    INBOX and the autocreated mailboxes start subscribed, so clients that show subscribed
    folders only (the default of Thunderbird and many phones) see them, like Dovecot's
    ``auto = subscribe``. Fails with EXISTS if the name is taken (names compare
    case-insensitively).
    """

    name: str = field(metadata=param("Account name.", positional=True, parse=account_name))
    password: Secret = field(metadata=param("Password; stored as an argon2id hash."))
    kind: AccountKind = field(
        default=AccountKind.IMAP,
        metadata=param("imap: folders; pop: INBOX only (POP-only users)."),
    )
    manager: bool = field(
        default=False, metadata=param("May manage other accounts, public folders and quotas.")
    )
    quota: Limit | None = field(
        default=None,
        metadata=param(
            "Storage limit: a size with K, M or G (binary units), or 'unlimited'. "
            "Default: [store] default_quota.",
            parse=Limit.parse_size,
            metavar="SIZE",
        ),
    )
    messages: Limit | None = field(
        default=None,
        metadata=param(
            "Message count limit, or 'unlimited'. Default: [store] default_message_limit.",
            parse=Limit.parse_count,
            metavar="N",
        ),
    )

    def __post_init__(self) -> None:
        account_name(self.name)
        check_password(self.password)

    async def run(self, ctx: ManagementContext) -> AccountInfo:
        with about("password"):
            enforce_policy(ctx.config, ctx.actor, self.name, self.password)
        quota = self.quota or Limit(ctx.config.store.default_quota or None)
        messages = self.messages or Limit(ctx.config.store.default_message_limit or None)
        try:
            await ctx.backend.get_account(self.name)
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
        else:
            raise StoreError(ErrorKind.EXISTS, f"Account {self.name!r} already exists")
        mailboxes = autocreate_mailboxes(ctx, self.kind)
        password_hash = await asyncio.to_thread(ctx.hash_password, self.password.reveal())
        account = await ctx.backend.create_account(
            NewAccount(
                name=self.name,
                password_hash=password_hash,
                kind=self.kind,
                manager=self.manager,
                storage_limit_kib=octets_to_kib(quota.value),
                message_limit=messages.value,
                mailboxes=mailboxes,
            )
        )
        for name in (INBOX, *(name for name, _ in mailboxes)):
            await ctx.backend.set_subscribed(account.id, name, True)
        return account


@operation("account delete", confirm=True, http=("DELETE", "/accounts/{name}"))
@dataclass(frozen=True, slots=True)
class AccountDelete:
    """Delete an account with all its mail, mailboxes and the ACL entries naming it."""

    name: str = field(metadata=param("Account name.", positional=True))

    async def run(self, ctx: ManagementContext) -> None:
        account = await find_account(ctx.backend, self.name)
        await ctx.backend.delete_account(account.name)


def _match(pattern: str) -> Callable[[str], bool]:
    """A case-insensitive name test: a glob if ``pattern`` has ``*``, ``?`` or ``[``, else a
    substring."""
    folded = pattern.casefold()
    if any(c in folded for c in "*?["):
        return lambda name: fnmatch.fnmatchcase(name.casefold(), folded)
    return lambda name: folded in name.casefold()


@operation("account list", http=("GET", "/accounts"))
@dataclass(frozen=True, slots=True)
class AccountList:
    """List accounts sorted by name, optionally filtered and one page at a time.

    Filters combine (all must hold); ``--match`` is a case-insensitive substring of the name,
    or a glob when it contains ``*``, ``?`` or ``[``. ``--limit 0`` means no limit.
    """

    kind: AccountKind | None = field(default=None, metadata=param("Only imap or pop accounts."))
    manager: bool | None = field(
        default=None,
        metadata=param("Only managers, or only non-managers.", switch=("manager", "no-manager")),
    )
    login_disabled: bool | None = field(
        default=None,
        metadata=param(
            "Only accounts that may not, or may, log in.",
            switch=("login-disabled", "login-enabled"),
        ),
    )
    receive_disabled: bool | None = field(
        default=None,
        metadata=param(
            "Only accounts that refuse, or accept, new mail.",
            switch=("receive-disabled", "receive-enabled"),
        ),
    )
    match: str = field(
        default="", metadata=param("Name substring, or glob such as 'b*@example.org'.")
    )
    limit: int = field(default=0, metadata=param("Show at most N accounts (0: all).", metavar="N"))
    offset: int = field(default=0, metadata=param("Skip the first N accounts.", metavar="N"))

    def wanted(self, info: AccountInfo) -> bool:
        return (
            (self.kind is None or info.kind is self.kind)
            and (self.manager is None or info.manager is self.manager)
            and (self.login_disabled is None or info.login_disabled is self.login_disabled)
            and (self.receive_disabled is None or info.receive_disabled is self.receive_disabled)
            and (not self.match or _match(self.match)(info.name))
        )

    async def run(self, ctx: ManagementContext) -> list[AccountInfo]:
        """The backend filters and pages (SQL); a glob is tested here, on keyset batches
        the backend has narrowed to names holding the glob's longest literal part."""
        query = AccountQuery(
            kind=self.kind,
            manager=self.manager,
            login_disabled=self.login_disabled,
            receive_disabled=self.receive_disabled,
        )
        folded = self.match.casefold()
        if not _is_glob(folded):
            return await ctx.backend.list_accounts(
                dataclasses.replace(
                    query, contains=folded, limit=self.limit or None, offset=self.offset
                )
            )
        test = _match(self.match)
        query = dataclasses.replace(query, contains=_longest_literal(folded), limit=LIST_BATCH)
        skip, found = self.offset, []
        while True:
            batch = await ctx.backend.list_accounts(query)
            for info in batch:
                if not test(info.name):
                    continue
                if skip:
                    skip -= 1
                    continue
                found.append(info)
                if self.limit and len(found) >= self.limit:
                    return found
            if len(batch) < LIST_BATCH:
                return found
            query = dataclasses.replace(query, after=(batch[-1].name.casefold(), batch[-1].id))


#: Accounts fetched per batch when ``account list --match`` is a glob.
LIST_BATCH: Final = 500


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _longest_literal(glob: str) -> str:
    """The longest run of ordinary characters of an fnmatch glob (outside ``[...]``): every
    matching name contains it."""
    runs, current, i = [], "", 0
    while i < len(glob):
        c = glob[i]
        if c in "*?":
            runs.append(current)
            current = ""
        elif c == "[":
            j = i + 1  # as fnmatch reads a set: "[]...]" and "[!]...]" hold the first "]"
            if j < len(glob) and glob[j] == "!":
                j += 1
            if j < len(glob) and glob[j] == "]":
                j += 1
            end = glob.find("]", j)
            if end < 0:  # fnmatch takes an unclosed [ literally
                current += c
            else:
                runs.append(current)
                current = ""
                i = end
        else:
            current += c
        i += 1
    runs.append(current)
    return max(runs, key=len)


@operation("account search", http=("GET", "/search/accounts"))
@dataclass(frozen=True, slots=True)
class AccountSearch:
    """Find accounts whose name contains TEXT (or matches it as a glob: ``*``, ``?``, ``[]``),
    case-insensitively; the same as ``account list --match TEXT``."""

    text: str = field(metadata=param("Substring or glob.", positional=True))

    async def run(self, ctx: ManagementContext) -> list[AccountInfo]:
        return await AccountList(match=self.text).run(ctx)


@operation("account rename", http=("POST", "/accounts/{name}/rename"))
@dataclass(frozen=True, slots=True)
class AccountRename:
    """Rename an account. Its id, tree, mail and quota stay; ACL entries naming the old name
    are renamed with it. Fails with EXISTS if the new name is taken."""

    name: str = field(metadata=param("Current account name.", positional=True))
    new: str = field(metadata=param("New account name.", positional=True, parse=account_name))

    def __post_init__(self) -> None:
        account_name(self.new)

    async def run(self, ctx: ManagementContext) -> AccountInfo:
        account = await find_account(ctx.backend, self.name)
        if account.name.casefold() != self.new.casefold():
            try:
                await ctx.backend.get_account(self.new)
            except StoreError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
            else:
                raise StoreError(ErrorKind.EXISTS, f"Account {self.new!r} already exists")
        return await ctx.backend.rename_account(account.name, self.new)


@operation("account show", access=Access.SELF, self_field="name", http=("GET", "/accounts/{name}"))
@dataclass(frozen=True, slots=True)
class AccountShow:
    """Show one account: settings, quota usage, number of mailboxes, where its tree is."""

    name: str = field(metadata=param("Account name.", positional=True))

    async def run(self, ctx: ManagementContext) -> AccountReport:
        backend = ctx.backend
        info = await find_account(backend, self.name)
        quota = await backend.get_quota(info.id)
        mailboxes = await backend.list_mailboxes(info.id)
        path = str(backend.account_path(info.id)) if isinstance(backend, TreePaths) else None
        return AccountReport(
            name=info.name,
            id=int(info.id),
            kind=info.kind,
            manager=info.manager,
            login_disabled=info.login_disabled,
            receive_disabled=info.receive_disabled,
            created=info.created,
            storage_limit_kib=quota.storage_limit_kib,
            storage_used_kib=quota.storage_used_kib,
            storage_used_octets=quota.storage_used_octets,
            message_limit=quota.message_limit,
            messages_used=quota.messages_used,
            mailboxes=len(mailboxes),
            path=path,
        )


@operation("account modify", http=("PATCH", "/accounts/{name}"))
@dataclass(frozen=True, slots=True)
class AccountModify:
    """Change an account's kind, privileges, limits, or whether it may log in or receive.

    Options not given are left unchanged. Turning a pop account into an imap account creates
    the autocreate mailboxes it lacks; turning an imap account into a pop account keeps its
    folders (POP3 only ever shows INBOX).
    """

    name: str = field(metadata=param("Account name.", positional=True))
    quota: Limit | None = field(
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
    kind: AccountKind | None = field(default=None, metadata=param("imap or pop."))
    manager: bool | None = field(
        default=None, metadata=param("Grant or revoke the manager privilege.")
    )
    login_disabled: bool | None = field(
        default=None,
        metadata=param(
            "Refuse or allow logins (IMAP, POP3, web).",
            switch=("disable-login", "enable-login"),
        ),
    )
    receive_disabled: bool | None = field(
        default=None,
        metadata=param(
            "Refuse or accept new mail (delivery).",
            switch=("disable-receive", "enable-receive"),
        ),
    )

    async def run(self, ctx: ManagementContext) -> AccountInfo:
        changes = AccountChanges(
            kind=self.kind,
            manager=self.manager,
            login_disabled=self.login_disabled,
            receive_disabled=self.receive_disabled,
            storage_limit_kib=_limit_change(self.quota, kib=True),
            message_limit=_limit_change(self.messages, kib=False),
        )
        if changes == AccountChanges():
            raise StoreError(ErrorKind.PARAMS, "Nothing to change: give at least one option")
        before = await find_account(ctx.backend, self.name)
        after = await ctx.backend.update_account(before.name, changes)
        if before.kind is AccountKind.POP and after.kind is AccountKind.IMAP:
            for name, special_use in autocreate_mailboxes(ctx, AccountKind.IMAP):
                try:
                    await ctx.backend.create_mailbox(after.id, name, special_use=special_use)
                except StoreError as exc:
                    if exc.kind is not ErrorKind.EXISTS:
                        raise
                else:
                    await ctx.backend.set_subscribed(after.id, name, True)
        return after


def _limit_change(limit: Limit | None, *, kib: bool) -> int | None:
    """``AccountChanges`` form: None = unchanged, -1 = unlimited, else the new limit."""
    if limit is None:
        return None
    if limit.value is None:
        return -1
    return octets_to_kib(limit.value) if kib else limit.value


@operation(
    "password set",
    access=Access.SELF,
    self_field="name",
    http=("PUT", "/accounts/{name}/password"),
)
@dataclass(frozen=True, slots=True)
class PasswordSet:
    """Set an account's password (stored as an argon2id hash)."""

    name: str = field(metadata=param("Account name.", positional=True))
    password: Secret = field(metadata=param("The new password."))

    def __post_init__(self) -> None:
        check_password(self.password)

    async def run(self, ctx: ManagementContext) -> None:
        account = await find_account(ctx.backend, self.name)
        with about("password"):
            enforce_policy(ctx.config, ctx.actor, account.name, self.password)
        password_hash = await asyncio.to_thread(ctx.hash_password, self.password.reveal())
        await ctx.backend.set_password_hash(account.name, password_hash)


@dataclass(frozen=True, slots=True)
class NewPassword:
    """What ``password reset`` returns: shown once, stored only as a hash."""

    name: str
    password: str


@operation("password reset", http=("POST", "/accounts/{name}/password/reset"))
@dataclass(frozen=True, slots=True)
class PasswordReset:
    """Give an account a new random password that satisfies the [auth] policy; print it once.

    The password is 20 characters (or [auth] password_min_length) from every character
    class, chosen with the ``secrets`` module; only its argon2id hash is kept.
    """

    name: str = field(metadata=param("Account name.", positional=True))

    async def run(self, ctx: ManagementContext) -> NewPassword:
        account = await find_account(ctx.backend, self.name)
        password = generate_password(ctx.config, account.name)
        password_hash = await asyncio.to_thread(ctx.hash_password, password)
        await ctx.backend.set_password_hash(account.name, password_hash)
        return NewPassword(name=account.name, password=password)
