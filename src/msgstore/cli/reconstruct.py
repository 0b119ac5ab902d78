"""``msgstore reconstruct``: rebuild account indexes from their message files.

The rule: ``msgstore reconstruct ACCOUNT`` repairs (as Cyrus's ``reconstruct`` does);
``--check`` only reports, and exits 1 when anything is inconsistent. ``--apply`` names the
default explicitly and cannot be combined with ``--check``. The engine underneath is dry-run by
default (``msgstore.reconstruct.engine``); this command passes ``apply=not check``.

Output: one line per discrepancy (the same line is logged), then one summary line per account;
``--json`` prints the reports as a JSON array instead. A progress bar per account (message files
checked of the files on disk) goes to standard error when it is a terminal (``--quiet``: none).
Exit codes: 0 clean or repaired, 1 found
inconsistent with ``--check``, sysexits codes for errors (unknown account 67, busy index 75).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import click

from msgstore.cli.errors import EX_USAGE, fail
from msgstore.cli.runtime import cli_context, management_context
from msgstore.core.names import MailboxName, mailbox_name
from msgstore.storage.base import ReconstructReport

EXIT_INCONSISTENT = 1


async def _run(
    accounts: tuple[str, ...],
    every: bool,
    mailbox: MailboxName | None,
    apply: bool,
    new_uidvalidity: bool,
    quiet: bool,
) -> list[ReconstructReport]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from msgstore.reconstruct import reconstruct, reconstruct_all

    console = Console(stderr=True)
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
    )

    def progress_for(name: str) -> Callable[[int, int], None]:
        task = bars.add_task(name, total=None)

        def update(done: int, total: int) -> None:  # called from the reconstruct thread
            bars.update(task, completed=done, total=total)

        return update

    async with management_context(cli_context()) as ctx:
        with bars:
            if every:
                return await reconstruct_all(
                    ctx.backend,
                    apply=apply,
                    new_uidvalidity=new_uidvalidity,
                    progress=progress_for,
                )
            return await reconstruct(
                ctx.backend,
                accounts,
                apply=apply,
                mailbox=mailbox,
                new_uidvalidity=new_uidvalidity,
                progress=progress_for,
            )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("accounts", nargs=-1, metavar="ACCOUNT...")
@click.option("--all", "every", is_flag=True, help="Every account and the public folders.")
@click.option("--mailbox", metavar="NAME", help="Compare the files of this mailbox only.")
@click.option("--check", is_flag=True, help="Report only; exit 1 if anything is inconsistent.")
@click.option("--apply", is_flag=True, help="Repair (the default; the opposite of --check).")
@click.option(
    "--new-uidvalidity",
    is_flag=True,
    help="Give every mailbox a new UIDVALIDITY (after restoring a tree from a backup).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def reconstruct(
    accounts: tuple[str, ...],
    every: bool,
    mailbox: str | None,
    check: bool,
    apply: bool,
    new_uidvalidity: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Rebuild account indexes from their message files, keeping what the index still holds.

    Salvages every readable row (flags, keywords, modseqs, internal dates, UIDLs), keeps UIDs
    and UIDVALIDITY where they can be kept, removes rows whose file is gone, adopts files
    without a row, recomputes quota. Safe while the servers run.
    """
    if check and apply:
        fail("--check and --apply exclude each other", EX_USAGE)
    if every == bool(accounts):
        fail("name one or more accounts, or --all", EX_USAGE)
    if every and mailbox is not None:
        fail("--mailbox needs one account, not --all", EX_USAGE)
    if check and new_uidvalidity:
        fail("--new-uidvalidity is a repair; it cannot be combined with --check", EX_USAGE)
    name = mailbox_name(mailbox) if mailbox is not None else None
    reports = asyncio.run(_run(accounts, every, name, not check, new_uidvalidity, quiet))
    if as_json:
        from msgstore.reconstruct import report_json

        click.echo(json.dumps(report_json(reports), indent=2, ensure_ascii=False))
    else:
        from msgstore.reconstruct import report_lines

        for line in report_lines(reports):
            click.echo(line)
    if check and any(not r.clean for r in reports):
        raise click.exceptions.Exit(EXIT_INCONSISTENT)
