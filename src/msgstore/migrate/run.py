"""A migration run: jobs (account + source), then forwarding from the old home, then the
summary. Used by ``msgstore migrate`` and callable from Python."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from msgstore.core.errors import StoreError
from msgstore.management.operation import ManagementContext
from msgstore.migrate import forward
from msgstore.migrate.engine import Options, Reporter, ensure_account, migrate_source
from msgstore.migrate.model import Source, Summary


@dataclass(frozen=True, slots=True)
class Job:
    """One account to fill from one source."""

    account: str
    open_source: Callable[[], Awaitable[Source]]
    password_hash: str | None = None  # carried over when the account is created
    home: Path | None = None  # the old home directory (for .forward), if known
    local_user: str | None = None  # the old login name (for /etc/aliases lines)


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What to do after a job succeeded. ``target``: where the old mailbox's mail should go
    now (``{user}`` is replaced by the account name), e.g. ``bob@mail.example.org`` or
    ``|/usr/bin/msgstore deliver --to {user}``; None: leave the old mailbox alone."""

    target: str | None = None
    write_forward: bool = True  # False: print /etc/aliases lines only
    old_address: str | None = None  # also a forwarding-database entry: old address -> account


async def run_jobs(
    ctx: ManagementContext,
    jobs: Sequence[Job],
    *,
    options: Options,
    create: bool,
    forwarding: Forwarding = Forwarding(),
    reporter: Reporter,
    summary: Summary | None = None,
) -> Summary:
    summary = summary if summary is not None else Summary()
    for job in jobs:
        before = len(summary.problems)
        source = await job.open_source()
        if not source.folders:  # nothing readable: no account is created for it
            for problem in source.problems:
                summary.problem(job.account, problem.where, problem.reason)
            if source.close is not None:
                await source.close()
            continue
        account = await ensure_account(
            ctx,
            job.account,
            summary,
            create=create,
            password_hash=job.password_hash,
            dry_run=options.dry_run,
        )
        if account is None and (len(summary.problems) > before or not options.dry_run):
            if source.close is not None:
                await source.close()
            continue  # no account to migrate into (a dry run goes on for one it would create)
        summary.accounts += 1
        await migrate_source(ctx.backend, account, job.account, source, summary, options, reporter)
        if len(summary.problems) == before and account is not None:
            await _forward(ctx, job, forwarding, summary, options.dry_run)
    return summary


async def _forward(
    ctx: ManagementContext, job: Job, forwarding: Forwarding, summary: Summary, dry_run: bool
) -> None:
    if forwarding.target is not None:
        target = forward.destination(forwarding.target, job.account)
        home = job.home
        if forwarding.write_forward and home is not None and os.access(home, os.W_OK):
            if dry_run:
                summary.notes.append(f"{job.account}: would write {home / forward.FORWARD_FILE}")
            else:
                try:
                    summary.notes.append(f"{job.account}: {forward.write_forward(home, target)}")
                except OSError as exc:
                    summary.problem(job.account, str(home), f"cannot write .forward: {exc}")
        else:
            summary.aliases.append(forward.alias_line(job.local_user or job.account, target))
    if forwarding.old_address is not None:
        if dry_run:
            summary.notes.append(
                f"{job.account}: would add forwarding entry {forwarding.old_address}"
            )
            return
        try:
            done = await forward.add_forward_entry(ctx, forwarding.old_address, job.account)
        except StoreError as exc:
            summary.problem(job.account, "", exc.public)
        else:
            summary.notes.append(f"{job.account}: {done}")
