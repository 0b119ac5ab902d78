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
each failed recipient is one line on stderr.

``--from ADDRESS`` (``-f``, as sendmail spells it) is the envelope sender the MTA passes
(Postfix pipe: ``${sender}``): the stored copy gets ``Return-Path: <ADDRESS>`` on top, and
forwarded copies leave through the relay queue with it as their sender (bounces go back to
it). ``""``, ``<>`` and ``MAILER-DAEMON`` (Postfix's default text for the null sender) are
the null sender ``<>``. Anything else that is not an address is refused with 64 (EX_USAGE)
before the message is read. Without ``--from`` nothing is added to the message and forwarded
copies have the null sender.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO, Final

import click

from msgstore.cli.errors import (
    EX_CANTCREAT,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    EXIT_CODE,
    fail,
    report,
    worst,
)
from msgstore.cli.runtime import cli_context, management_context
from msgstore.core.errors import ErrorKind, StoreError

#: Read standard input in pieces of this size; the message is never held whole in memory.
CHUNK_OCTETS: Final = 64 * 1024
#: ``--from`` values meaning the null sender <> (Postfix pipe's default ``null_sender``).
NULL_SENDERS: Final = frozenset({"", "<>", "mailer-daemon"})


def envelope_sender(text: str) -> str:
    """The ``--from`` value as an envelope sender: "" for the null sender, else the address
    in canonical form. Raises StoreError (PARAMS) for anything else."""
    from msgstore.core.address import parse_address

    if text.strip().casefold() in NULL_SENDERS:
        return ""
    return str(parse_address(text, smtputf8=not text.isascii()))


async def read_chunks(stream: BinaryIO, size: int = CHUNK_OCTETS) -> AsyncIterator[bytes]:
    """Read a blocking binary stream in a worker thread, one chunk at a time."""
    while True:
        chunk = await asyncio.to_thread(stream.read, size)
        if not chunk:
            return
        yield chunk


async def _deliver(recipients: tuple[str, ...], mailbox: str | None, sender: str | None) -> int:
    from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Rejected

    # The MTA turns standard error into the bounce text: one line per failed recipient, and
    # nothing else. Log records of the layers below (no logging is configured here) would
    # otherwise reach stderr through logging's last-resort handler.
    if not logging.getLogger().handlers:
        logging.getLogger("msgstore").addHandler(logging.NullHandler())
    async with management_context(cli_context()) as ctx:
        pipeline = DeliveryPipeline.from_config(ctx.backend, ctx.config)
        # The final delivery's trace field (RFC 5321 §4.4), left out of forwarded copies.
        return_path = b"" if sender is None else f"Return-Path: <{sender}>\r\n".encode()
        outcomes = await pipeline.deliver_message(
            recipients,
            read_chunks(sys.stdin.buffer),
            mailbox=mailbox,
            header_prefix=return_path,
            sender=sender,
            local_only_octets=len(return_path),
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
@click.option(
    "--from",
    "-f",
    "sender",
    metavar="ADDRESS",
    help="Envelope sender (Postfix pipe: ${sender}): the stored copy's Return-Path and the "
    'sender of forwarded copies. "", <> or MAILER-DAEMON: the null sender.',
)
def deliver(recipients: tuple[str, ...], mailbox: str | None, sender: str | None) -> None:
    """Deliver the message on standard input to local accounts.

    Exit codes (sysexits): 0 delivered to all, 64 bad --from, 65 too big or bad input,
    67 unknown user, 73 over quota, 75 temporary failure, 77 account does not receive mail.
    With several recipients the worst outcome decides; each failure is one line on stderr.
    """
    if sender is not None:
        try:
            sender = envelope_sender(sender)
        except StoreError as exc:
            fail(f"--from: {exc.public}", EX_USAGE)
    try:
        code = asyncio.run(_deliver(recipients, mailbox, sender))
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
