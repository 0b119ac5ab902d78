"""One poppassd connection: the dialogue and the error table.

States: a user name is expected first, then the old password, then the new one; ``quit`` is
valid at any time. Commands are case-insensitive and take the rest of the line as their
argument (passwords may contain spaces). Replies never echo what the client sent.

- ``pass`` with a wrong old password (or for an unknown user: the same reply, the same cost)
  answers ``500`` and the dialogue starts over at ``user``; after ``[auth]
  max_failures_per_connection`` failures the connection closes. The login throttle applies
  as for every login (RELIABILITY.md §7 case 15).
- ``newpass`` goes through the management layer's ``password set`` with the account itself as
  the actor, so the one ``[auth]`` password policy applies (``management/passwords.py``:
  ``password_min_length``, ``password_max_length``, ``password_classes``, not the account
  name) after the hard limits every login needs (not empty, no NUL/CR/LF, at most 1024
  octets), exactly as for the REST API and the web pages. A refusal is ``500`` with the
  policy's reason, and the dialogue stays at ``newpass``.
- Out-of-order commands (``newpass`` before ``pass``, ``pass`` before ``user``) get ``500`` and
  change nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, assert_never

from msgstore import __version__
from msgstore.auth.passwords import hash_password
from msgstore.auth.sasl import Authenticator
from msgstore.config import Config
from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import ManagementContext, Secret
from msgstore.management.accounts import PasswordSet
from msgstore.management.operation import Actor, run_operation
from msgstore.net.connection import Connection, ServiceClosingError
from msgstore.net.linereader import TOO_LONG
from msgstore.net.logs import log_context
from msgstore.storage.base import Backend

log = logging.getLogger(__name__)

#: Longest line: "newpass " + a password of management's 1024-octet maximum + CRLF.
MAX_LINE_OCTETS: Final = 8 + 1024 + 2
#: Bad lines in a row after which the connection is closed.
MAX_BAD_COMMANDS: Final = 10


def reply(ok: bool, text: str) -> bytes:
    return f"{200 if ok else 500} {text}\r\n".encode()


def error_text(exc: StoreError) -> str:
    """The one table from the error family to poppassd's human text."""
    match exc.kind:
        case ErrorKind.AUTH_FAILED | ErrorKind.NOT_FOUND | ErrorKind.NO_PERM:
            return "Old password is incorrect."
        case ErrorKind.DISABLED:
            return "Password changes are disabled for this account."
        case ErrorKind.PARAMS:
            return exc.public if exc.public.endswith(".") else exc.public + "."
        case ErrorKind.TEMP | ErrorKind.UNAVAILABLE | ErrorKind.IN_USE | ErrorKind.LIMIT:
            return "The password could not be changed now; try again later."
        case (
            ErrorKind.INTERNAL
            | ErrorKind.CORRUPTED
            | ErrorKind.EXISTS
            | ErrorKind.OVER_QUOTA
            | ErrorKind.TOO_BIG
            | ErrorKind.NOT_POSSIBLE
            | ErrorKind.HAS_CHILDREN
            | ErrorKind.EXPUNGED
        ):
            return "The password could not be changed."
        case _:
            assert_never(exc.kind)


@dataclass(slots=True, eq=False)
class PoppassdSession:
    config: Config
    backend: Backend
    auth: Authenticator
    conn: Connection
    hasher: Callable[[str], str] = hash_password
    user: str | None = None
    account: AccountInfo | None = None
    changed: bool = False
    failures: int = 0
    bad: int = 0
    finished: bool = False

    def send(self, ok: bool, text: str) -> None:
        self.conn.write(reply(ok, text))

    async def run(self) -> None:
        with log_context(
            service="poppassd", ident=self.conn.peer_host, session=secrets.token_urlsafe(6)
        ):
            self.send(True, f"msgstore {__version__} poppassd ready, who are you?")
            while not self.finished:
                try:
                    line = await self.conn.read_line(max(self.config.poppassd.timeout, 1))
                except TimeoutError:
                    self.send(False, "Timeout, closing.")
                    return
                except ServiceClosingError:
                    self.send(False, "Server shutting down.")
                    return
                if line is TOO_LONG:
                    self._bad("Line too long.")
                else:
                    assert isinstance(line, bytes)
                    await self._command(line)
                await self.conn.drain()

    def _bad(self, text: str) -> None:
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            self.send(False, "Too many bad commands, closing.")
            self.finished = True
        else:
            self.send(False, text)

    async def _command(self, line: bytes) -> None:
        verb, _, rest = line.partition(b" ")
        try:
            arg = rest.decode("utf-8")
        except UnicodeDecodeError:
            self._bad("Arguments must be UTF-8.")
            return
        match verb.lower():
            case b"user":
                await self._user(arg)
            case b"pass":
                await self._pass(arg)
            case b"newpass":
                await self._newpass(arg)
            case b"quit":
                self.send(True, "Bye.")
                self.finished = True
            case _:
                self._bad("Unknown command.")
                return
        self.bad = 0

    async def _user(self, name: str) -> None:
        if self.changed:
            self.send(False, "The password was already changed; say quit.")
            return
        if not name or " " in name:
            self.send(False, "Usage: user NAME.")
            return
        self.user, self.account = name, None
        self.send(True, "Your password please.")

    async def _pass(self, password: str) -> None:
        if self.user is None:
            self.send(False, "Give your user name first.")
            return
        if self.account is not None:
            self.send(False, "Old password already given; send newpass.")
            return
        user = self.user
        try:
            account = await self.auth.check_password(user, password, self.conn.peer_host)
        except StoreError as exc:
            self.user = None
            if exc.kind is not ErrorKind.AUTH_FAILED:
                log.warning("old password check for %s: %s", user, exc.public)
                self.send(False, error_text(exc))
                return
            self.failures += 1
            log.info("wrong old password (%d on this connection)", self.failures)
            self.send(False, error_text(exc))
            limit = self.config.auth.max_failures_per_connection
            if limit and self.failures >= limit:
                self.finished = True
            return
        self.account = account  # the old password is not kept
        self.send(True, "Your new password please.")

    async def _newpass(self, new: str) -> None:
        if self.account is None:
            self.send(False, "Give your user name and old password first.")
            return
        account = self.account
        try:
            # PasswordSet checks the hard limits, then (the actor being the account) the
            # [auth] policy: the one source of truth for every face.
            actor = Actor(
                name=account.name, account=account, origin=f"poppassd {self.conn.peer_host}"
            )
            ctx = ManagementContext(self.backend, self.config, self.hasher, actor=actor)
            await run_operation(PasswordSet(name=account.name, password=Secret(new)), ctx)
        except StoreError as exc:
            if exc.kind is not ErrorKind.PARAMS:
                log.error("password change of %s failed: %s (%s)", account.name, exc, exc.detail)
            self.send(False, error_text(exc))
            return
        log.info("password of %s changed", account.name)
        self.changed = True
        self.account = None
        self.send(True, "Password changed, thank-you.")
