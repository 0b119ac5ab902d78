"""``msgstore demo``: a store to try things with, made idempotently (``make run`` calls it).

Creates the data directory if it is new, an account ``demo`` with a random password, printed
once as ``demo account: demo / <password>``, and delivers a welcome message to it through the
delivery pipeline. If the account exists, it says so and changes nothing: the password stays
whatever it is.
"""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import AsyncIterator
from typing import Final

import click

from msgstore.cli.runtime import cli_context, run_with_store
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.operation import ManagementContext, Secret, run_operation

DEMO_ACCOUNT: Final = "demo"


def welcome_message() -> bytes:
    """The first message in the demo INBOX: how to reach it."""
    date = email.utils.formatdate(localtime=False)
    message_id = email.utils.make_msgid(domain="msgstore.invalid")
    return (
        "From: msgstore <postmaster@msgstore.invalid>\r\n"
        f"To: {DEMO_ACCOUNT}@localhost\r\n"
        "Subject: Welcome to msgstore\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "This store is running. Log in as 'demo' with the password `msgstore demo` printed:\r\n"
        "\r\n"
        "  IMAP  127.0.0.1 port 1143 (STARTTLS)\r\n"
        "  POP3  127.0.0.1 port 1110 (STLS)\r\n"
        "\r\n"
        "Deliver more mail with:\r\n"
        "\r\n"
        "  printf 'Subject: hello\\r\\n\\r\\nhi\\r\\n' | msgstore deliver --to demo\r\n"
        "\r\n"
        "and look at the store with `msgstore mailbox list demo` and\r\n"
        "`msgstore quota show demo`.\r\n"
    ).encode()


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def make_demo(ctx: ManagementContext) -> str | None:
    """Create the demo account and its welcome message; the password, or None if it exists."""
    from msgstore.delivery.pipeline import Accepted, DeliveryPipeline
    from msgstore.management.accounts import AccountAdd

    password = secrets.token_urlsafe(12)
    try:
        await run_operation(AccountAdd(name=DEMO_ACCOUNT, password=Secret(password)), ctx)
    except StoreError as exc:
        if exc.kind is ErrorKind.EXISTS:
            return None
        raise
    pipeline = DeliveryPipeline.from_config(ctx.backend, ctx.config)
    (outcome,) = await pipeline.deliver_message([DEMO_ACCOUNT], _single(welcome_message()))
    if not isinstance(outcome, Accepted):
        raise StoreError(outcome.kind, f"welcome message not delivered: {outcome.text}")
    return password


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def demo() -> None:
    """Create the store and a 'demo' account with a welcome message (idempotent).

    Prints the new password once; when the account exists, leaves it as it is.
    """
    password = run_with_store(cli_context(), make_demo)
    if password is None:
        click.echo(f"demo account: {DEMO_ACCOUNT} exists (password unchanged)")
    else:
        click.echo(f"demo account: {DEMO_ACCOUNT} / {password}")
