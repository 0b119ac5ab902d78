"""One POP3 connection: greeting, the read-dispatch loop, timeouts, login, and the end.

States (RFC 1939 §3): AUTHORIZATION until a login succeeds and the maildrop is locked, then
TRANSACTION; QUIT in TRANSACTION is the UPDATE state (``maildrop.py``). The loop reads one
line at a time, within ``[pop3] auth_timeout`` before login and ``idle_timeout`` after (the
deadline covers the whole line), checks the command's allowed states in the table
(``commands.py``) and calls its handler. Handlers write their replies; the loop maps what they
raise:

- :class:`~msgstore.pop3.syntax.SyntaxProblem` -> ``-ERR reason``; counts towards the error
  budget (:data:`MAX_BAD_COMMANDS` in a row closes the connection, the ALPACA defence);
- :class:`~msgstore.pop3.errors.Refusal` -> ``-ERR [CODE] text``;
- :class:`~msgstore.core.errors.StoreError` -> through ``errors.py``;
- anything else -> ``-ERR [SYS/TEMP] Internal error occurred...`` with an incident id that is
  also in the log, next to the traceback (never details on the wire).

Failed logins count per connection; after ``[auth] max_failures_per_connection`` the
connection is closed after the failure reply. Connection slots (``[pop3]
max_connections_per_ip`` before login, ``max_connections_per_user`` after) are taken from the
server's anvil (``auth/anvil.py``), shared with IMAP and every worker, and given back at the end.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import secrets
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from msgstore import __version__
from msgstore.auth.anvil import IP, USER, process_anvil, user_slot_key
from msgstore.auth.sasl import SCRAM_SHA_256, Authenticator
from msgstore.config import Config
from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.net.addresses import plaintext_auth_allowed
from msgstore.net.connection import Connection, ServiceClosingError
from msgstore.net.linereader import TOO_LONG
from msgstore.net.logs import log_context
from msgstore.pop3.errors import AUTH, IN_USE, SYS_TEMP, Refusal, err, error_line
from msgstore.pop3.maildrop import Maildrop, MaildropLock
from msgstore.pop3.readahead import ReadAhead
from msgstore.pop3.replies import ok
from msgstore.pop3.syntax import SyntaxProblem, parse_line
from msgstore.storage.base import Backend

if TYPE_CHECKING:
    from msgstore.pop3.commands import CommandSpec  # the table imports this module

log = logging.getLogger(__name__)

#: Syntax errors and unknown commands in a row after which the connection is closed
#: (Cassandane's Alpaca test uses 10 for IMAP).
MAX_BAD_COMMANDS: Final = 10
#: Longest SASL response line accepted during AUTH (RFC 5034 §4 lets responses exceed the
#: 255-octet command limit): the base64 of sasl.MAX_SASL_OCTETS plus CRLF.
MAX_SASL_LINE: Final = 4096 * 4 // 3 + 8


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"


@dataclass(frozen=True, slots=True)
class Pop3Context:
    """What every session of one POP3 service shares."""

    config: Config
    backend: Backend
    auth: Authenticator
    tls: ssl.SSLContext | None
    lock_dir: Path
    #: ``commands.TABLE``, passed in by ``service.py``: imported when the service starts,
    #: not by the first connection (the table's modules are compiled then, when there is
    #: no bytecode cache).
    commands: Mapping[bytes, CommandSpec]

    def mechanisms(self, plaintext_ok: bool) -> list[str]:
        """SASL mechanisms offered now: PLAIN only where a password may cross the wire."""
        mechs = ["PLAIN"] if plaintext_ok else []
        if self.config.auth.scram_sha_256:
            mechs.append(SCRAM_SHA_256)
        return mechs


@dataclass(slots=True)
class Stats:
    """Counters for the logout log line."""

    retr: int = 0
    retr_octets: int = 0
    top: int = 0
    deleted: int = 0


@dataclass(slots=True, eq=False)
class Session:
    """One POP3 connection."""

    ctx: Pop3Context
    conn: Connection
    state: State = State.AUTHORIZATION
    user: str | None = None
    maildrop: Maildrop | None = None
    read_ahead: ReadAhead | None = None
    lock: MaildropLock | None = None
    failures: int = 0
    bad_commands: int = 0
    finished: bool = False
    stats: Stats = field(default_factory=Stats)
    log_scope: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: Anvil slots held: (kind, key).
    slots: list[tuple[str, str]] = field(default_factory=list)

    # --- helpers for handlers -----------------------------------------------------------------

    def send(self, line: bytes) -> None:
        self.conn.write(line)

    @property
    def plaintext_ok(self) -> bool:
        """May a password cross this connection now ([auth] plaintext_on_loopback)?"""
        return plaintext_auth_allowed(self.ctx.config, self.conn.peer_host, self.conn.tls_active)

    @property
    def drop(self) -> Maildrop:
        assert self.maildrop is not None, "TRANSACTION state without a maildrop"
        return self.maildrop

    async def login(self, attempt: Awaitable[AccountInfo]) -> None:
        """Finish a login: check the credentials, lock and open the maildrop, reply."""
        try:
            account = await attempt
        except StoreError as exc:
            if exc.kind not in (ErrorKind.AUTH_FAILED, ErrorKind.NO_PERM):
                raise
            self.failures += 1
            limit = self.ctx.config.auth.max_failures_per_connection
            log.info("authentication failed (%d on this connection)", self.failures)
            raise Refusal(exc.public, AUTH, close=bool(limit) and self.failures >= limit) from None
        finally:
            self.user = None
        pop3 = self.ctx.config.pop3
        key = user_slot_key(int(account.id), self.conn.peer_host)
        if not await process_anvil().enter(USER, key, pop3.max_connections_per_user):
            log.info("too many connections of %s from %s", account.name, self.conn.peer_host)
            raise Refusal("Too many connections for this account from your address", IN_USE)
        try:
            lock = await MaildropLock.acquire(
                self.ctx.lock_dir, account, login_delay_s=pop3.login_delay
            )
        except BaseException:
            process_anvil().leave(USER, key)
            raise
        try:
            maildrop = await Maildrop.open(self.ctx.backend, account)
        except BaseException:
            lock.release()
            process_anvil().leave(USER, key)
            raise
        self._release()  # the address slot of a connection not yet logged in
        self.slots.append((USER, key))
        self.lock, self.maildrop, self.state = lock, maildrop, State.TRANSACTION
        self.read_ahead = ReadAhead(maildrop.backend)
        self.conn.live.logged_in(account.name)
        self.log_scope.enter_context(log_context(ident=account.name))
        count, octets = maildrop.stat()
        log.info("logged in as %s (%d messages)", account.name, count)
        self.send(ok(f"Logged in, {count} messages ({octets} octets)"))

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self._release()

    def _release(self) -> None:
        while self.slots:
            process_anvil().leave(*self.slots.pop())

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        session_id = secrets.token_urlsafe(6)
        with (
            log_context(service="pop3", ident=self.conn.peer_host, session=session_id),
            self.log_scope,
        ):
            peer = self.conn.peer_host
            limit = self.ctx.config.pop3.max_connections_per_ip
            if not await process_anvil().enter(IP, peer, limit):
                log.info("too many connections from %s; refused", peer)
                self.send(err("Too many connections from your address", SYS_TEMP))
                await self.conn.drain()
                return
            self.slots.append((IP, peer))
            try:
                await self._loop()
            finally:
                self.release()

    async def _loop(self) -> None:
        table = self.ctx.commands
        pop3 = self.ctx.config.pop3
        conn = self.conn
        # Replies leave when the loop waits for the next command, before a handler waits for
        # I/O, at FLUSH_OCTETS (drain) or at close: not through a callback per reply.
        conn.flush_on_read = True
        self.send(ok(f"msgstore {__version__} POP3 ready"))
        while not self.finished:
            within = pop3.idle_timeout if self.state is State.TRANSACTION else pop3.auth_timeout
            try:
                line = await conn.read_line(max(within, 1))
            except TimeoutError:
                log.info("disconnected for inactivity")
                self.send(err("Disconnected for inactivity"))
                return
            except ServiceClosingError:
                self.send(err("Server shutting down", SYS_TEMP))
                return
            if line is TOO_LONG:
                self._bad(f"Line too long (limit {conn.max_line_octets} octets)")
                continue
            assert isinstance(line, bytes)
            try:
                cmd = parse_line(line)
                spec = table.get(cmd.name)
                if spec is None:
                    raise SyntaxProblem("Unknown command")
                if self.state not in spec.states:
                    raise Refusal(
                        "Not allowed before login"
                        if self.state is State.AUTHORIZATION
                        else "Not allowed after login"
                    )
                self.bad_commands = 0
                # Most handlers answer from memory and return None; the others return the
                # awaitable of their I/O (commands.py, Handler).
                pending = spec.handler(self, cmd)
                if pending is not None:
                    conn.flush()  # earlier replies of a pipelined batch go out meanwhile
                    await pending
            except SyntaxProblem as exc:
                self._bad(str(exc))
            except Refusal as exc:
                self.send(err(exc.text, exc.code))
                if exc.close:
                    self.finished = True
            except StoreError as exc:
                if exc.detail:
                    log.warning("%s: %s", exc.public, exc.detail)
                self.send(error_line(exc))
            except ServiceClosingError:
                self.send(err("Server shutting down", SYS_TEMP))
                return
            except Exception:
                incident = secrets.token_hex(4)
                log.error("internal error [%s]", incident, exc_info=True)
                self.send(
                    err(
                        "Internal error occurred. Refer to server log for more "
                        f"information. [{incident}]",
                        SYS_TEMP,
                    )
                )
            if conn.must_drain:
                await conn.drain()

    def _bad(self, reason: str) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.send(err("Too many bad commands; closing"))
            self.finished = True
        else:
            self.send(err(reason))
