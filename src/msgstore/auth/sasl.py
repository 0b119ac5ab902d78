"""SASL mechanisms, and the one password check behind every login (IMAP, POP3, poppassd, web).

    auth = Authenticator(backend, throttle)
    account = await auth.check_password(name, password, peer_host)      # USER/PASS, LOGIN
    account = await auth.plain(decode_base64(response), peer_host)      # RFC 4616 PLAIN
    exchange = auth.scram(peer_host)                                    # RFC 5802 / RFC 7677
    server_first = await exchange.first(client_first)
    server_final, account = await exchange.final(client_final)

Each protocol frames the exchange itself (POP3 ``AUTH``, IMAP ``AUTHENTICATE``, SMTP ``AUTH``)
and maps the :class:`~msgstore.core.errors.StoreError` kinds raised here to its replies:

- ``AUTH_FAILED`` "Authentication failed": wrong password *or* unknown account -- the same
  text, the same throttle delay, and the same cost, since an unknown name is checked against
  a dummy argon2id hash (``passwords.dummy_verify``; RELIABILITY.md §7 case 16);
- ``DISABLED``: the password was right but the account may not log in;
- ``PARAMS``: the client's message is malformed (bad base64, wrong number of NULs, ...);
- ``NO_PERM``: PLAIN with an authorization identity other than the authentication identity
  (impersonation is not offered).

Every attempt waits for the login throttle first (``auth/throttle.py``) and reports its
outcome to it. Password verification (argon2 costs ~20 ms and 19 MiB) runs in a small
thread pool of its own, so a burst of logins neither blocks the event loop nor starves the
storage threads. A login with a legacy hash stores the fresh argon2id hash ``verify_password``
returns (Dovecot-style transparent rehash).

Successful logins are remembered for the web's "last logins" page (per account, protocol and
client address, the latest time only) by :class:`LoginRecorder`: in memory first, written in
one ``record_logins`` transaction at most every :data:`LOGIN_FLUSH_S` seconds, so a login adds
no synchronous database write (and no fsync) to the IMAP/POP3 login path. Best effort: the
logins of the last seconds before a crash are not remembered, and a failed write is logged and
dropped. The protocol name is the authenticator's ``protocol`` (by default the package of the
code that built it: ``msgstore.imap.server`` -> ``imap``).

SCRAM-SHA-256 uses scramp (ECOSYSTEM.md §12). SCRAM needs the server to hold SCRAM secrets,
which an argon2id hash is not; it works for accounts whose stored hash is Dovecot's
``{SCRAM-SHA-256}iterations,salt,stored_key,server_key`` (base64 fields), which USER/PASS and
PLAIN can verify too. For other accounts and unknown names the exchange runs with a salt derived
from the name, so it fails at the proof exactly like a wrong password does. No ``-PLUS``
(channel binding) variant is offered yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from scramp import ScramException, ScramMechanism  # type: ignore[import-untyped]

from msgstore import metrics
from msgstore.auth.passwords import dummy_verify, scheme_of, verify_password
from msgstore.auth.throttle import LoginThrottle
from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId
from msgstore.storage.base import Backend, LoginRecord

log = logging.getLogger(__name__)

SCRAM_SHA_256: Final = "SCRAM-SHA-256"
PLAIN: Final = "PLAIN"
#: The iteration count of the made-up SCRAM secrets for names that have none (RFC 7677 §4
#: recommends at least 4096; Dovecot's default).
SCRAM_ITERATIONS: Final = 4096
#: Longest SASL client message accepted, decoded (a PLAIN response carries two names of up
#: to 255 octets and a password of up to 1024).
MAX_SASL_OCTETS: Final = 4096
#: Threads that verify passwords; argon2 uses 19 MiB each while it runs.
VERIFY_THREADS: Final = 4
#: Seconds a successful login waits in memory before it is written with the others.
LOGIN_FLUSH_S: Final = 2.0
#: Pending logins (account and address pairs) that make a write start at once.
MAX_PENDING_LOGINS: Final = 10_000


def _fail(protocol: str) -> StoreError:
    metrics.login_failed(protocol)
    return StoreError(ErrorKind.AUTH_FAILED, "Authentication failed")


def _params(reason: str) -> StoreError:
    return StoreError(ErrorKind.PARAMS, reason)


def decode_base64(data: bytes) -> bytes:
    """Strict base64 of a SASL message; a lone ``=`` is the empty message (RFC 4422 §5).

    Raises:
        StoreError: PARAMS for anything that is not canonical base64 or decodes to more than
            :data:`MAX_SASL_OCTETS` octets.
    """
    text = data.strip()
    if text == b"=":
        return b""
    if len(text) > (MAX_SASL_OCTETS * 4) // 3 + 4:
        raise _params("SASL message too long")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _params("Invalid base64 data") from None


def encode_base64(data: bytes) -> bytes:
    return base64.b64encode(data)


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    """A decoded PLAIN message (RFC 4616): ``authzid NUL authcid NUL passwd``."""

    authzid: str
    authcid: str
    password: str


def parse_plain(message: bytes) -> PlainCredentials:
    """Decode a PLAIN message. Raises PARAMS with the reason."""
    parts = message.split(b"\0")
    if len(parts) != 3:
        raise _params("PLAIN needs exactly two NUL separators")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise _params("PLAIN message is not UTF-8") from None
    if not authcid or not password:
        raise _params("PLAIN needs a user name and a password")
    return PlainCredentials(authzid, authcid, password)


@dataclass(frozen=True, slots=True)
class ScramSecret:
    """Stored SCRAM credentials (RFC 5802 §3): what the server keeps instead of a password."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    @classmethod
    def parse(cls, stored: str) -> ScramSecret | None:
        """Dovecot's ``{SCRAM-SHA-256}i,salt,stored,server`` form, or None."""
        if scheme_of(stored) != SCRAM_SHA_256:
            return None
        fields = stored.partition("}")[2].split(",")
        if len(fields) != 4 or not fields[0].isdigit() or not 1 <= len(fields[0]) <= 7:
            return None
        try:
            salt, stored_key, server_key = (base64.b64decode(f, validate=True) for f in fields[1:])
        except (binascii.Error, ValueError):
            return None
        if len(stored_key) != 32 or len(server_key) != 32 or not salt:
            return None
        return cls(int(fields[0]), salt, stored_key, server_key)

    def format(self) -> str:
        b64 = (base64.b64encode(v).decode() for v in (self.salt, self.stored_key, self.server_key))
        return f"{{{SCRAM_SHA_256}}}{self.iterations}," + ",".join(b64)

    @classmethod
    def make(cls, password: str, iterations: int = SCRAM_ITERATIONS) -> ScramSecret:
        """New SCRAM-SHA-256 credentials for ``password`` (for imports and tests)."""
        salt, stored_key, server_key, i = ScramMechanism(SCRAM_SHA_256).make_auth_info(
            password, iteration_count=iterations
        )
        return cls(int(i), bytes(salt), bytes(stored_key), bytes(server_key))

    def verify(self, password: str) -> bool:
        """Does ``password`` produce this secret's StoredKey? (PLAIN against a SCRAM hash.)"""
        salted = hashlib.pbkdf2_hmac(
            "sha256", password.encode("utf-8", "surrogatepass"), self.salt, self.iterations
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), self.stored_key)


class LoginRecorder:
    """Successful logins of one protocol, written to the store in batches (module docstring)."""

    def __init__(self, backend: Backend, protocol: str, flush_s: float = LOGIN_FLUSH_S) -> None:
        self.backend = backend
        self.protocol = protocol
        self.flush_s = flush_s
        self._pending: dict[tuple[AccountId, str], dt.datetime] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, account: AccountInfo, address: str) -> None:
        """Remember a login; the write happens within :data:`LOGIN_FLUSH_S` seconds."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on a loop (a synchronous caller): nothing could write it
        self._pending[(account.id, address)] = dt.datetime.now(dt.UTC)
        if len(self._pending) >= MAX_PENDING_LOGINS:
            self._start_flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.flush_s, self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write what is pending now (the web awaits this after its own logins)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        if not batch:
            return
        records = [
            LoginRecord(account=account, protocol=self.protocol, address=address, at=at)
            for (account, address), at in batch.items()
        ]
        try:
            await self.backend.record_logins(records)
        except Exception as exc:  # best effort: never fail a login over its record
            log.warning("could not record %d %s login(s): %s", len(records), self.protocol, exc)

    def close(self) -> None:
        """Start the last write if the loop still runs; pending logins are otherwise lost."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            try:
                self._start_flush()
            except RuntimeError:
                self._pending.clear()


def _caller_protocol(depth: int) -> str:
    """``imap`` for code in ``msgstore.imap.*``: the default protocol of an authenticator."""
    module = str(sys._getframe(depth).f_globals.get("__name__", ""))
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "msgstore" else "other"


class Authenticator:
    """The password check behind every login; one per server process."""

    def __init__(
        self, backend: Backend, throttle: LoginThrottle, *, protocol: str | None = None
    ) -> None:
        self.backend = backend
        self.throttle = throttle
        self.protocol = protocol or _caller_protocol(2)
        self.logins = LoginRecorder(backend, self.protocol)
        self._pool = ThreadPoolExecutor(max_workers=VERIFY_THREADS, thread_name_prefix="auth")
        self._fake_key = os.urandom(32)

    def close(self) -> None:
        self.logins.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def lookup(self, name: str) -> tuple[AccountInfo, str] | None:
        """The account and its stored hash, or None for an unknown name."""
        try:
            return await self.backend.get_password_hash(name)
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    async def check_password(self, name: str, password: str, peer_host: str) -> AccountInfo:
        """The account if ``password`` is right; raises as the module docstring says."""
        await self.throttle.wait(name, peer_host)
        if not name or not password:
            self.throttle.failed(name, peer_host, password)
            raise _fail(self.protocol)
        found = await self.lookup(name)
        loop = asyncio.get_running_loop()
        if found is None:
            await loop.run_in_executor(self._pool, dummy_verify, password)
            self.throttle.failed(name, peer_host, password)
            raise _fail(self.protocol)
        account, stored = found
        scram = ScramSecret.parse(stored)
        rehash: str | None = None
        if scram is not None:
            ok = await loop.run_in_executor(self._pool, scram.verify, password)
        else:
            verdict = await loop.run_in_executor(self._pool, verify_password, password, stored)
            ok, rehash = verdict.ok, verdict.rehash
        if not ok:
            self.throttle.failed(name, peer_host, password)
            raise _fail(self.protocol)
        if rehash is not None:
            try:
                await self.backend.set_password_hash(account.name, rehash)
            except StoreError as exc:
                log.warning("could not store the rehashed password of %s: %s", account.name, exc)
        return self.admit(account, peer_host)

    def admit(self, account: AccountInfo, peer_host: str) -> AccountInfo:
        """After a verified secret: clear the throttle, refuse disabled accounts."""
        self.throttle.succeeded(account.name, peer_host)
        if account.login_disabled:
            raise StoreError(ErrorKind.DISABLED, "Logins are disabled for this account")
        self.logins.note(account, peer_host)
        metrics.login(self.protocol)
        return account

    async def plain(self, message: bytes, peer_host: str) -> AccountInfo:
        """SASL PLAIN (RFC 4616) with a decoded client message."""
        creds = parse_plain(message)
        if creds.authzid and creds.authzid != creds.authcid:
            await self.throttle.wait(creds.authcid, peer_host)
            self.throttle.failed(creds.authcid, peer_host, creds.password)
            raise StoreError(ErrorKind.NO_PERM, "Acting as another user is not allowed")
        return await self.check_password(creds.authcid, creds.password, peer_host)

    def scram(self, peer_host: str) -> ScramExchange:
        """A new SCRAM-SHA-256 server exchange."""
        return ScramExchange(self, peer_host)

    def fake_scram_secret(self, name: str) -> ScramSecret:
        """Credentials for a name without SCRAM secrets: the salt is stable per name (so it
        does not give away that the name is unknown), the keys match no password."""
        salt = hmac.digest(self._fake_key, name.casefold().encode("utf-8", "replace"), "sha256")
        return ScramSecret(SCRAM_ITERATIONS, salt[:16], os.urandom(32), os.urandom(32))


def _scram_name(client_first: str) -> tuple[str, str]:
    """``(authzid, username)`` of a SCRAM client-first message (RFC 5802 §5.1), decoded."""
    parts = client_first.split(",", 3)
    if len(parts) < 4 or parts[0][:1] not in ("n", "y", "p"):
        raise _params("Malformed SCRAM client-first message")
    authzid = parts[1]
    if authzid and not authzid.startswith("a="):
        raise _params("Malformed SCRAM authorization identity")
    if not parts[2].startswith("n="):
        raise _params("SCRAM client-first message has no user name")

    def unescape(text: str) -> str:
        if "=" in text.replace("=2C", "").replace("=3D", ""):
            raise _params("Malformed SCRAM user name")
        return text.replace("=2C", ",").replace("=3D", "=")

    return unescape(authzid[2:]), unescape(parts[2][2:])


class ScramExchange:
    """One SCRAM-SHA-256 server exchange: :meth:`first`, then :meth:`final`."""

    def __init__(self, auth: Authenticator, peer_host: str) -> None:
        self._auth = auth
        self._peer = peer_host
        self._name = ""
        self._account: AccountInfo | None = None
        self._server: object = None

    async def first(self, client_first: bytes) -> bytes:
        """The server-first message. Raises PARAMS, NO_PERM."""
        try:
            text = client_first.decode("utf-8")
        except UnicodeDecodeError:
            raise _params("SCRAM message is not UTF-8") from None
        authzid, name = _scram_name(text)
        if not name:
            raise _params("SCRAM client-first message has no user name")
        self._name = name
        await self._auth.throttle.wait(name, self._peer)
        if authzid and authzid != name:
            self._auth.throttle.failed(name, self._peer)
            raise StoreError(ErrorKind.NO_PERM, "Acting as another user is not allowed")
        found = await self._auth.lookup(name)
        secret = None
        if found is not None:
            self._account, stored = found
            secret = ScramSecret.parse(stored)
        if secret is None:
            self._account = None
            secret = self._auth.fake_scram_secret(name)

        def credentials(_user: str) -> tuple[bytes, bytes, bytes, int]:
            assert secret is not None
            return secret.salt, secret.stored_key, secret.server_key, secret.iterations

        server = ScramMechanism(SCRAM_SHA_256).make_server(credentials)
        try:
            server.set_client_first(text)
            reply = server.get_server_first()
        except ScramException as exc:
            self._auth.throttle.failed(name, self._peer)
            raise _params(f"SCRAM: {exc}") from None
        self._server = server
        return str(reply).encode("utf-8")

    async def final(self, client_final: bytes) -> tuple[bytes, AccountInfo]:
        """The server-final message and the account. Raises AUTH_FAILED, DISABLED, PARAMS."""
        server = self._server
        if server is None:
            raise _params("SCRAM exchange out of order")
        self._server = None
        try:
            text = client_final.decode("utf-8")
            server.set_client_final(text)  # type: ignore[attr-defined]
            reply = str(server.get_server_final())  # type: ignore[attr-defined]
        except (ScramException, UnicodeDecodeError):
            self._auth.throttle.failed(self._name, self._peer)
            raise _fail(self._auth.protocol) from None
        if self._account is None:  # made-up secret: cannot verify, but be sure
            self._auth.throttle.failed(self._name, self._peer)
            raise _fail(self._auth.protocol)
        account = self._auth.admit(self._account, self._peer)
        return reply.encode("utf-8"), account
