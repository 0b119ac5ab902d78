"""STARTTLS, LOGIN and AUTHENTICATE (RFC 9051 §6.2, RFC 4959 SASL-IR, RFC 7677 SCRAM).

Passwords (LOGIN, AUTHENTICATE PLAIN) may cross the connection only where ``[auth]
plaintext_on_loopback`` allows it (TLS, or a loopback client); elsewhere CAPABILITY says
LOGINDISABLED and both get ``NO [PRIVACYREQUIRED]``. SCRAM-SHA-256 never sends the password
and is allowed everywhere (when ``[auth] scram_sha_256`` is on).

STARTTLS refuses and closes when the client sent anything after the STARTTLS line before the
handshake: those octets would otherwise be taken as sent over TLS (RELIABILITY.md §4 item 1;
CVE-2011-0411, CVE-2021-33515). The framer stops after STARTTLS, so such octets sit in its
buffer, unframed, and ``framer.pending_bytes()`` tells.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from msgstore.auth.sasl import PLAIN, SCRAM_SHA_256, encode_base64
from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.imap.framer import CommandReady, discard_unit
from msgstore.imap.syntax.args import AuthenticateArgs, Command, LoginArgs
from msgstore.imap.syntax.errors import ParseError
from msgstore.imap.syntax.parse_anystate import parse_sasl_response
from msgstore.imap.syntax.responses import Code, ResponseCode, Status, StatusResponse

if TYPE_CHECKING:
    from msgstore.imap.session import Session

log = logging.getLogger(__name__)

PRIVACY: StatusResponse = StatusResponse(
    Status.NO,
    "Plaintext authentication disallowed on non-secure connections",
    ResponseCode(Code.PRIVACYREQUIRED),
)


class _CancelledError(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


async def starttls(s: Session, cmd: Command) -> StatusResponse:
    conn = s.conn
    if conn.tls_active:
        conn.resume_framing()
        return StatusResponse(Status.BAD, "TLS is already active")
    if s.ctx.tls is None:
        conn.resume_framing()
        return StatusResponse(Status.NO, "TLS is not available")
    if conn.framer.pending_bytes():
        log.warning("plaintext received after STARTTLS before the TLS handshake; closing")
        s.bye("Unexpected data after STARTTLS")
        return StatusResponse(Status.BAD, "Unexpected data after STARTTLS")
    context = s.ctx.tls

    async def upgrade() -> None:
        # No await between the check above and the switch: the tagged OK is written first
        # (plaintext), then the transport speaks TLS; capabilities are re-advertised only
        # after the handshake (a client must ask CAPABILITY again).
        await conn.start_tls(context)

    s.after_reply = upgrade
    return StatusResponse(Status.OK, "Begin TLS negotiation now")


async def _login(s: Session, attempt: Awaitable[AccountInfo]) -> StatusResponse:
    try:
        account = await attempt
    except StoreError as exc:
        if exc.kind is ErrorKind.PARAMS:
            return StatusResponse(Status.BAD, exc.public)
        if exc.kind not in (ErrorKind.AUTH_FAILED, ErrorKind.NO_PERM, ErrorKind.DISABLED):
            raise
        code = {
            ErrorKind.AUTH_FAILED: Code.AUTHENTICATIONFAILED,
            ErrorKind.NO_PERM: Code.AUTHORIZATIONFAILED,
            ErrorKind.DISABLED: Code.CONTACTADMIN,
        }[exc.kind]
        log.info("authentication failed (%d on this connection)", s.login_failures + 1)
        if s.login_failed():
            s.bye("Too many failed logins")
        return StatusResponse(Status.NO, exc.public, ResponseCode(code))
    if not await s.admit(account):
        return StatusResponse(
            Status.NO, "Too many connections for this account", ResponseCode(Code.LIMIT)
        )
    s.logged_in(account)
    return StatusResponse(Status.OK, "Logged in", s.capability_code())


async def login(s: Session, cmd: Command) -> StatusResponse:
    assert isinstance(cmd.args, LoginArgs)
    if not s.plaintext_ok:
        return PRIVACY
    # An undecodable password cannot match; it still costs a full check and delay.
    password = cmd.args.password.decode("utf-8", "surrogateescape")
    return await _login(s, s.ctx.auth.check_password(cmd.args.userid, password, s.conn.peer_host))


async def _challenge(s: Session, data: bytes) -> bytes:
    """Send ``+ base64(data)`` and read the client's answer; ``*`` cancels."""
    s.out.write(b"+ " + encode_base64(data) + b"\r\n")
    await s.out.flush()
    event = await s.conn.next_event(s.ctx.limits.preauth_timeout)
    if not isinstance(event, CommandReady):
        raise _CancelledError("Invalid SASL response")
    try:
        answer = parse_sasl_response(event.unit)
    except ParseError as exc:
        raise _CancelledError(exc.text) from None
    finally:
        discard_unit(event.unit)
    if answer is None:
        raise _CancelledError("Authentication cancelled")
    return answer


async def authenticate(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, AuthenticateArgs)
    mech = args.mechanism.upper()
    peer = s.conn.peer_host
    try:
        if mech == PLAIN:
            if not s.plaintext_ok:
                return PRIVACY
            first = args.initial_response
            if first is None:
                first = await _challenge(s, b"")
            return await _login(s, s.ctx.auth.plain(first, peer))
        if mech == SCRAM_SHA_256 and s.ctx.config.auth.scram_sha_256:
            exchange = s.ctx.auth.scram(peer)
            first = args.initial_response
            if first is None:
                first = await _challenge(s, b"")

            async def scram() -> AccountInfo:
                server_first = await exchange.first(first)
                client_final = await _challenge(s, server_first)
                server_final, account = await exchange.final(client_final)
                if await _challenge(s, server_final):
                    raise StoreError(ErrorKind.PARAMS, "Unexpected data after the SCRAM exchange")
                return account

            return await _login(s, scram())
    except _CancelledError as exc:
        return StatusResponse(Status.BAD, exc.text)
    return StatusResponse(Status.NO, "Unsupported authentication mechanism")
