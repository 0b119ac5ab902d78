"""``msgstore serve``: run every configured service in the foreground."""

from __future__ import annotations

import click

from msgstore.cli.config_cmd import load_cli_config
from msgstore.cli.context import CliContext


@click.command("serve")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Server processes sharing the listening sockets (overrides [server] workers; "
    "0: one per CPU core).",
)
@click.pass_obj
def serve(obj: CliContext, workers: int | None) -> None:
    """Serve IMAP, POP3, LMTP, SMTP, poppassd and web until SIGTERM or SIGINT.

    Creates the data directory and a self-signed TLS certificate on first start; the pid is
    written to DATA/run/msgstore.pid once every listener accepts connections (in every
    worker). With several workers the pid is the supervisor's: signal that one.
    """
    config = load_cli_config(obj)
    # Imported here: the server pulls in every protocol; other commands should not pay for it.
    from msgstore import server

    raise click.exceptions.Exit(server.serve(config, workers=workers))
