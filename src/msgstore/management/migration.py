"""Migration runs as operations: ``migrate mbox | maildir | imap | pop``.

The parameters, the permission check, the audit record and the result are declared here, like
every operation; the work is done by ``msgstore.migrate`` (docs/migration.md), which sits
above management in the layers (it creates accounts and forwarding entries through the
operations of this package). A face passes that engine in as ``ManagementContext.migrator``
(the CLI, the REST API and ``msgstore.api.Store`` do), as it passes the password hasher.

Sources are read where the operation runs: an mbox file, a Maildir tree or a passwd file is a
path on the server's machine, a remote IMAP account is reached from it. The OS administrator
(local CLI, Python API) may name any path; a store account with the manager privilege (REST
API, remote CLI) only paths under ``[web] api_migrate_dir`` (not set: none -- IMAP sources
only), and may not write ``.forward`` files into old home directories (``--aliases-only``).
The IMAP password is a :class:`Secret`: never in the audit log, a log line or a traceback.

A run started over REST is synchronous and bounded by ``[web] api_migrate_timeout``; what it
copied stays, and running it again resumes (a message already present is skipped).
"""

from __future__ import annotations

import enum
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import mailbox_name
from msgstore.management.accounts import account_name
from msgstore.management.operation import (
    ManagementContext,
    Operation,
    ParamError,
    Secret,
    operation,
    param,
)


class MboxFormat(enum.Enum):
    MBOXO = "mboxo"
    MBOXRD = "mboxrd"


class Security(enum.Enum):
    TLS = "tls"
    STARTTLS = "starttls"
    PLAIN = "plain"


@dataclass(frozen=True, slots=True)
class MigrationProblem:
    """Something that was not migrated, and why (running again retries it)."""

    account: str
    where: str  # the folder or message, "" for the account as a whole
    reason: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a migration run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    #: True if anything could not be migrated (see ``problems``); the CLI exits 1.
    failed: bool
    accounts: int
    folders: int
    messages: int  # copied, or that would be copied
    octets: int
    duplicates: int  # already in the store: skipped
    uids_kept: int
    uids_changed: int
    problems: tuple[MigrationProblem, ...]
    notes: tuple[str, ...]  # what was done besides copying (accounts made, forwarding, ...)
    aliases: tuple[str, ...]  # /etc/aliases lines to add

    def lines(self) -> list[str]:
        """The summary as the CLI prints it for people."""
        verb = "would copy" if self.dry_run else "copied"
        out = [
            f"{self.accounts} account(s), {self.folders} folder(s): {verb} {self.messages} "
            f"message(s), {self.octets} octets; {self.duplicates} already present; "
            f"UIDs kept for {self.uids_kept}, renumbered {self.uids_changed}; "
            f"{len(self.problems)} problem(s)"
        ]
        out.extend(self.notes)
        if self.aliases:
            out.append("add to /etc/aliases (then run newaliases):")
            out.extend(f"  {line}" for line in self.aliases)
        out.extend(
            f"problem: {p.account}: {p.where}: {p.reason}"
            if p.where
            else f"problem: {p.account}: {p.reason}"
            for p in self.problems
        )
        return out


def _path(text: str) -> str:
    if not text.strip() or "\0" in text:
        raise StoreError(ErrorKind.PARAMS, f"Invalid path {text!r}")
    return text


def _optional_name(text: str) -> str:
    return account_name(text) if text else text


def _account_list(text: str) -> str:
    """``"bob, carol dave"``: account names separated by commas or spaces."""
    for name in _names(text):
        account_name(name)
    return text


def _names(text: str) -> list[str]:
    return [n for n in text.replace(",", " ").split() if n]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    """The options every source kind shares (``migrate pop`` has its own)."""

    create: bool = field(default=False, metadata=param("Create the account if it does not exist."))
    passwd_file: str = field(
        default="",
        metadata=param(
            "user:{SCHEME}hash (Dovecot passwd-file) or shadow-style file: the hash of a "
            "created account is carried over.",
            parse=_path,
            metavar="FILE",
        ),
    )
    dry_run: bool = field(
        default=False, metadata=param("Report what would happen; change nothing.")
    )
    no_keep_uids: bool = field(
        default=False, metadata=param("Give messages new UIDs even when they could be kept.")
    )
    forward_to: str = field(
        default="",
        metadata=param(
            "After success, forward the old mailbox here ({user} = account name): writes "
            "~/.forward where the home is known and writable, else gives an /etc/aliases line.",
            metavar="TARGET",
        ),
    )
    aliases_only: bool = field(
        default=False, metadata=param("Give /etc/aliases lines; write no .forward.")
    )
    old_address: str = field(
        default="",
        metadata=param(
            "Add a forwarding-database entry from this address to the account.",
            metavar="ADDRESS",
        ),
    )


def server_path(ctx: ManagementContext, value: str) -> Path:
    """Where a path parameter points on the server: as given for the OS administrator; for
    a store account, resolved under ``[web] api_migrate_dir`` (see :func:`check_paths`)."""
    allowed = ctx.config.web.api_migrate_dir
    if ctx.actor.account is None or allowed is None:
        return Path(value)
    return Path(os.path.realpath(Path(os.path.realpath(allowed)) / value))


def check_paths(ctx: ManagementContext, op: Operation, names: tuple[str, ...]) -> None:
    """A store account (not the OS administrator) may read only under ``[web]
    api_migrate_dir``, and may not write ``.forward`` files. PARAMS naming the field, or
    NO_PERM."""
    if ctx.actor.account is None:
        return
    allowed = ctx.config.web.api_migrate_dir
    for name in names:
        value = getattr(op, name)
        if not value:
            continue
        if allowed is None:
            raise StoreError(
                ErrorKind.NO_PERM,
                f"{name}: migrating from files on the server needs [web] api_migrate_dir "
                "(or the OS administrator's CLI)",
            )
        root = os.path.realpath(allowed)
        real = str(server_path(ctx, value))
        if os.path.commonpath([root, real]) != root:
            raise ParamError(f"{value!r} is outside [web] api_migrate_dir", fields=(name,))
    if getattr(op, "forward_to", "") and not getattr(op, "aliases_only", False):
        raise StoreError(
            ErrorKind.NO_PERM,
            "Writing .forward files needs the OS administrator: add aliases_only",
        )


async def _run(op: Operation, ctx: ManagementContext) -> MigrationReport:
    if ctx.migrator is None:
        raise StoreError(ErrorKind.NOT_POSSIBLE, "Migration is not available here")
    report = await ctx.migrator(op, ctx)
    assert isinstance(report, MigrationReport)
    return report


@operation("migrate mbox", http=("POST", "/migrate/mbox"), long=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateMbox(_Common):
    """Migrate an mbox file (e.g. /var/mail/USER), or every login inbox of a passwd file."""

    path: str = field(
        default="",
        metadata=param("The mbox file (on the server).", positional=True, parse=_path),
    )
    account: str = field(
        default="",
        metadata=param(
            "Target account (default: the file's name).", parse=_optional_name, metavar="NAME"
        ),
    )
    mailbox: str = field(default="INBOX", metadata=param("Target mailbox.", metavar="NAME"))
    format: MboxFormat = field(
        default=MboxFormat.MBOXO, metadata=param("mboxrd: undo one level of '>From ' quoting.")
    )
    all_from_passwd: str = field(
        default="",
        metadata=param(
            "Every login account of this passwd file that has a spool in spool_dir.",
            parse=_path,
            metavar="FILE",
        ),
    )
    spool_dir: str = field(
        default="/var/mail",
        metadata=param("Where the login inboxes are (SPOOL/USER).", parse=_path, metavar="DIR"),
    )

    def __post_init__(self) -> None:
        mailbox_name(self.mailbox)
        if self.all_from_passwd and (self.path or self.account):
            raise ParamError("all_from_passwd takes no path or account", fields=("path",))
        if not self.all_from_passwd and not self.path:
            raise ParamError("Name an mbox file, or use all_from_passwd", fields=("path",))

    async def run(self, ctx: ManagementContext) -> MigrationReport:
        paths = ("path", "passwd_file", "all_from_passwd")
        check_paths(ctx, self, (*paths, "spool_dir") if self.all_from_passwd else paths)
        return await _run(self, ctx)


@operation("migrate maildir", http=("POST", "/migrate/maildir"), long=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateMaildir(_Common):
    """Migrate a Maildir++ tree (Dovecot, Courier), keeping flags, keywords and UIDs."""

    path: str = field(
        metadata=param("The Maildir++ tree (on the server).", positional=True, parse=_path)
    )
    account: str = field(metadata=param("Target account.", parse=account_name, metavar="NAME"))
    home: str = field(
        default="",
        metadata=param(
            "The user's old home directory (for forward_to).", parse=_path, metavar="DIR"
        ),
    )

    def __post_init__(self) -> None:
        account_name(self.account)

    async def run(self, ctx: ManagementContext) -> MigrationReport:
        check_paths(ctx, self, ("path", "passwd_file", "home"))
        return await _run(self, ctx)


def _is_host(host: str) -> bool:
    """An IP address or a name the resolver can be asked about: printable, no space, "/" or
    "@", and IDNA-encodable (labels of 1-63 octets; ``getaddrinfo`` raises UnicodeError on
    anything else, which would surface as an internal error of the migration)."""
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    else:
        return True
    if not host or any(c.isspace() or not c.isprintable() or c in "/@" for c in host):
        return False
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


@operation("migrate imap", http=("POST", "/migrate/imap"), long=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class MigrateImap(_Common):
    """Migrate every folder of a remote IMAP account, with flags and internal dates."""

    host: str = field(metadata=param("The source IMAP server."))
    port: int | None = field(
        default=None, metadata=param("Default 993 with security tls, else 143.")
    )
    user: str = field(metadata=param("Login name on the source server."))
    password: Secret = field(metadata=param("Password on the source server."))
    security: Security = field(default=Security.TLS, metadata=param("tls, starttls or plain."))
    insecure: bool = field(
        default=False, metadata=param("Do not verify the source's TLS certificate.")
    )
    ca_file: str = field(
        default="",
        metadata=param(
            "Verify the source's certificate against these CA certificates (PEM).",
            parse=_path,
            metavar="FILE",
        ),
    )
    account: str = field(
        default="",
        metadata=param("Target account (default: user).", parse=_optional_name, metavar="NAME"),
    )

    def __post_init__(self) -> None:
        if not _is_host(self.host.strip()):
            raise ParamError(f"Invalid host {self.host!r}", fields=("host",))
        if self.port is not None and not 0 < self.port < 65536:
            raise ParamError(f"Invalid port {self.port}", fields=("port",))
        if not self.user or any(c in self.user for c in "\0\r\n"):
            raise ParamError("Invalid user name", fields=("user",))
        if any(c in self.password.reveal() for c in "\0\r\n"):
            raise ParamError("The password contains NUL, CR or LF", fields=("password",))

    async def run(self, ctx: ManagementContext) -> MigrationReport:
        check_paths(ctx, self, ("passwd_file", "ca_file"))
        return await _run(self, ctx)


@operation("migrate pop", http=("POST", "/migrate/pop"), long=True)
@dataclass(frozen=True, slots=True, kw_only=True)
class MigratePop:
    """Turn POP-only accounts into full accounts; messages and UIDLs stay as they are."""

    accounts: str = field(
        default="",
        metadata=param(
            "Accounts, separated by commas or spaces.",
            positional=True,
            parse=_account_list,
            metavar="ACCOUNT...",
        ),
    )
    all: bool = field(default=False, metadata=param("Every POP-only account."))
    dry_run: bool = field(
        default=False, metadata=param("Report what would happen; change nothing.")
    )
    old_address: str = field(
        default="",
        metadata=param(
            "Add a forwarding-database entry from this address to the (one) account.",
            metavar="ADDRESS",
        ),
    )

    def __post_init__(self) -> None:
        _account_list(self.accounts)
        if self.all == bool(_names(self.accounts)):
            raise ParamError("Name one or more accounts, or all", fields=("accounts",))
        if self.old_address and (self.all or len(_names(self.accounts)) != 1):
            raise ParamError("old_address needs exactly one account", fields=("old_address",))

    @property
    def names(self) -> list[str]:
        return _names(self.accounts)

    async def run(self, ctx: ManagementContext) -> MigrationReport:
        return await _run(self, ctx)
