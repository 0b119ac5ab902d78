"""``msgstore db upgrade`` and ``msgstore store copy``: the PostgreSQL schema and moving a store.

``db upgrade`` brings the database named by ``[storage] dsn`` to the schema this msgstore
needs (versioned migrations, safe while servers run: an advisory lock serialises upgrades).
Servers refuse to start on an older schema and say to run it.

``store copy --to postgres|local`` copies the configured store into the other backend with
everything clients and administrators see kept (UIDs, UIDVALIDITY, modseqs, flags, keywords,
internal dates, UIDLs, ACLs, quotas, forwards, the relay queue, API tokens, the audit log),
with a progress bar; it is resumable (run it again after an interruption). The copy itself is
``storage.storecopy``. See docs/storage-postgres.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from msgstore.cli.errors import EX_USAGE, fail
from msgstore.cli.runtime import cli_context, load


async def _upgrade(dsn: str) -> tuple[int, list[int]]:
    from msgstore.storage.postgres.admin import upgrade_database

    return await upgrade_database(dsn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def db() -> None:
    """The PostgreSQL database of the postgres backend."""


@db.command()
@click.option("--dsn", metavar="URI", help="The database (default: [storage] dsn).")
def upgrade(dsn: str | None) -> None:
    """Create or upgrade the schema to the version this msgstore needs (safe while servers
    run)."""
    config = load(cli_context())
    target = dsn or config.storage.dsn
    version, applied = asyncio.run(_upgrade(target))
    if applied:
        click.echo(
            f"schema upgraded to version {version} (applied {', '.join(map(str, applied))})"
        )
    else:
        click.echo(f"schema is up to date (version {version})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def store() -> None:
    """The whole store."""


@store.command()
@click.option(
    "--to",
    "target",
    type=click.Choice(["postgres", "local"]),
    required=True,
    help="The backend to copy into (the configured store is the source).",
)
@click.option("--dsn", metavar="URI", help="--to postgres: the database (default: [storage] dsn).")
@click.option(
    "--to-data",
    type=click.Path(file_okay=False, path_type=Path),
    help="--to local: the data directory to copy into (new, or a previous copy to resume).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (for scripts).")
def copy(target: str, dsn: str | None, to_data: Path | None, no_progress: bool) -> None:
    """Copy the whole store: every account with its mailboxes and messages (UIDs,
    UIDVALIDITY, modseqs, flags, keywords, internal dates, UIDLs), subscriptions, ACLs, quota
    limits, last logins, and the forwarding entries, relay queue, API tokens and audit log.
    Web sessions are not copied. Resumable: run it again after an interruption."""
    config = load(cli_context())
    if config.storage.backend == target:
        fail(f"the configured store already is {target}; configure the source store", EX_USAGE)
    if target == "postgres":
        from msgstore.storage.postgres.admin import copy_store

        summary = asyncio.run(
            copy_store(config, dsn or config.storage.dsn, progress=not no_progress)
        )
    else:
        if to_data is None:
            fail("--to local needs --to-data DIR", EX_USAGE)
        from msgstore.storage.postgres.admin import copy_to_local

        summary = asyncio.run(copy_to_local(config, to_data, progress=not no_progress))
    click.echo(str(summary))
