"""``msgstore``: the command line. One click group; each noun lives in its own module.

Global options (``--config``, ``--data``, env ``MSGSTORE_CONFIG``/``MSGSTORE_DATA``) are read
here once and handed to subcommands through :class:`CliContext`. Errors are one line on stderr
with a sysexits exit code (cli/errors.py): :class:`MsgstoreGroup` turns every ``StoreError``,
``ConfigError`` and unexpected exception a command raises into that line, so commands simply
raise.

A command's module is imported only when that command runs (the table in cli/commands.py):
the test suite and the MTAs start ``msgstore`` processes by the hundred, and each should pay
for its own command only. Keep the imports at the top of the command modules light for the
same reason; ``msgstore --help`` imports none of them.
"""

from __future__ import annotations

from gettext import gettext as _
from pathlib import Path
from typing import Any

import click

from msgstore import __version__
from msgstore.cli.commands import TOP_LEVEL
from msgstore.cli.context import CliContext
from msgstore.cli.errors import (
    EX_CONFIG,
    EX_IOERR,
    EX_NOPERM,
    EX_SOFTWARE,
    EXIT_CODE,
    fail,
)
from msgstore.core.errors import StoreError


class MsgstoreGroup(click.Group):
    """The top-level group: maps what a command raises to one stderr line and an exit code.

    Its commands are those of :data:`~msgstore.cli.commands.TOP_LEVEL`, each imported on first
    use; ``--help`` lists them from the table without importing them.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *TOP_LEVEL})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in TOP_LEVEL:
            self.add_command(TOP_LEVEL[cmd_name].load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click.Group.format_commands, with the table's stand-ins for commands not loaded.
        commands = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or TOP_LEVEL[name].listing(name)
            if not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section(_("Commands")):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except StoreError as exc:
            fail(exc.public, EXIT_CODE[exc.kind])
        except PermissionError as exc:
            fail(str(exc), EX_NOPERM)
        except OSError as exc:
            fail(str(exc), EX_IOERR)
        except Exception as exc:
            # Imported only now: the configuration model is not needed to report other errors.
            from msgstore.config import ConfigError

            if isinstance(exc, ConfigError):
                more = len(exc.lines) - 1
                plural = "s" if more > 1 else ""
                tail = f" (and {more} more problem{plural})" if more else ""
                fail(exc.lines[0] + tail, EX_CONFIG)
            fail(f"internal error: {type(exc).__name__}: {exc}", EX_SOFTWARE)


@click.group(cls=MsgstoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MSGSTORE_CONFIG",
    help="Configuration file (TOML). Every key is optional.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MSGSTORE_DATA",
    help="Data directory (overrides [store] data_dir). Default: ./data",
)
@click.option(
    "--url",
    envvar="MSGSTORE_URL",
    metavar="URL",
    help="Remote mode: run management commands through the REST API of the msgstore web "
    "listener at URL (e.g. https://mail.example.org) instead of on the data directory.",
)
@click.option(
    "--user",
    envvar="MSGSTORE_USER",
    metavar="NAME",
    help="Remote mode: the store account to act as (it needs the manager privilege for most "
    "commands). Password: --password-stdin, MSGSTORE_PASSWORD, or a prompt.",
)
@click.option(
    "--password-stdin",
    "password_stdin",
    is_flag=True,
    help="Remote mode: read the account's password from the first line of standard input.",
)
@click.version_option(__version__, prog_name="msgstore")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    data_dir: Path | None,
    url: str | None,
    user: str | None,
    password_stdin: bool,
) -> None:
    """msgstore: an IMAP-first mail store.

    Management commands work on the data directory (--data, --config) as the
    operating-system administrator, or with --url and --user through the REST API of a
    running server as a store account.
    """
    if (url is None) != (user is None):
        raise click.UsageError("--url and --user go together (remote mode)")
    if url is not None and ctx.invoked_subcommand is not None:
        from msgstore.cli.operations import COMMANDS

        if ctx.invoked_subcommand not in {path[0] for path in COMMANDS} | {"completion"}:
            raise click.UsageError(
                f"'{ctx.invoked_subcommand}' works on the data directory, not in remote mode "
                "(--url)"
            )
    ctx.obj = CliContext(
        config_path=config_path,
        data_dir=data_dir,
        url=url,
        user=user,
        password_stdin=password_stdin,
    )


def main() -> None:
    cli(prog_name="msgstore")
