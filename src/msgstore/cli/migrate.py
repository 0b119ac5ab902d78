"""``msgstore migrate``: mbox, Maildir, a remote IMAP account, POP-only accounts.

One subcommand per operation of management/migration.py (``migrate mbox | maildir | imap |
pop``), built from its fields like every other command (cli/operations.py), so the options are
the same as the REST API's parameters and the Python API's arguments. Locally the run works
on the data directory; with ``--url --user`` the server runs it (paths are then the server's,
under ``[web] api_migrate_dir``). Options of this face only:

- ``--quiet``: no progress bars (a bar per mailbox on standard error, when it is a terminal);
- ``migrate imap --password-file FILE``: the source password from a file; else
  ``--password-stdin``, else ``$MSGSTORE_MIGRATE_PASSWORD``, else a prompt on a terminal;
- ``migrate pop ACCOUNT...`` takes several accounts as arguments.

The summary (accounts, folders, messages, octets, duplicates skipped, problems with reasons)
goes to standard output, or JSON with ``--json``. Exit codes: 0 everything migrated, 1
something failed (see the summary; running again resumes and copies nothing twice), sysexits
codes for usage and store errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

import click

from msgstore.cli.errors import EX_USAGE, fail
from msgstore.cli.operations import (
    collect,
    command_for,
    execute,
    operation_spec,
    remote_password,
)
from msgstore.cli.printers import print_json
from msgstore.management.operation import OperationSpec, Secret

EXIT_FAILED = 1
PASSWORD_ENV = "MSGSTORE_MIGRATE_PASSWORD"  # noqa: S105 -- the name of a variable
#: The options each subcommand has besides the operation's fields (a test checks the rest).
FACE_OPTIONS: Final[dict[str, frozenset[str]]] = {
    "mbox": frozenset({"quiet"}),
    "maildir": frozenset({"quiet"}),
    "imap": frozenset({"quiet", "password_file"}),
    "pop": frozenset(),
}


def _quiet() -> click.Option:
    return click.Option(["--quiet", "quiet"], is_flag=True, help="No progress bars.")


def _source_password(raw: dict[str, object], password_file: object) -> Secret | None:
    """The IMAP source password from --password-file, $MSGSTORE_MIGRATE_PASSWORD or a prompt;
    None when --password-stdin was given (the operation's own channel)."""
    if raw.get("password_stdin"):
        if password_file is not None:
            fail("--password-file and --password-stdin exclude each other", EX_USAGE)
        return None
    if password_file is not None:
        return Secret(Path(str(password_file)).read_text().rstrip("\r\n"))
    if os.environ.get(PASSWORD_ENV):
        return Secret(os.environ[PASSWORD_ENV])
    if sys.stdin.isatty():
        return Secret(click.prompt(f"Password for {raw['user']}@{raw['host']}", hide_input=True))
    fail(f"no source password: use --password-file, --password-stdin or ${PASSWORD_ENV}", EX_USAGE)


def _print(result: object, *, as_json: bool, pop: bool) -> bool:
    """Print the report; True if the run failed."""
    from msgstore.management.jsonable import to_json
    from msgstore.management.migration import MigrationProblem, MigrationReport

    if as_json:
        print_json(result)
    data = to_json(result)
    if not isinstance(data, dict):
        raise click.ClickException("the server sent no migration report")
    if not as_json:
        problems = data.get("problems")
        report = MigrationReport(
            **{  # type: ignore[arg-type]
                **data,
                "problems": tuple(
                    MigrationProblem(**p)  # type: ignore[arg-type]
                    for p in (problems if isinstance(problems, list) else [])
                    if isinstance(p, dict)
                ),
                "notes": tuple(data.get("notes") or ()),  # type: ignore[arg-type]
                "aliases": tuple(data.get("aliases") or ()),  # type: ignore[arg-type]
            }
        )
        lines = report.lines()
        for line in (lines[1:] or ["nothing to do"]) if pop else lines:
            click.echo(line)
    return bool(data.get("failed"))


def _callback(spec: OperationSpec) -> click.Command:
    kind = spec.name.split()[-1]

    def run(**raw: object) -> None:
        as_json = bool(raw.pop("as_json", False))
        quiet = bool(raw.pop("quiet", False))
        password_file = raw.pop("password_file", None)
        if kind == "pop":
            names = raw.get("accounts") or ()
            assert isinstance(names, tuple)
            raw["accounts"] = ",".join(str(n) for n in names) or None
        password = remote_password()
        secrets: dict[str, Secret] = {}
        if any(p.type is Secret for p in spec.params):
            source = _source_password(raw, password_file)
            if source is not None:
                secrets["password"] = source
        values, given = collect(spec, raw, secrets=secrets)
        op = spec.build(values)  # the same PARAMS errors locally and remotely
        result = execute(spec, op, given, password, bars=not (quiet or as_json))
        if _print(result, as_json=as_json, pop=kind == "pop"):
            raise click.exceptions.Exit(EXIT_FAILED)

    command = command_for(spec, kind)
    command.callback = run
    if kind == "pop":  # ACCOUNT... rather than one comma-separated argument
        command.params = [
            click.Argument(["accounts"], nargs=-1, metavar="ACCOUNT...")
            if isinstance(p, click.Argument)
            else p
            for p in command.params
        ]
    if "quiet" in FACE_OPTIONS[kind]:
        command.params.append(_quiet())
    if "password_file" in FACE_OPTIONS[kind]:
        command.params.append(
            click.Option(
                ["--password-file", "password_file"],
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help=f"File holding the source password (else --password-stdin, "
                f"${PASSWORD_ENV}, a prompt).",
            )
        )
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def migrate() -> None:
    """Bring mail in from mbox, Maildir, a remote IMAP server or POP-only accounts.

    Safe to run twice: what is already in the store (same content, or same Message-ID and
    size) is skipped, so a second run copies only what is new and a broken run resumes.
    """


def migrate_group(name: str = "migrate") -> click.Group:
    """The ``migrate`` group with its subcommands (cli/commands.py)."""
    for kind in FACE_OPTIONS:
        if kind not in migrate.commands:
            migrate.add_command(_callback(operation_spec(f"migrate {kind}")))
    return migrate
