"""The POP3 command table, CAPA and QUIT.

One row per command: the keyword, the states it is valid in, the handler. The session checks
the state before calling the handler, and CAPA is computed from the same facts the handlers
use (plaintext policy, TLS, SASL mechanisms, the [pop3] keys), so the two cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from msgstore import __version__
from msgstore.core.errors import StoreError
from msgstore.pop3 import authorization, transaction
from msgstore.pop3.errors import SYS_TEMP, Refusal
from msgstore.pop3.replies import ok, send_lines
from msgstore.pop3.session import Session, State
from msgstore.pop3.syntax import Command, arity

log = logging.getLogger(__name__)

#: A command handler. One that answers from memory (NOOP, STAT, DELE, ...) writes its reply
#: and returns None; one with I/O to wait for returns that awaitable (an ``async def``
#: handler, or the coroutine of a multi-line reply), which the session awaits. A plain call
#: saves a coroutine per command: a download is thousands of them.
Handler = Callable[[Session, Command], Awaitable[None] | None]

# Tuples, not sets: ``state in states`` then compares by identity instead of calling the
# enum's Python-level __hash__ on every command.
AUTHORIZATION: Final = (State.AUTHORIZATION,)
TRANSACTION: Final = (State.TRANSACTION,)
ANY: Final = (State.AUTHORIZATION, State.TRANSACTION)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: bytes
    states: tuple[State, ...]
    handler: Handler


def capabilities(session: Session) -> list[str]:
    """The CAPA list for this session now (RFC 2449 §5)."""
    config = session.ctx.config
    authorizing = session.state is State.AUTHORIZATION
    caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
    if authorizing and session.plaintext_ok:
        caps.append("USER")
    mechs = session.ctx.mechanisms(session.plaintext_ok)
    if authorizing and mechs:
        caps.append("SASL " + " ".join(mechs))
    if authorizing and session.ctx.tls is not None and not session.conn.tls_active:
        caps.append("STLS")
    expire = config.pop3.expire
    caps.append(f"EXPIRE {'NEVER' if expire == 'never' else expire}")
    if config.pop3.login_delay:
        caps.append(f"LOGIN-DELAY {config.pop3.login_delay}")
    caps.append(f"IMPLEMENTATION msgstore-{__version__}")
    return caps


def capa(session: Session, cmd: Command) -> Awaitable[None]:
    arity(cmd, 0)
    return send_lines(
        session.conn,
        ok("Capability list follows"),
        (c.encode() for c in capabilities(session)),
    )


async def quit_(session: Session, cmd: Command) -> None:
    """QUIT: in TRANSACTION, the UPDATE state (maildrop.py) first."""
    arity(cmd, 0)
    session.finished = True
    if session.state is State.AUTHORIZATION:
        session.send(ok("Bye"))
        return
    drop = session.drop
    try:
        result = await drop.update(session.ctx.config.pop3.expire)
    except StoreError as exc:
        log.error("UPDATE failed: %s (%s)", exc.public, exc.detail or "")
        raise Refusal("Some deleted messages were not removed", SYS_TEMP, close=True) from None
    finally:
        session.release()
    stats = session.stats
    stats.deleted = result.removed
    log.info(
        "logged out retr=%d/%d top=%d del=%d",
        stats.retr,
        stats.retr_octets,
        stats.top,
        stats.deleted,
    )
    count = len(drop.entries) - result.removed - result.missing
    session.send(ok(f"Logging out ({result.removed} deleted, {count} left)"))


TABLE: Final[dict[bytes, CommandSpec]] = {
    spec.name: spec
    for spec in (
        CommandSpec(b"CAPA", ANY, capa),
        CommandSpec(b"QUIT", ANY, quit_),
        CommandSpec(b"NOOP", TRANSACTION, transaction.noop),
        CommandSpec(b"USER", AUTHORIZATION, authorization.user),
        CommandSpec(b"PASS", AUTHORIZATION, authorization.pass_),
        CommandSpec(b"AUTH", AUTHORIZATION, authorization.auth),
        CommandSpec(b"STLS", AUTHORIZATION, authorization.stls),
        CommandSpec(b"STAT", TRANSACTION, transaction.stat),
        CommandSpec(b"LIST", TRANSACTION, transaction.list_),
        CommandSpec(b"RETR", TRANSACTION, transaction.retr),
        CommandSpec(b"TOP", TRANSACTION, transaction.top),
        CommandSpec(b"UIDL", TRANSACTION, transaction.uidl),
        CommandSpec(b"DELE", TRANSACTION, transaction.dele),
        CommandSpec(b"RSET", TRANSACTION, transaction.rset),
    )
}
