"""Who is calling: HTTP Basic with a store account's password, or a bearer token.

- ``Authorization: Basic base64(name:password)`` (RFC 7617) goes through the process's
  :class:`~msgstore.auth.sasl.Authenticator`, so it shares the login throttle (and its delays)
  with IMAP, POP3 and the web pages, and a login-disabled account is refused.
- ``Authorization: Bearer msgstore_...`` (RFC 6750) is a token made by ``token create``
  (management/tokens.py): the account it stands for, as that account is now.

Anything else, or nothing, is no one: the API answers 401 with both challenges.
:class:`ApiAuth` does this for every API request before routing and validation, so a caller
without credentials learns nothing about the routes or their parameters.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Final

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.tokens import account_for_token
from msgstore.web.api.errors import error_response, unauthorized
from msgstore.web.context import WebContext

#: The key of the authenticated account in ``request.state``.
ACCOUNT_KEY: Final = "msgstore_account"
#: Largest request body the API reads, in octets (requests carry parameters, not mail).
MAX_BODY_OCTETS: Final = 1024 * 1024
#: Longest Authorization header considered.
MAX_AUTHORIZATION_OCTETS: Final = 4096


def client_host(conn: HTTPConnection) -> str:
    """The client's address ("" on a Unix socket)."""
    return conn.client.host if conn.client is not None else ""


async def authenticate(
    ctx: WebContext, headers: Mapping[str, str], peer: str
) -> AccountInfo | None:
    """The account the request's Authorization header names, or None (no, malformed or wrong
    credentials, unknown or expired token, login disabled)."""
    value = headers.get("authorization", "")
    if not value or len(value) > MAX_AUTHORIZATION_OCTETS:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return await account_for_token(ctx.backend, credentials)
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    name, colon, password = decoded.partition(":")
    if not colon:
        return None
    try:
        return await ctx.auth.check_password(name, password, peer)
    except StoreError as exc:
        if exc.kind in (ErrorKind.AUTH_FAILED, ErrorKind.DISABLED, ErrorKind.PARAMS):
            return None
        raise


class ApiAuth:
    """ASGI middleware of the API: authenticate every request except the public documents,
    and refuse bodies over :data:`MAX_BODY_OCTETS` -- or, on the upload routes (``uploads``:
    ``(method, path pattern)``, e.g. ``account restore``'s archive), over ``[web]
    api_max_restore_size``, a limit the route enforces itself while spooling the body."""

    def __init__(
        self,
        app: ASGIApp,
        ctx: WebContext,
        public: frozenset[str],
        uploads: Sequence[tuple[str, re.Pattern[str]]] = (),
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.public = public
        self.uploads = tuple(uploads)

    def body_limit(self, method: str, route: str) -> int:
        for wanted, pattern in self.uploads:
            if method == wanted and pattern.fullmatch(route):
                return max(MAX_BODY_OCTETS, self.ctx.config.web.api_max_restore_size)
        return MAX_BODY_OCTETS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        route = conn.url.path[len(scope.get("root_path", "")) :]
        if route in self.public:
            await self.app(scope, receive, send)
            return
        limit = self.body_limit(scope.get("method", ""), route)
        length = conn.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_big = error_response(413, "too_big", "Request body too large")
            await too_big(scope, receive, send)
            return
        try:
            account = await authenticate(self.ctx, conn.headers, client_host(conn))
        except StoreError as exc:
            from msgstore.web.api.errors import store_error_response

            await store_error_response(exc)(scope, receive, send)
            return
        if account is None:
            await unauthorized()(scope, receive, send)
            return
        scope.setdefault("state", {})[ACCOUNT_KEY] = account
        await self.app(scope, _limited(receive, limit), send)


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that fails a body larger than ``limit`` (chunked uploads have no
    Content-Length to check up front)."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise StoreError(ErrorKind.TOO_BIG, "Request body too large")
        return message

    return limited
