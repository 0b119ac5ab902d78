"""The engine behind the migration operations (management/migration.py).

:func:`run_migration` is what the faces pass as ``ManagementContext.migrator``: it turns a
``migrate mbox | maildir | imap | pop`` operation into jobs (:mod:`.run`), runs them, and
returns the summary as a :class:`~msgstore.management.migration.MigrationReport`. Progress goes
to ``ctx.progress`` as ``("ACCOUNT: FOLDER", done, total)`` (total 0: unknown); a
``ctx.time_limit`` stops the run with TEMP (what was copied stays; a second run resumes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from msgstore.core.accounts import AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import mailbox_name
from msgstore.management.migration import (
    MigrateImap,
    MigrateMaildir,
    MigrateMbox,
    MigratePop,
    MigrationProblem,
    MigrationReport,
    server_path,
)
from msgstore.management.operation import ManagementContext, Operation
from msgstore.migrate.engine import Options
from msgstore.migrate.model import Source, Summary
from msgstore.migrate.run import Forwarding, Job, run_jobs


class ProgressReporter:
    """The engine's per-folder progress as ``ctx.progress`` calls."""

    def __init__(self, ctx: ManagementContext) -> None:
        self.progress = ctx.progress
        self.what = ""
        self.done_ = 0
        self.total = 0

    def folder(self, account: str, name: str, total: int | None) -> None:
        self.what, self.done_, self.total = f"{account}: {name}", 0, total or 0
        if self.progress is not None:
            self.progress(self.what, 0, self.total)

    def advance(self, octets: int) -> None:
        self.done_ += 1
        if self.progress is not None:
            self.progress(self.what, self.done_, self.total)

    def done(self) -> None:
        if self.progress is not None and self.what:
            self.progress(self.what, self.done_, self.done_)
        self.what = ""


def report_of(summary: Summary, *, dry_run: bool) -> MigrationReport:
    return MigrationReport(
        dry_run=dry_run,
        failed=summary.failed,
        accounts=summary.accounts,
        folders=summary.folders,
        messages=summary.messages,
        octets=summary.octets,
        duplicates=summary.duplicates,
        uids_kept=summary.uids_kept,
        uids_changed=summary.uids_changed,
        problems=tuple(MigrationProblem(a, w, r) for a, w, r in summary.problems),
        notes=tuple(summary.notes),
        aliases=tuple(summary.aliases),
    )


async def run_migration(op: Operation, ctx: ManagementContext) -> MigrationReport:
    """Run a migration operation (``ManagementContext.migrator``)."""
    summary = Summary()
    work = _pop(op, ctx, summary) if isinstance(op, MigratePop) else _jobs(op, ctx, summary)
    try:
        if ctx.time_limit is None:
            await work
        else:
            async with asyncio.timeout(ctx.time_limit):
                await work
    except TimeoutError:
        raise StoreError(
            ErrorKind.TEMP,
            f"The migration took longer than {ctx.time_limit:g} s and was stopped after "
            f"{summary.messages} message(s); run it again to resume",
        ) from None
    return report_of(summary, dry_run=bool(getattr(op, "dry_run", False)))


def _hashes(ctx: ManagementContext, passwd_file: str, summary: Summary) -> dict[str, str | None]:
    if not passwd_file:
        return {}
    from msgstore.migrate.accounts import read_passwd

    entries, complaints = read_passwd(server_path(ctx, passwd_file))
    summary.notes.extend(f"{passwd_file}: {line}" for line in complaints)
    return {name: e.password_hash for name, e in entries.items()}


async def _jobs(op: Operation, ctx: ManagementContext, summary: Summary) -> None:
    if isinstance(op, MigrateMbox):
        jobs = await asyncio.to_thread(_mbox_jobs, op, ctx, summary)
        common: MigrateMbox | MigrateMaildir | MigrateImap = op
    elif isinstance(op, MigrateMaildir):
        common = op
        hashes = await asyncio.to_thread(_hashes, ctx, op.passwd_file, summary)
        root = server_path(ctx, op.path)

        async def maildir() -> Source:
            from msgstore.migrate.maildir import open_maildir

            return await asyncio.to_thread(open_maildir, root)

        home = server_path(ctx, op.home) if op.home else None
        jobs = [Job(op.account, maildir, password_hash=hashes.get(op.account), home=home)]
    elif isinstance(op, MigrateImap):
        common = op
        jobs = [await asyncio.to_thread(_imap_job, op, ctx, summary)]
    else:
        raise StoreError(ErrorKind.INTERNAL, f"not a migration: {type(op).__name__}")
    options = Options(
        dry_run=common.dry_run,
        keep_uids=not common.no_keep_uids,
        max_octets=ctx.config.store.max_message_size,
    )
    forwarding = Forwarding(
        target=common.forward_to or None,
        write_forward=not common.aliases_only,
        old_address=common.old_address or None,
    )
    await run_jobs(
        ctx,
        jobs,
        options=options,
        create=common.create,
        forwarding=forwarding,
        reporter=ProgressReporter(ctx),
        summary=summary,
    )


def _mbox_jobs(op: MigrateMbox, ctx: ManagementContext, summary: Summary) -> list[Job]:
    from msgstore.migrate.accounts import login_accounts, read_passwd
    from msgstore.migrate.mbox import open_mbox

    target = mailbox_name(op.mailbox)
    hashes = _hashes(ctx, op.passwd_file, summary)
    fmt = op.format.value

    def job(name: str, spool: Path, home: Path | None, local: str | None) -> Job:
        async def source() -> Source:
            return await asyncio.to_thread(open_mbox, spool, mailbox=target, fmt=fmt)  # type: ignore[arg-type]

        return Job(name, source, password_hash=hashes.get(name), home=home, local_user=local)

    if not op.all_from_passwd:
        path = server_path(ctx, op.path)
        local = None if op.account else path.name
        return [job(op.account or path.name, path, None, local)]
    entries, complaints = read_passwd(server_path(ctx, op.all_from_passwd))
    summary.notes.extend(f"{op.all_from_passwd}: {line}" for line in complaints)
    spools = server_path(ctx, op.spool_dir)
    jobs = []
    for entry in login_accounts(entries):
        spool = spools / entry.name
        if spool.is_file():
            own = entry.password_hash
            jobs.append(
                dataclasses.replace(
                    job(entry.name, spool, entry.home, entry.name),
                    password_hash=hashes.get(entry.name, own) or own,
                )
            )
    return jobs


def _imap_job(op: MigrateImap, ctx: ManagementContext, summary: Summary) -> Job:
    from msgstore.migrate.imapsrc import ImapAccount, open_imap

    remote = ImapAccount(
        host=op.host.strip(),
        port=op.port or (993 if op.security.value == "tls" else 143),
        user=op.user,
        password=op.password.reveal(),
        security=op.security.value,
        verify=not op.insecure,
        ca_file=str(server_path(ctx, op.ca_file)) if op.ca_file else None,
    )
    name = op.account or op.user
    hashes = _hashes(ctx, op.passwd_file, summary)

    async def source() -> Source:
        return await open_imap(remote)

    return Job(name, source, password_hash=hashes.get(name))


async def _pop(op: MigratePop, ctx: ManagementContext, summary: Summary) -> None:
    from msgstore.migrate.forward import add_forward_entry
    from msgstore.migrate.pop import pop_to_full
    from msgstore.storage.base import AccountQuery

    names = op.names
    if op.all:
        pop_only = await ctx.backend.list_accounts(AccountQuery(kind=AccountKind.POP))
        names = [a.name for a in pop_only]
    for name in names:
        before = len(summary.problems)
        await pop_to_full(ctx, name, summary, dry_run=op.dry_run)
        if op.old_address and len(summary.problems) == before:
            if op.dry_run:
                summary.notes.append(f"{name}: would add forwarding entry {op.old_address}")
                continue
            try:
                done = await add_forward_entry(ctx, op.old_address, name)
            except StoreError as exc:
                summary.problem(name, "", exc.public)
            else:
                summary.notes.append(f"{name}: {done}")
