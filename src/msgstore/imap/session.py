"""One IMAP connection: state, enabled extensions, the read-dispatch loop.

The loop takes framer events from :class:`~msgstore.imap.connection.ImapConnection` in order
(see ``msgstore.imap`` for the contract of each event):

1. ``SendContinuation`` -> ``+ Ready``; ``FramingError`` -> its reply (and ``* BYE`` + close
   when fatal);
2. ``CommandReady`` -> :func:`~msgstore.imap.syntax.command.read_name`, then the command
   table (``registry.py``) checks the state *before* the arguments are parsed, then the
   parser, then the handler;
3. the handler returns its tagged reply (without tag) and writes untagged data through
   :attr:`Session.out`; before the tagged reply goes out, the selected state reports what
   changed in the mailbox meanwhile (``selected.py``), holding back EXPUNGE for commands
   flagged ``USES_SEQS`` (RFC 9051 §7.5.1);
4. errors: :class:`~msgstore.imap.syntax.errors.ParseError` -> ``BAD``/``NO`` per
   ``syntax/errors.py``; :class:`~msgstore.core.errors.StoreError` -> ``imap/errors.py``;
   anything else -> ``NO [SERVERBUG]`` with an incident id, traceback in the log.

``[imap] max_bad_commands`` consecutive BAD replies end the connection with ``* BYE`` (the
ALPACA defence, ECOSYSTEM.md §13). Input deadlines come from :class:`SessionLimits` (``[imap]``
config keys): a short one before login, at least 30 minutes after (RFC 9051 §5.4), the IDLE
keepalive interval, and the per-command deadline the connection enforces.

Connection limits (RELIABILITY.md §3 and §7 case 18) are counted by the server's anvil
(``auth/anvil.py``), one table for IMAP and POP3 and for every worker process: a connection
from an address that already has ``max_connections_per_ip`` connections *not yet logged in*
gets ``* BYE`` at once; a login that would give one account more than
``max_connections_per_user`` connections from one address (IMAP and POP3 together) gets ``NO
[LIMIT]`` and the session stays unauthenticated. A connection holds its address slot until it
logs in and its account slot until it ends, however it ends (``Session.run``'s ``finally``),
so killed clients leak nothing; a killed worker's slots go back when its channel closes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from msgstore import __version__, metrics
from msgstore.auth.anvil import IP, USER, Anvil, process_anvil, user_slot_key
from msgstore.auth.sasl import Authenticator
from msgstore.config import Config
from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import StoreError
from msgstore.imap.connection import ImapConnection
from msgstore.imap.errors import incident_id, internal_error, reply_for
from msgstore.imap.framer import CommandReady, FramingError, SendContinuation, discard_unit
from msgstore.imap.syntax.command import parse_arguments, read_name
from msgstore.imap.syntax.errors import InvalidTagError, ParseError
from msgstore.imap.syntax.grammar import ParseContext
from msgstore.imap.syntax.responses import (
    Code,
    ResponseCode,
    Status,
    StatusResponse,
    capability,
)
from msgstore.imap.syntax.tokens import TokenLimits
from msgstore.imap.writer import ResponseWriter
from msgstore.net.addresses import plaintext_auth_allowed
from msgstore.net.connection import ConnectionClosedError, ServiceClosingError
from msgstore.net.logs import log_context
from msgstore.storage.access import MailboxAccess
from msgstore.storage.base import Backend

if TYPE_CHECKING:
    from msgstore.imap.registry import CommandSpec
    from msgstore.imap.selected import SelectedMailbox
    from msgstore.imap.syntax.args import Command

log = logging.getLogger(__name__)


class State(enum.Flag):
    """Connection states (RFC 9051 §3)."""

    NOT_AUTHENTICATED = enum.auto()
    AUTHENTICATED = enum.auto()
    SELECTED = enum.auto()
    LOGOUT = enum.auto()


ANY: Final = State.NOT_AUTHENTICATED | State.AUTHENTICATED | State.SELECTED
AUTH: Final = State.AUTHENTICATED | State.SELECTED


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Time limits of a session, in seconds.

    Attributes:
        preauth_timeout: before login, each command must arrive within this (RELIABILITY.md
            §3: 60-180 s); ``[imap] auth_timeout``.
        auth_timeout: after login, and the longest IDLE; RFC 9051 §5.4 asks for at least 30
            minutes; ``[imap] idle_timeout``.
        idle_keepalive: interval of ``* OK Still here`` during IDLE (NAT-friendly).
        tls_handshake_timeout: time a client has to finish a TLS handshake.
        command_timeout: time to finish a command once it started (the connection's
            per-command deadline).
        output_timeout: time the client may leave output unread before it is disconnected
            (the connection's output deadline).
        max_bad_commands: consecutive BAD replies before BYE (Cassandane Alpaca.pm: 10).
        max_connections_per_user: logged-in connections of one account from one address.
        max_connections_per_ip: not-logged-in connections from one address.
    """

    preauth_timeout: float = 180.0
    auth_timeout: float = 1800.0
    idle_keepalive: float = 120.0
    tls_handshake_timeout: float = 30.0
    command_timeout: float = 120.0
    output_timeout: float = 120.0
    max_bad_commands: int = 10
    max_connections_per_user: int = 10
    max_connections_per_ip: int = 100

    @classmethod
    def from_config(cls, config: Config) -> SessionLimits:
        imap = config.imap
        return cls(
            preauth_timeout=float(max(imap.auth_timeout, 1)),
            auth_timeout=float(max(imap.idle_timeout, 1)),
            idle_keepalive=float(max(imap.idle_keepalive, 1)),
            tls_handshake_timeout=float(max(imap.tls_handshake_timeout, 1)),
            command_timeout=float(max(imap.command_timeout, 1)),
            output_timeout=float(max(imap.output_timeout, 1)),
            max_bad_commands=max(imap.max_bad_commands, 1),
            max_connections_per_user=imap.max_connections_per_user,
            max_connections_per_ip=imap.max_connections_per_ip,
        )


@dataclass(frozen=True, slots=True)
class ImapContext:
    """What every session of one IMAP service shares."""

    config: Config
    backend: Backend
    auth: Authenticator
    tls: ssl.SSLContext | None
    limits: SessionLimits = SessionLimits()
    #: Connection slots, shared with POP3 and every worker (auth/anvil.py).
    anvil: Anvil = field(default_factory=process_anvil)


@dataclass(eq=False, slots=True)
class Session:
    """One IMAP connection (module docstring)."""

    ctx: ImapContext
    conn: ImapConnection
    out: ResponseWriter = field(init=False)
    state: State = State.NOT_AUTHENTICATED
    account: AccountInfo | None = None
    access_: MailboxAccess | None = None
    selected: SelectedMailbox | None = None
    enabled: set[bytes] = field(default_factory=set)
    parse_ctx: ParseContext = field(default_factory=ParseContext)
    bad_commands: int = 0
    login_failures: int = 0
    finished: bool = False
    after_reply: Callable[[], Awaitable[None]] | None = None
    client_id: tuple[tuple[str, str | None], ...] | None = None
    #: SEARCHRES (RFC 5182): UID ranges of the last SEARCH ... RETURN (SAVE), for ``$``.
    saved_search: tuple[tuple[int, int], ...] | None = None
    log_scope: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: The anvil slots this connection holds (module docstring).
    ip_slot: str | None = None
    user_slot: str | None = None

    def __post_init__(self) -> None:
        self.out = ResponseWriter(self.conn)
        max_depth = self.ctx.config.imap.max_nesting
        self.parse_ctx = ParseContext(
            tokens=TokenLimits(max_depth=max_depth),
            max_search_depth=max(64, 2 * max_depth),
        )

    # --- helpers for handlers -----------------------------------------------------------------

    @property
    def access(self) -> MailboxAccess:
        assert self.access_ is not None, "authenticated state without an account"
        return self.access_

    @property
    def plaintext_ok(self) -> bool:
        """May a password cross this connection now ([auth] plaintext_on_loopback)?"""
        return plaintext_auth_allowed(self.ctx.config, self.conn.peer_host, self.conn.tls_active)

    @property
    def rev2(self) -> bool:
        return b"IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return b"CONDSTORE" in self.enabled or b"QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return b"QRESYNC" in self.enabled

    def enable(self, cap: bytes) -> None:
        self.enabled.add(cap)
        utf8 = b"UTF8=ACCEPT" in self.enabled or self.rev2
        self.parse_ctx = dataclasses.replace(
            self.parse_ctx, utf8=b"UTF8=ACCEPT" in self.enabled, rev2=self.rev2
        )
        self.out.utf8 = utf8

    def capabilities(self) -> tuple[bytes, ...]:
        from msgstore.imap.registry import capabilities

        return capabilities(self)

    def capability_code(self) -> ResponseCode:
        return capability(self.capabilities())

    async def admit(self, account: AccountInfo) -> bool:
        """Take an account slot for ``account`` (False: ``max_connections_per_user`` reached)
        and give back the address slot."""
        key = user_slot_key(int(account.id), self.conn.peer_host)
        if not await self.ctx.anvil.enter(USER, key, self.ctx.limits.max_connections_per_user):
            log.info("too many connections of %s from %s", account.name, self.conn.peer_host)
            return False
        self.user_slot = key
        self._release_ip()
        return True

    def _release_ip(self) -> None:
        if self.ip_slot is not None:
            self.ctx.anvil.leave(IP, self.ip_slot)
            self.ip_slot = None

    def _release(self) -> None:
        self._release_ip()
        if self.user_slot is not None:
            self.ctx.anvil.leave(USER, self.user_slot)
            self.user_slot = None

    def logged_in(self, account: AccountInfo) -> None:
        """Enter the authenticated state as ``account``."""
        self.account = account
        self.access_ = MailboxAccess(
            self.ctx.backend, account, allow_anyone=self.ctx.config.acl.allow_anyone
        )
        self.state = State.AUTHENTICATED
        self.conn.live.logged_in(account.name)
        self.log_scope.enter_context(log_context(ident=account.name))
        log.info("logged in as %s", account.name)

    def login_failed(self) -> bool:
        """Count a failed login; True when the connection must close now."""
        self.login_failures += 1
        limit = self.ctx.config.auth.max_failures_per_connection
        return bool(limit) and self.login_failures >= limit

    async def sync(self, *, allow_expunge: bool) -> None:
        """Report changes of the selected mailbox (no-op without one)."""
        if self.selected is not None:
            await self.selected.sync(self, allow_expunge=allow_expunge)

    def bye(self, text: str) -> None:
        self.out.send(StatusResponse(Status.BYE, text))
        self.finished = True

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        session = secrets.token_urlsafe(6)
        with log_context(service="imap", ident=self.conn.peer_host, session=session):
            peer = self.conn.peer_host
            if not await self.ctx.anvil.enter(IP, peer, self.ctx.limits.max_connections_per_ip):
                log.info("too many connections from %s; refused", peer)
                self.conn.write(b"* BYE [LIMIT] Too many connections from your address\r\n")
                self.conn.close()
                return
            self.ip_slot = peer
            try:
                with self.log_scope:
                    await self._loop()
            except ServiceClosingError:  # inside a command that reads (IDLE): still say BYE
                with contextlib.suppress(ConnectionClosedError):
                    self.bye(self.conn.closing_reason)
                    await self.out.flush()
            except ConnectionClosedError:
                pass
            finally:
                self._release()
                self.conn.framer.close()
                if self.selected is not None:
                    await self.selected.close()
                    self.selected = None

    def _deadline(self) -> float:
        limits = self.ctx.limits
        if self.state is State.NOT_AUTHENTICATED:
            return limits.preauth_timeout
        return limits.auth_timeout

    async def _loop(self) -> None:
        self.out.send(
            StatusResponse(Status.OK, f"msgstore {__version__} IMAP ready", self.capability_code())
        )
        await self.out.flush()
        while not self.finished:
            try:
                event = await self.conn.next_event(self._deadline())
            except TimeoutError:
                log.info("disconnected for inactivity")
                self.bye("Autologout; idle for too long")
                break
            except ServiceClosingError:
                self.bye(self.conn.closing_reason)
                break
            if isinstance(event, SendContinuation):
                self.out.write(b"+ " + event.text + b"\r\n")
            elif isinstance(event, FramingError):
                self._framing_error(event)
            else:
                await self._command(event)
            if self.after_reply is not None:
                await self.out.flush()
                action, self.after_reply = self.after_reply, None
                await action()
            await self.out.flush()
        await self.out.flush()
        self.conn.close()

    def _framing_error(self, event: FramingError) -> None:
        code = ResponseCode(Code(event.code)) if event.code else None
        self.out.send(StatusResponse(Status(event.status), event.text, code, event.tag))
        if event.fatal:
            self.bye("Closing connection after a protocol error")
        elif event.status == b"BAD":
            self._count_bad()

    def _count_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.ctx.limits.max_bad_commands:
            self.bye("Too many invalid commands")

    def _bad(self, text: str, tag: bytes | None, code: bytes | None = None) -> None:
        rc = ResponseCode(Code(code)) if code and code in Code._value2member_map_ else None
        self.out.send(StatusResponse(Status.BAD, text, rc, tag))
        self._count_bad()

    async def _command(self, ready: CommandReady) -> None:
        from msgstore.imap.registry import REGISTRY

        unit = ready.unit
        self.conn.live.command()
        try:
            try:
                tag, name, pos = read_name(unit)
            except InvalidTagError as exc:
                self._bad(exc.text, None)
                return
            except ParseError as exc:
                self._bad(exc.text, exc.tag)
                return
            spec = REGISTRY.get(name)
            if spec is None:
                self._bad("Unknown command", tag)
                return
            if self.state not in spec.states:
                self._bad(_state_text(self.state, spec.states), tag)
                return
            try:
                cmd = parse_arguments(unit, tag, name, pos, self.parse_ctx)
            except ParseError as exc:
                if exc.status == b"NO":
                    self.out.send(StatusResponse(Status.NO, exc.text, _refusal_code(exc), tag))
                else:
                    self._bad(exc.text, tag, exc.code)
                return
            self.bad_commands = 0
            reply = await self._run_handler(spec, cmd)
            if reply.status is Status.BAD:
                self._count_bad()
            self.out.send(dataclasses.replace(reply, tag=tag))
        finally:
            discard_unit(unit)
            # STARTTLS and COMPRESS stop the framer; a refused one must let it go on.
            if self.conn.framer.paused and self.after_reply is None and not self.finished:
                self.conn.resume_framing()

    async def _run_handler(self, spec: CommandSpec, cmd: Command) -> StatusResponse:
        from msgstore.imap.registry import USES_SEQS

        try:
            reply = await spec.handler(self, cmd)
        except StoreError as exc:
            if exc.detail:
                log.warning("%s: %s", exc.public, exc.detail)
            reply = reply_for(exc)
        except ParseError as exc:
            # Argument errors only the selected state can see (a sequence number past EXISTS).
            reply = StatusResponse(Status(exc.status), exc.text)
        except (ConnectionClosedError, ServiceClosingError):
            raise
        except Exception:
            incident = incident_id()
            log.error("internal error [%s] in %s", incident, cmd.name.decode(), exc_info=True)
            metrics.error("imap")
            reply = internal_error(incident)
        if self.selected is not None and not self.finished:
            try:
                await self.sync(allow_expunge=not (spec.flags & USES_SEQS))
            except StoreError as exc:
                log.warning("sync after %s failed: %s", cmd.name.decode(), exc.public)
        return reply


def _refusal_code(exc: ParseError) -> ResponseCode | None:
    """The response code of a NO at parse time: ``BADCHARSET (...)`` with its charset list,
    ``CANNOT`` for a name the store refuses (RELIABILITY.md §7 case 14), and so on."""
    if not exc.code:
        return None
    if exc.code.startswith(b"BADCHARSET"):
        return ResponseCode(Code.BADCHARSET, exc.code[len(b"BADCHARSET ") :])
    return ResponseCode(Code(exc.code))


def _state_text(state: State, allowed: State) -> str:
    if state is State.NOT_AUTHENTICATED:
        return "Command not allowed before login"
    if allowed == State.NOT_AUTHENTICATED:
        return "Command not allowed after login"
    if State.SELECTED in allowed:
        return "No mailbox selected"
    return "Command not allowed in this state"
