"""Maintenance of one account's tree: reconstruct, export to a tar archive, restore from one.

These are backend capabilities (``SupportsReconstruct``, ``SupportsBackup`` in
storage/base.py); on a backend without one the operation fails with NOT_POSSIBLE.

Export and restore read and write a file on the machine that runs the operation. Their file
fields are *streams* (``param(stream=...)``): over REST the archive itself is the response
body of ``GET /accounts/{name}/export`` and the request body of ``POST
/accounts/{name}/restore``; the server spools it to a temporary file under ``[store]
data_dir/tmp``, so an archive is never held in memory (web/api/streams.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import MailboxName, mailbox_name
from msgstore.management.accounts import find_account
from msgstore.management.operation import ManagementContext, operation, param
from msgstore.storage.base import (
    ExportSummary,
    ReconstructReport,
    SupportsBackup,
    SupportsReconstruct,
)

#: The media type of an account archive.
TAR = "application/x-tar"


def _reconstructor(ctx: ManagementContext) -> SupportsReconstruct:
    if not isinstance(ctx.backend, SupportsReconstruct):
        raise StoreError(ErrorKind.NOT_POSSIBLE, "This storage backend cannot reconstruct")
    return ctx.backend


def _backup(ctx: ManagementContext) -> SupportsBackup:
    if not isinstance(ctx.backend, SupportsBackup):
        raise StoreError(
            ErrorKind.NOT_POSSIBLE, "This storage backend cannot export or restore accounts"
        )
    return ctx.backend


def _path(text: str) -> str:
    if not text.strip():
        raise StoreError(ErrorKind.PARAMS, "File name is empty")
    return text


@operation("account reconstruct", http=("POST", "/accounts/{name}/reconstruct"))
@dataclass(frozen=True, slots=True)
class AccountReconstruct:
    """Rebuild an account's index from its message files, keeping what the index still
    holds (flags, UIDs, dates); ``--check`` only reports. Safe while the servers run."""

    name: str = field(metadata=param("Account name.", positional=True))
    check: bool = field(default=False, metadata=param("Report only; change nothing."))
    mailbox: str = field(
        default="", metadata=param("Compare the files of this mailbox only.", metavar="NAME")
    )
    new_uidvalidity: bool = field(
        default=False,
        metadata=param("Give every mailbox a new UIDVALIDITY (after restoring from a backup)."),
    )

    def __post_init__(self) -> None:
        if self.mailbox:
            mailbox_name(self.mailbox)
        if self.check and self.new_uidvalidity:
            raise StoreError(ErrorKind.PARAMS, "--new-uidvalidity is a repair, not a --check")

    async def run(self, ctx: ManagementContext) -> ReconstructReport:
        backend = _reconstructor(ctx)
        account = await find_account(ctx.backend, self.name)
        only: MailboxName | None = mailbox_name(self.mailbox) if self.mailbox else None
        progress = ctx.progress
        hook = (
            None
            if progress is None
            else (lambda done, total: progress("reconstruct", done, total))
        )
        return await backend.reconstruct(
            account.id,
            apply=not self.check,
            mailbox=only,
            new_uidvalidity=self.new_uidvalidity,
            progress=hook,
        )


@operation("account export", http=("GET", "/accounts/{name}/export"))
@dataclass(frozen=True, slots=True)
class AccountExport:
    """Write one account's mailboxes, messages, flags and ACLs to a tar archive.

    Consistent while mail is delivered: every message the archive's index lists is in it.
    The archive is written under a temporary name and renamed when complete.
    """

    name: str = field(metadata=param("Account name.", positional=True))
    output: str = field(
        metadata=param(
            "The tar file to write.",
            parse=_path,
            metavar="FILE",
            stream="out",
            media_type=TAR,
        )
    )

    async def run(self, ctx: ManagementContext) -> ExportSummary:
        backend = _backup(ctx)
        account = await find_account(ctx.backend, self.name)
        progress = ctx.progress
        hook = None if progress is None else (lambda done, total: progress("export", done, total))
        return await backend.export_account(account.id, Path(self.output), progress=hook)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What ``account restore`` did: messages placed, then reconstruct's report."""

    account: str
    messages: int
    reconstruct: ReconstructReport


@operation("account restore", http=("POST", "/accounts/{name}/restore"))
@dataclass(frozen=True, slots=True)
class AccountRestore:
    """Load an archive written by ``account export`` into a new or empty account, then
    reconstruct it (with a new UIDVALIDITY unless --keep-uidvalidity).

    Create the account first (``account add``). Archives with absolute or ``..`` paths,
    links, devices or unknown members are refused before anything is written.
    """

    name: str = field(
        metadata=param("Account name (must exist and hold no mail).", positional=True)
    )
    input: str = field(
        metadata=param(
            "The tar file to read.", parse=_path, metavar="FILE", stream="in", media_type=TAR
        )
    )
    keep_uidvalidity: bool = field(
        default=False,
        metadata=param(
            "Keep the archive's UIDVALIDITY values (only when no client has seen this "
            "account since the export was taken)."
        ),
    )

    async def run(self, ctx: ManagementContext) -> RestoreReport:
        backend = _backup(ctx)
        rebuild = _reconstructor(ctx)
        account = await find_account(ctx.backend, self.name)
        progress = ctx.progress
        hook = None if progress is None else (lambda done, total: progress("restore", done, total))
        source = Path(self.input)
        if not await asyncio.to_thread(source.is_file):
            raise StoreError(ErrorKind.NOT_FOUND, f"No such file: {self.input}")
        placed = await backend.restore_account(account.id, source, progress=hook)
        report = await rebuild.reconstruct(
            account.id, apply=True, new_uidvalidity=not self.keep_uidvalidity
        )
        return RestoreReport(account=account.name, messages=placed, reconstruct=report)
