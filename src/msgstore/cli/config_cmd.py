"""``msgstore config``: check a configuration file, show the effective one, render its manual.

``config show`` never prints a secret: settings named like one (``relay.auth_password``) are
``"***"`` when set, and the password of a connection string (``storage.dsn``) is masked in
place: ``postgresql://mail:***@db.example.org/msgstore``, ``...?password=***``,
``host=db password=***``.

Also home of :func:`load_cli_config`, which every command that needs the configuration calls:
it applies ``--config``/``--data`` and turns a :class:`ConfigError` into its lines on standard
error (``msgstore: msgstore.toml: unknown key ...``) and exit code 78 (EX_CONFIG).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import click

from msgstore.cli.context import CliContext
from msgstore.cli.errors import EX_CONFIG, report

if TYPE_CHECKING:
    from msgstore.config import Config, ConfigError

#: What ``config show`` prints instead of a secret.
MASK: Final = "***"
#: Setting names whose whole value is a secret.
_SECRET_NAME: Final = re.compile(r"(?:^|_)(?:password|passphrase|secret|token)$")
#: The password of a URI's user information: ``scheme://user:PASSWORD@host`` (up to the
#: last "@" of the authority, so an unencoded "@" in the password is masked too).
_URI_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)[^/\s]*(?=@)")
#: A ``password=`` parameter: in a URI's query, or a libpq ``key=value`` string (quoted or not).
_PARAM_PASSWORD: Final = re.compile(
    r"(?P<head>(?:^|[?&\s])password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE
)


def redact(key: str, value: object) -> object:
    """``value`` of setting ``key`` as ``config show`` prints it (see the module docstring)."""
    if isinstance(value, str):
        if _SECRET_NAME.search(key):
            return MASK if value else value
        value = _URI_PASSWORD.sub(lambda m: m["head"] + MASK, value)
        return _PARAM_PASSWORD.sub(lambda m: m["head"] + MASK, value)
    if isinstance(value, list):
        return [redact(key, v) for v in value]
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    return value


def redacted(config: Config) -> Config:
    """The configuration with every secret masked (for display only)."""
    sections = {}
    for name in type(config).model_fields:
        section = getattr(config, name)
        changes = {}
        for key in type(section).model_fields:
            value = getattr(section, key)
            shown = redact(key, value)
            if shown != value:
                changes[key] = shown
        if changes:
            sections[name] = section.model_copy(update=changes)
    return config.model_copy(update=sections)


def load_cli_config(obj: CliContext, path: Path | None = None) -> Config:
    """The configuration from ``path`` (default: ``--config``), with ``--data`` applied."""
    from msgstore.config import ConfigError, load_config

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
    """Print the effective configuration: the file, its defaults and --data applied.
    Secrets (passwords, the password in [storage] dsn) are printed as ***."""
    from msgstore.config import dump_json, dump_toml

    config = redacted(load_cli_config(obj))
    sys.stdout.write(dump_json(config) if as_json else dump_toml(config))


@config_group.command("docs")
def docs() -> None:
    """Print docs/configuration.md, generated from the configuration's declarations."""
    from msgstore.config import config_docs

    sys.stdout.write(config_docs())
