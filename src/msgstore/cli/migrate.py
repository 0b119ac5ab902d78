"""``msgstore migrate``: mbox, Maildir, a remote IMAP account, POP-only accounts.

One subcommand per kind of source; the options every run shares (``--account``,
``--create``, ``--passwd-file``, ``--dry-run``, forwarding) are the same on each. A progress
bar per mailbox goes to standard error; the summary (accounts, folders, messages, octets,
duplicates skipped, problems with reasons) to standard output, or JSON with ``--json``.
Exit codes: 0 everything migrated, 1 something failed (see the summary; running again resumes
and copies nothing twice), sysexits codes for usage and store errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from msgstore.cli.errors import EX_USAGE, fail
from msgstore.cli.runtime import cli_context, management_context

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from msgstore.migrate import Job, Summary

EXIT_FAILED = 1
PASSWORD_ENV = "MSGSTORE_MIGRATE_PASSWORD"  # noqa: S105 -- the name of a variable


class BarReporter:
    """A rich progress bar per mailbox, on standard error; honest totals (the source's
    message count, or an open-ended bar when the source cannot tell)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def folder(self, account: str, name: str, total: int | None) -> None:
        self.task = self.progress.add_task(f"{account}: {name}", total=total)

    def advance(self, octets: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, 1)

    def done(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[-1]
            self.progress.update(self.task, total=task.completed)
            self.task = None


def _progress(quiet: bool) -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
    )


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every migrate subcommand takes."""
    options = [
        click.option("--create", is_flag=True, help="Create the account if it does not exist."),
        click.option(
            "--passwd-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="user:{SCHEME}hash (Dovecot passwd-file) or shadow-style file: the hash "
            "of a created account is carried over.",
        ),
        click.option("--dry-run", is_flag=True, help="Report what would happen; change nothing."),
        click.option(
            "--no-keep-uids",
            is_flag=True,
            help="Give messages new UIDs even when they could be kept.",
        ),
        click.option(
            "--forward-to",
            metavar="TARGET",
            help="After success, forward the old mailbox here ({user} = account name): "
            "writes ~/.forward where the home is known and writable, else prints an "
            "/etc/aliases line.",
        ),
        click.option(
            "--aliases-only", is_flag=True, help="Print /etc/aliases lines; write no .forward."
        ),
        click.option(
            "--old-address",
            metavar="ADDRESS",
            help="Add a forwarding-database entry from this address to the account.",
        ),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _hashes(passwd_file: Path | None) -> dict[str, str | None]:
    if passwd_file is None:
        return {}
    from msgstore.migrate.accounts import read_passwd

    entries, complaints = read_passwd(passwd_file)
    for line in complaints:
        click.echo(f"msgstore: {line}", err=True)
    return {name: e.password_hash for name, e in entries.items()}


def _run(jobs: list[Job], kw: dict[str, Any], *, summary: Summary | None = None) -> None:
    from msgstore.migrate import Forwarding, Options, Summary, run_jobs

    summary = summary if summary is not None else Summary()
    dry_run = bool(kw["dry_run"])

    async def main() -> None:
        async with management_context(cli_context()) as ctx:
            options = Options(
                dry_run=dry_run,
                keep_uids=not kw["no_keep_uids"],
                max_octets=ctx.config.store.max_message_size,
            )
            forwarding = Forwarding(
                target=kw["forward_to"],
                write_forward=not kw["aliases_only"],
                old_address=kw["old_address"],
            )
            with _progress(bool(kw["quiet"] or kw["as_json"])) as progress:
                await run_jobs(
                    ctx,
                    jobs,
                    options=options,
                    create=bool(kw["create"]),
                    forwarding=forwarding,
                    reporter=BarReporter(progress),
                    summary=summary,
                )

    asyncio.run(main())
    if kw["as_json"]:
        data = dataclasses.asdict(summary)
        data["problems"] = [
            {"account": a, "where": w, "reason": r} for a, w, r in summary.problems
        ]
        data["dry_run"] = dry_run
        data["failed"] = summary.failed
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in summary.lines(dry_run=dry_run):
            click.echo(line)
    if summary.failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def migrate() -> None:
    """Bring mail in from mbox, Maildir, a remote IMAP server or POP-only accounts.

    Safe to run twice: what is already in the store (same content, or same Message-ID and
    size) is skipped, so a second run copies only what is new and a broken run resumes.
    """


@migrate.command("mbox")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--account", metavar="NAME", help="Target account (default: the file's name).")
@click.option("--mailbox", default="INBOX", show_default=True, help="Target mailbox.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mboxo", "mboxrd"]),
    default="mboxo",
    show_default=True,
    help="mboxrd: undo one level of '>From ' quoting.",
)
@click.option(
    "--all-from-passwd",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Every login account of this passwd file that has a spool in --spool-dir.",
)
@click.option(
    "--spool-dir",
    type=click.Path(path_type=Path),
    default=Path("/var/mail"),
    show_default=True,
    help="Where the login inboxes are (SPOOL/USER).",
)
@common
def mbox_cmd(
    path: Path | None,
    account: str | None,
    mailbox: str,
    fmt: str,
    all_from_passwd: Path | None,
    spool_dir: Path,
    **kw: Any,
) -> None:
    """Migrate an mbox file (e.g. /var/mail/USER), or every login inbox of a passwd file."""
    from msgstore.core.names import mailbox_name
    from msgstore.migrate import Job
    from msgstore.migrate.accounts import login_accounts, read_passwd
    from msgstore.migrate.mbox import open_mbox

    target = mailbox_name(mailbox)
    hashes = _hashes(kw["passwd_file"])
    jobs: list[Job] = []

    def job(name: str, spool: Path, home: Path | None, local: str | None) -> Job:
        async def source() -> Any:
            return await asyncio.to_thread(open_mbox, spool, mailbox=target, fmt=fmt)  # type: ignore[arg-type]

        return Job(name, source, password_hash=hashes.get(name), home=home, local_user=local)

    if all_from_passwd is not None:
        if path is not None or account is not None:
            fail("--all-from-passwd takes no PATH or --account", EX_USAGE)
        entries, complaints = read_passwd(all_from_passwd)
        for line in complaints:
            click.echo(f"msgstore: {line}", err=True)
        for entry in login_accounts(entries):
            spool = spool_dir / entry.name
            if spool.is_file():
                own = entry.password_hash
                jobs.append(
                    dataclasses.replace(
                        job(entry.name, spool, entry.home, entry.name),
                        password_hash=hashes.get(entry.name, own) or own,
                    )
                )
    else:
        if path is None:
            fail("name an mbox file, or use --all-from-passwd", EX_USAGE)
        jobs.append(job(account or path.name, path, None, path.name if account is None else None))
    _run(jobs, kw)


@migrate.command("maildir")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--account", metavar="NAME", required=True, help="Target account.")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    help="The user's old home directory (for --forward-to).",
)
@common
def maildir_cmd(path: Path, account: str, home: Path | None, **kw: Any) -> None:
    """Migrate a Maildir++ tree (Dovecot, Courier), keeping flags, keywords and UIDs."""
    from msgstore.migrate import Job
    from msgstore.migrate.maildir import open_maildir

    hashes = _hashes(kw["passwd_file"])

    async def source() -> Any:
        return await asyncio.to_thread(open_maildir, path)

    _run([Job(account, source, password_hash=hashes.get(account), home=home)], kw)


@migrate.command("imap")
@click.option("--host", required=True)
@click.option("--port", type=int, help="Default 993 with --security tls, else 143.")
@click.option("--user", required=True, help="Login name on the source server.")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=f"File holding the source password (else ${PASSWORD_ENV}, else a prompt).",
)
@click.option(
    "--security",
    type=click.Choice(["tls", "starttls", "plain"]),
    default="tls",
    show_default=True,
)
@click.option("--insecure", is_flag=True, help="Do not verify the source's TLS certificate.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify the source's certificate against these CA certificates (PEM).",
)
@click.option("--account", metavar="NAME", help="Target account (default: --user).")
@common
def imap_cmd(
    host: str,
    port: int | None,
    user: str,
    password_file: Path | None,
    security: str,
    insecure: bool,
    ca_file: Path | None,
    account: str | None,
    **kw: Any,
) -> None:
    """Migrate every folder of a remote IMAP account, with flags and internal dates."""
    from msgstore.migrate import Job
    from msgstore.migrate.imapsrc import ImapAccount, open_imap

    if password_file is not None:
        password = password_file.read_text().rstrip("\r\n")
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    else:
        password = click.prompt(f"Password for {user}@{host}", hide_input=True)
    remote = ImapAccount(
        host=host,
        port=port or (993 if security == "tls" else 143),
        user=user,
        password=password,
        security=security,  # type: ignore[arg-type]
        verify=not insecure,
        ca_file=str(ca_file) if ca_file is not None else None,
    )
    name = account or user
    hashes = _hashes(kw["passwd_file"])

    async def source() -> Any:
        return await open_imap(remote)

    _run([Job(name, source, password_hash=hashes.get(name))], kw)


@migrate.command("pop")
@click.argument("accounts", nargs=-1, metavar="ACCOUNT...")
@click.option("--all", "every", is_flag=True, help="Every POP-only account.")
@click.option("--dry-run", is_flag=True, help="Report what would happen; change nothing.")
@click.option(
    "--old-address",
    metavar="ADDRESS",
    help="Add a forwarding-database entry from this address to the (one) account.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def pop_cmd(
    accounts: tuple[str, ...], every: bool, dry_run: bool, old_address: str | None, as_json: bool
) -> None:
    """Turn POP-only accounts into full accounts; messages and UIDLs stay as they are."""
    from msgstore.core.accounts import AccountKind
    from msgstore.core.errors import StoreError
    from msgstore.migrate import Summary
    from msgstore.migrate.forward import add_forward_entry
    from msgstore.migrate.pop import pop_to_full

    if every == bool(accounts):
        fail("name one or more accounts, or --all", EX_USAGE)
    if old_address is not None and (every or len(accounts) != 1):
        fail("--old-address needs exactly one account", EX_USAGE)
    summary = Summary()

    async def main() -> None:
        async with management_context(cli_context()) as ctx:
            names = list(accounts)
            if every:
                names = [
                    a.name for a in await ctx.backend.list_accounts() if a.kind is AccountKind.POP
                ]
            for name in names:
                before = len(summary.problems)
                await pop_to_full(ctx, name, summary, dry_run=dry_run)
                if old_address is not None and len(summary.problems) == before:
                    if dry_run:
                        summary.notes.append(f"{name}: would add forwarding entry {old_address}")
                        continue
                    try:
                        done = await add_forward_entry(ctx, old_address, name)
                    except StoreError as exc:
                        summary.problem(name, "", exc.public)
                    else:
                        summary.notes.append(f"{name}: {done}")

    asyncio.run(main())
    if as_json:
        data = dataclasses.asdict(summary)
        data["failed"] = summary.failed
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in summary.lines(dry_run=dry_run)[1:] or ["nothing to do"]:
            click.echo(line)
    if summary.failed:
        raise click.exceptions.Exit(EXIT_FAILED)


def register(group: click.Group) -> None:
    group.add_command(migrate)
