"""The top-level commands: the module that defines each, and its line in ``msgstore --help``.

The group (cli/main.py) imports a command's module only when that command runs or shows its
own help, so each ``msgstore ...`` process pays only for the command it runs, and
``msgstore --help`` lists the commands from this table alone. A test checks that each line is
the one the loaded command gives (tests/cli/test_lazy_commands.py).

A module's attribute named in :data:`TOP_LEVEL` is the click command itself, or a function of
the command's name returning it (the management operations, cli/operations.py). A new
top-level command is defined in its module and listed here; the test fails until its line
matches.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

import click

from msgstore.cli.operations import BUILT_ELSEWHERE, COMMANDS, GROUP_HELP, ROOT_SUMMARY


@dataclass(frozen=True, slots=True)
class Entry:
    """A top-level command before its module is imported."""

    #: ``module:attribute``: the command, or a function of its name that makes it.
    target: str
    #: What ``msgstore --help`` shows: the command's help (click shortens its first
    #: paragraph to the width), or its short help as written when ``short`` is True.
    help: str | None
    short: bool = False

    def load(self, name: str) -> click.Command:
        module, attribute = self.target.split(":")
        made = getattr(importlib.import_module(module), attribute)
        command = made if isinstance(made, click.Command) else made(name)
        assert isinstance(command, click.Command)
        return command

    def listing(self, name: str) -> click.Command:
        """A stand-in giving the same ``--help`` line as the command, without importing it."""
        if self.short:
            return click.Command(name, short_help=self.help)
        return click.Command(name, help=self.help)


def _operations() -> dict[str, Entry]:
    # The management operations (cli/operations.py): a group per first word, or one command.
    names = sorted({path[0] for path in COMMANDS} - BUILT_ELSEWHERE)
    return {
        name: Entry("msgstore.cli.operations:top_level", ROOT_SUMMARY[name], short=True)
        if name in ROOT_SUMMARY
        else Entry("msgstore.cli.operations:top_level", GROUP_HELP.get(name))
        for name in names
    }


#: Every top-level command, by name.
TOP_LEVEL: Final[dict[str, Entry]] = {
    "completion": Entry(
        "msgstore.cli.completion:completion",
        "Print the completion script for SHELL (bash, zsh or fish).",
    ),
    "config": Entry(
        "msgstore.cli.config_cmd:config_group",
        "Check, show and document the configuration (msgstore.toml).",
    ),
    "db": Entry("msgstore.cli.db:db", "The PostgreSQL database of the postgres backend."),
    "store": Entry("msgstore.cli.db:store", "The whole store."),
    "deliver": Entry(
        "msgstore.cli.deliver:deliver", "Deliver the message on standard input to local accounts."
    ),
    "demo": Entry(
        "msgstore.cli.demo:demo",
        "Create the store and a 'demo' account with a welcome message (idempotent).",
    ),
    "migrate": Entry(
        "msgstore.cli.migrate:migrate_group",
        "Bring mail in from mbox, Maildir, a remote IMAP server or POP-only accounts.",
    ),
    "reconstruct": Entry(
        "msgstore.cli.reconstruct:reconstruct",
        "Rebuild account indexes from their message files, keeping what the index still holds.",
    ),
    "serve": Entry(
        "msgstore.cli.serve:serve",
        "Serve IMAP, POP3, LMTP, SMTP, poppassd and web until SIGTERM or SIGINT.",
    ),
    **_operations(),
}


def register(group: click.Group) -> None:
    """Add every top-level command to ``group`` now, importing every command module."""
    for name, entry in TOP_LEVEL.items():
        if name not in group.commands:
            group.add_command(entry.load(name), name)
