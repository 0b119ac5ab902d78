"""AUTHORIZATION state: USER/PASS (RFC 1939 §7), AUTH (RFC 5034), STLS (RFC 2595).

Passwords (USER/PASS, AUTH PLAIN) may cross the connection only where ``[auth]
plaintext_on_loopback`` allows it (TLS, or a loopback client); elsewhere they get
``-ERR [AUTH]`` and CAPA offers neither USER nor PLAIN. SCRAM-SHA-256 never sends the
password and is allowed everywhere.

STLS refuses, and closes, when the client sent anything after the STLS line before the TLS
handshake (RELIABILITY.md §7 case 20): such octets would otherwise be read as if they had come
over TLS (CVE-2021-38084 in Courier's POP3, and many more).
"""

from __future__ import annotations

import logging
from typing import Final

from msgstore.auth.sasl import PLAIN, SCRAM_SHA_256, decode_base64, encode_base64
from msgstore.core.accounts import AccountInfo
from msgstore.net.linereader import TOO_LONG
from msgstore.pop3.errors import AUTH, Refusal
from msgstore.pop3.replies import ok, send_lines
from msgstore.pop3.session import MAX_SASL_LINE, Session
from msgstore.pop3.syntax import Command, SyntaxProblem, arity

log = logging.getLogger(__name__)

PLAINTEXT_REFUSED: Final = "Plaintext authentication disallowed on non-secure connections"


def _require_plaintext(session: Session) -> None:
    if not session.plaintext_ok:
        raise Refusal(PLAINTEXT_REFUSED, AUTH)


def user(session: Session, cmd: Command) -> None:
    _require_plaintext(session)
    (name,) = arity(cmd, 1)
    try:
        session.user = name.decode("utf-8")
    except UnicodeDecodeError:
        raise SyntaxProblem("User name is not UTF-8") from None
    session.send(ok("Send your password"))


async def pass_(session: Session, cmd: Command) -> None:
    _require_plaintext(session)
    if session.user is None:
        raise Refusal("Send USER first")
    # An undecodable password cannot match any stored one; it still goes through the same
    # check (and the same delay) as any wrong password.
    password = cmd.rest.decode("utf-8", "surrogateescape")
    await session.login(session.ctx.auth.check_password(session.user, password, _peer(session)))


def _peer(session: Session) -> str:
    return session.conn.peer_host


async def auth(session: Session, cmd: Command) -> None:
    """AUTH [mechanism [initial-response]]; without arguments, list the mechanisms."""
    mechs = session.ctx.mechanisms(session.plaintext_ok)
    if not cmd.rest:
        await send_lines(session.conn, ok("Mechanisms follow"), (m.encode() for m in mechs))
        return
    parts = cmd.rest.split(b" ")
    if len(parts) > 2 or not all(parts):
        raise SyntaxProblem("Usage: AUTH mechanism [initial-response]")
    mech = parts[0].upper().decode("ascii", "replace")
    initial = parts[1] if len(parts) == 2 else None
    if mech == PLAIN and PLAIN not in mechs:
        raise Refusal(PLAINTEXT_REFUSED, AUTH)
    if mech not in mechs:
        raise Refusal("Unsupported authentication mechanism")
    session.user = None
    first = decode_base64(initial) if initial is not None else await _challenge(session, b"")
    if mech == PLAIN:
        await session.login(session.ctx.auth.plain(first, _peer(session)))
        return
    assert mech == SCRAM_SHA_256
    exchange = session.ctx.auth.scram(_peer(session))

    async def scram() -> AccountInfo:
        server_first = await exchange.first(first)
        client_final = await _challenge(session, server_first)
        server_final, account = await exchange.final(client_final)
        # RFC 5034 §4: additional data with success goes in a last challenge, answered empty.
        if await _challenge(session, server_final):
            raise Refusal("Unexpected data after the SCRAM exchange")
        return account

    await session.login(scram())


async def _challenge(session: Session, data: bytes) -> bytes:
    """Send ``+ base64(data)``, read the client's base64 answer; ``*`` cancels."""
    session.send(b"+ " + encode_base64(data) + b"\r\n")
    await session.conn.drain()
    conn = session.conn
    limit, conn.max_line_octets = conn.max_line_octets, max(conn.max_line_octets, MAX_SASL_LINE)
    try:
        line = await conn.read_line(session.ctx.config.pop3.auth_timeout or 1)
    finally:
        conn.max_line_octets = limit
    if line is TOO_LONG:
        raise Refusal("Authentication response too long")
    assert isinstance(line, bytes)
    if line.strip() == b"*":
        raise Refusal("Authentication cancelled")
    return decode_base64(line)


async def stls(session: Session, cmd: Command) -> None:
    arity(cmd, 0)
    if session.conn.tls_active:
        raise Refusal("TLS is already active")
    if session.ctx.tls is None:
        raise Refusal("TLS is not available")
    if session.conn.pending_input():
        # Nothing may be pipelined behind STLS: it would be taken as sent over TLS.
        log.warning("plaintext received after STLS before the TLS handshake; closing")
        raise Refusal("Unexpected data after STLS", close=True)
    # No await between the check above and the switch inside start_tls: nothing can be
    # received in between, and everything after the switch goes to the TLS layer.
    session.send(ok("Begin TLS negotiation now"))
    await session.conn.start_tls(session.ctx.tls)
    session.user = None
