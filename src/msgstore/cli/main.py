"""``msgstore``: the command line. One click group; each noun lives in its own module.

Global options (``--config``, ``--data``, env ``MSGSTORE_CONFIG``/``MSGSTORE_DATA``) are read
here once and handed to subcommands through :class:`CliContext`. Errors are one line on stderr
with a sysexits exit code (cli/errors.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from msgstore import __version__
from msgstore.cli.context import CliContext


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.version_option(__version__, prog_name="msgstore")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, data_dir: Path | None) -> None:
    """msgstore: an IMAP-first mail store."""
    ctx.obj = CliContext(config_path=config_path, data_dir=data_dir)


def _register() -> None:
    # Each module adds its commands to the group; importing them here keeps main.py short.
    from msgstore.cli import commands

    commands.register(cli)


def main() -> None:
    _register()
    cli(prog_name="msgstore")
