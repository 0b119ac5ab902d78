"""``msgstore deliver``: a local delivery agent (LDA) reading one message on standard input.

It is one more door to the delivery pipeline (msgstore.delivery.pipeline), for MTAs that pipe
mail to a command (Postfix ``pipe``/``mailbox_command``, Exim ``pipe`` transport, fetchmail
``--mda``). The exit code follows sysexits(3), as those MTAs expect:

    0   delivered to every recipient
    65  EX_DATAERR     the message is too big, empty, or otherwise refused
    67  EX_NOUSER      a recipient is not a local account
    73  EX_CANTCREAT   a recipient is over quota
    75  EX_TEMPFAIL    a temporary failure (I/O, store unavailable, broken configuration,
                       internal error): the MTA keeps the message and retries
    77  EX_NOPERM      a recipient's account does not receive mail

With several recipients the worst outcome decides (cli/errors.py ``DELIVER_SEVERITY``) and
each failed recipient is one line on stderr. Nothing is added to the message (the LMTP door
prepends trace headers; this one has no SMTP envelope to trace).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO, Final

import click

from msgstore.cli.errors import EX_CANTCREAT, EX_OK, EX_TEMPFAIL, EXIT_CODE, fail, report, worst
from msgstore.cli.runtime import cli_context, management_context
from msgstore.core.errors import ErrorKind, StoreError

#: Read standard input in pieces of this size; the message is never held whole in memory.
CHUNK_OCTETS: Final = 64 * 1024


async def read_chunks(stream: BinaryIO, size: int = CHUNK_OCTETS) -> AsyncIterator[bytes]:
    """Read a blocking binary stream in a worker thread, one chunk at a time."""
    while True:
        chunk = await asyncio.to_thread(stream.read, size)
        if not chunk:
            return
        yield chunk


async def _deliver(recipients: tuple[str, ...], mailbox: str | None) -> int:
    from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Rejected

    # The MTA turns standard error into the bounce text: one line per failed recipient, and
    # nothing else. Log records of the layers below (no logging is configured here) would
    # otherwise reach stderr through logging's last-resort handler.
    if not logging.getLogger().handlers:
        logging.getLogger("msgstore").addHandler(logging.NullHandler())
    async with management_context(cli_context()) as ctx:
        pipeline = DeliveryPipeline.from_config(ctx.backend, ctx.config)
        outcomes = await pipeline.deliver_message(
            recipients, read_chunks(sys.stdin.buffer), mailbox=mailbox
        )
    codes = [EX_OK]
    for outcome in outcomes:
        if isinstance(outcome, Accepted):
            continue
        report(f"{outcome.recipient}: {outcome.text}")
        if isinstance(outcome, Rejected):
            codes.append(EXIT_CODE[outcome.kind])
        elif outcome.kind is ErrorKind.OVER_QUOTA:
            codes.append(EX_CANTCREAT)
        else:
            codes.append(EX_TEMPFAIL)
    return worst(codes)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--to",
    "recipients",
    multiple=True,
    required=True,
    metavar="USER",
    help="Recipient: an account name, or an address whose local part is one. Repeatable.",
)
@click.option(
    "--mailbox",
    metavar="NAME",
    help="Deliver into this mailbox if it exists; INBOX otherwise.",
)
def deliver(recipients: tuple[str, ...], mailbox: str | None) -> None:
    """Deliver the message on standard input to local accounts.

    Exit codes (sysexits): 0 delivered to all, 65 too big or bad input, 67 unknown user,
    73 over quota, 75 temporary failure, 77 account does not receive mail. With several
    recipients the worst outcome decides; each failure is one line on stderr.
    """
    try:
        code = asyncio.run(_deliver(recipients, mailbox))
    except StoreError as exc:
        permanent = exc.kind in (ErrorKind.PARAMS, ErrorKind.TOO_BIG)
        fail(exc.public, EXIT_CODE[exc.kind] if permanent else EX_TEMPFAIL)
    except Exception as exc:
        # An MTA keeps a message it could not hand over only on a temporary failure; Postfix
        # bounces on EX_CONFIG and EX_SOFTWARE (global/sys_exits.c). A broken configuration or
        # a bug must not lose mail, so both are EX_TEMPFAIL here.
        from msgstore.config import ConfigError

        if isinstance(exc, ConfigError):
            fail(f"configuration error: {exc}", EX_TEMPFAIL)
        fail(f"temporary failure: {type(exc).__name__}: {exc}", EX_TEMPFAIL)
    raise click.exceptions.Exit(code)


def register(group: click.Group) -> None:
    group.add_command(deliver)
