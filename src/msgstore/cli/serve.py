"""``msgstore serve``: run every configured service in the foreground."""

from __future__ import annotations

import click

from msgstore.cli.config_cmd import load_cli_config
from msgstore.cli.context import CliContext


@click.command("serve")
@click.pass_obj
def serve(obj: CliContext) -> None:
    """Serve IMAP, POP3, LMTP, SMTP, poppassd and web until SIGTERM or SIGINT.

    Creates the data directory and a self-signed TLS certificate on first start; the pid is
    written to DATA/run/msgstore.pid once every listener accepts connections.
    """
    config = load_cli_config(obj)
    # Imported here: the server pulls in every protocol; other commands should not pay for it.
    from msgstore import server

    raise click.exceptions.Exit(server.serve(config))


def register(group: click.Group) -> None:
    group.add_command(serve)
