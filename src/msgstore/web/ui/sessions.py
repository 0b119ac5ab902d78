"""Server-side web sessions: the cookie holds a random id, the store holds its hash.

- The id is 32 random octets (256 bits, ``secrets.token_urlsafe``); system.db keeps only its
  SHA-256, so a copy of the database does not let anyone take over a session.
- Cookie ``msgstore_session``: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, no
  ``Max-Age`` (it ends with the browser), ``Secure`` as ``[web] secure_cookies`` says
  (:func:`secure_cookie`).
- A session ends after ``[web] session_idle_timeout`` without a request, after
  ``[web] session_max_age`` in any case, at logout, when the account is deleted or may no
  longer log in, and when its password changes by any face (the backend compares the password
  hash with the one noted at login). Activity is written at most once a minute.
- Logging in always makes a new session (and ends the one the browser had): a session id
  planted before login is worthless afterwards (session fixation).
- Each session has its own CSRF token (csrf.py); forms carry it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from msgstore.core.accounts import AccountInfo
from msgstore.storage.base import NewWebSession, WebSession
from msgstore.web.context import WebContext

COOKIE: Final = "msgstore_session"
#: Seconds between two writes of a session's ``last_seen``.
TOUCH_EVERY_S: Final = 60
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost"})


def id_hash(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode("utf-8", "surrogatepass")).hexdigest()


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.startswith("[") and "]" in name:
        name = name[1 : name.index("]")]
    if name.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def secure_cookie(request: Request, policy: str) -> bool:
    """Whether the cookie gets ``Secure`` (``[web] secure_cookies``: auto, always, never)."""
    if policy == "always":
        return True
    if policy == "never":
        return False
    if request.url.scheme == "https":
        return True
    return not _loopback_host(request.headers.get("host", ""))


@dataclass(frozen=True, slots=True)
class Started:
    """A new session: the cookie value for the browser and the stored session."""

    cookie: str
    session: WebSession


class SessionStore:
    """Loads, starts and ends web sessions for one process."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.idle_s = ctx.config.web.session_idle_timeout
        self.max_age_s = ctx.config.web.session_max_age

    async def load(self, request: Request) -> WebSession | None:
        """The request's live session, or None (no cookie, unknown, expired, disabled)."""
        value = request.cookies.get(COOKIE)
        if not value or len(value) > 200:
            return None
        key = id_hash(value)
        backend = self.ctx.backend
        session = await backend.get_web_session(key)
        if session is None:
            return None
        now = dt.datetime.now(dt.UTC)
        expired = (
            now - session.last_seen > dt.timedelta(seconds=self.idle_s)
            or now - session.created > dt.timedelta(seconds=self.max_age_s)
            or session.account.login_disabled
        )
        if expired:
            await backend.delete_web_session(key)
            return None
        if now - session.last_seen > dt.timedelta(seconds=TOUCH_EVERY_S):
            await backend.touch_web_session(key, now)
        return session

    async def start(self, request: Request, account: AccountInfo) -> Started:
        """A fresh session for ``account`` (the browser's previous one ends)."""
        backend = self.ctx.backend
        old = request.cookies.get(COOKIE)
        if old and len(old) <= 200:
            await backend.delete_web_session(id_hash(old))
        now = dt.datetime.now(dt.UTC)
        await backend.expire_web_sessions(
            idle_before=now - dt.timedelta(seconds=self.idle_s),
            created_before=now - dt.timedelta(seconds=self.max_age_s),
        )
        value = secrets.token_urlsafe(32)
        new = NewWebSession(
            id_hash=id_hash(value),
            account=account.id,
            csrf_token=secrets.token_urlsafe(32),
            created=now,
            address=client_address(request),
        )
        await backend.create_web_session(new)
        session = await backend.get_web_session(new.id_hash)
        assert session is not None
        return Started(value, session)

    async def end(self, request: Request) -> None:
        value = request.cookies.get(COOKIE)
        if value and len(value) <= 200:
            await self.ctx.backend.delete_web_session(id_hash(value))

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie(request, self.ctx.config.web.secure_cookies),
        )

    def clear_cookie(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie(request, self.ctx.config.web.secure_cookies),
        )
