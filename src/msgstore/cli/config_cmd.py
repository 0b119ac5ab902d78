"""``msgstore config``: check a configuration file, show the effective one, render its manual.

Also home of :func:`load_cli_config`, which every command that needs the configuration calls:
it applies ``--config``/``--data`` and turns a :class:`ConfigError` into its lines on standard
error (``msgstore: msgstore.toml: unknown key ...``) and exit code 78 (EX_CONFIG).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from msgstore.cli.context import CliContext
from msgstore.cli.errors import EX_CONFIG, report
from msgstore.config import Config, ConfigError, config_docs, dump_json, dump_toml, load_config


def load_cli_config(obj: CliContext, path: Path | None = None) -> Config:
    """The configuration from ``path`` (default: ``--config``), with ``--data`` applied."""
    try:
        return load_config(path or obj.config_path, data_dir=obj.data_dir)
    except ConfigError as exc:
        config_failure(exc)


def config_failure(error: ConfigError) -> NoReturn:
    """Print the error's lines (file: key: reason) on standard error and exit with 78."""
    for line in error.lines:
        report(line)
    raise click.exceptions.Exit(EX_CONFIG)


@click.group("config")
def config_group() -> None:
    """Check, show and document the configuration (msgstore.toml)."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def check(obj: CliContext, file: Path | None) -> None:
    """Validate FILE (default: --config); print "ok" or the problems and exit 78."""
    load_cli_config(obj, file)
    click.echo("ok")


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of TOML.")
@click.pass_obj
def show(obj: CliContext, as_json: bool) -> None:
    """Print the effective configuration: the file, its defaults and --data applied."""
    config = load_cli_config(obj)
    sys.stdout.write(dump_json(config) if as_json else dump_toml(config))


@config_group.command("docs")
def docs() -> None:
    """Print docs/configuration.md, generated from the configuration's declarations."""
    sys.stdout.write(config_docs())


def register(group: click.Group) -> None:
    group.add_command(config_group)
