"""Bearer tokens for the REST API: create, list, revoke (``msgstore token ...``).

A token stands for one account: a request with ``Authorization: Bearer <token>`` runs as that
account, with the privileges the account has *now* (a token of an account that lost the
manager privilege gets 403 on manager routes; one of a deleted or login-disabled account, or
an expired one, gets 401). The token is shown once, when it is created; the store keeps only
its SHA-256, so a stolen copy of system.db reveals no usable token. Tokens are 256-bit random
values, so one hash (no salt, no slow hash) is the right tool: there is nothing to guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Final

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.units import parse_duration
from msgstore.management.accounts import find_account
from msgstore.management.operation import Access, ManagementContext, operation, param
from msgstore.storage.base import ApiToken, Backend, NewApiToken

#: Every token starts with this, so secret scanners and people can recognise one.
TOKEN_PREFIX: Final = "msgstore_"  # noqa: S105 -- a prefix, not a secret
#: Longest label, in characters.
MAX_LABEL: Final = 200
#: Longest lifetime accepted: ten years.
MAX_LIFETIME_S: Final = 10 * 366 * 86400
NEVER_WORDS: Final = frozenset({"never", "none", "0", ""})


def token_hash(token: str) -> str:
    """What the store keeps of a token: the SHA-256 of its UTF-8 form, in hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def lifetime(text: str) -> int | None:
    """``"30d"`` -> seconds; ``"never"`` (or 0) -> None. Raises PARAMS."""
    if text.strip().lower() in NEVER_WORDS:
        return None
    seconds = parse_duration(text)
    if seconds > MAX_LIFETIME_S:
        raise StoreError(ErrorKind.PARAMS, f"Lifetime {text!r} is longer than ten years")
    return seconds or None


def token_label(text: str) -> str:
    """A token's label: up to 200 printable characters."""
    if len(text) > MAX_LABEL:
        raise StoreError(ErrorKind.PARAMS, f"Label is longer than {MAX_LABEL} characters")
    if not text.isprintable():
        raise StoreError(ErrorKind.PARAMS, "Label contains control characters")
    return text


async def account_for_token(
    backend: Backend, token: str, *, now: dt.datetime | None = None
) -> AccountInfo | None:
    """The account a bearer token stands for, as it is now; None for an unknown, expired or
    malformed token or an account that may not log in."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200 or not token.isascii():
        return None
    found = await backend.find_api_token(token_hash(token))
    if found is None:
        return None
    stored, account = found
    when = now or dt.datetime.now(dt.UTC)
    if stored.expires is not None and stored.expires <= when:
        return None
    if account.login_disabled:
        return None
    return account


@dataclass(frozen=True, slots=True)
class TokenReport:
    """A token as ``token list`` shows it (never the token itself)."""

    token_id: int  # what ``token revoke`` takes
    account: str
    label: str
    created: dt.datetime
    expires: dt.datetime | None  # None: never
    expired: bool

    @classmethod
    def of(cls, token: ApiToken, now: dt.datetime) -> TokenReport:
        return cls(
            token_id=token.id,
            account=token.account_name,
            label=token.label,
            created=token.created,
            expires=token.expires,
            expired=token.expires is not None and token.expires <= now,
        )


@dataclass(frozen=True, slots=True)
class TokenCreated:
    """A new token: ``token`` is shown this once and cannot be recovered later."""

    token_id: int
    account: str
    label: str
    created: dt.datetime
    expires: dt.datetime | None
    token: str


@operation(
    "token create",
    access=Access.SELF,
    self_field="account",
    http=("POST", "/accounts/{account}/tokens"),
)
@dataclass(frozen=True, slots=True)
class TokenCreate:
    """Create a bearer token for the REST API that acts as ``account``; prints it once.

    Use it as ``Authorization: Bearer <token>``. It has the account's privileges at the time
    of each request and stops working when it expires, is revoked, or the account is deleted
    or may no longer log in.
    """

    account: str = field(metadata=param("The account the token acts as.", positional=True))
    label: str = field(default="", metadata=param("What the token is for.", parse=token_label))
    expires: int | None = field(
        default=None,
        metadata=param(
            "Lifetime: 30d, 12h, 90m or seconds; never (the default) for no expiry.",
            parse=lifetime,
            metavar="DURATION",
        ),
    )

    def __post_init__(self) -> None:
        token_label(self.label)
        if self.expires is not None and not 0 <= self.expires <= MAX_LIFETIME_S:
            raise StoreError(ErrorKind.PARAMS, "Lifetime must be between 0 and ten years")

    async def run(self, ctx: ManagementContext) -> TokenCreated:
        account = await find_account(ctx.backend, self.account)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = None if not self.expires else now + dt.timedelta(seconds=self.expires)
        stored = await ctx.backend.create_api_token(
            NewApiToken(
                account=account.id,
                token_hash=token_hash(token),
                label=self.label,
                created=now,
                expires=expires,
            )
        )
        return TokenCreated(
            token_id=stored.id,
            account=stored.account_name,
            label=stored.label,
            created=stored.created,
            expires=stored.expires,
            token=token,
        )


@operation("token list", access=Access.SELF, self_field="account", http=("GET", "/tokens"))
@dataclass(frozen=True, slots=True)
class TokenList:
    """List the REST API tokens (of one account), without the tokens themselves."""

    account: str | None = field(default=None, metadata=param("Only this account's tokens."))

    async def run(self, ctx: ManagementContext) -> list[TokenReport]:
        account_id = None
        if self.account is not None:
            account_id = (await find_account(ctx.backend, self.account)).id
        now = dt.datetime.now(dt.UTC)
        return [TokenReport.of(t, now) for t in await ctx.backend.list_api_tokens(account_id)]


@operation(
    "token revoke",
    access=Access.SELF,
    self_field="account",
    http=("DELETE", "/accounts/{account}/tokens/{id}"),
)
@dataclass(frozen=True, slots=True)
class TokenRevoke:
    """Revoke one of an account's tokens: requests with it get 401 from now on."""

    account: str = field(metadata=param("The account the token acts as.", positional=True))
    id: int = field(metadata=param("Token id, as token list shows it.", positional=True))

    async def run(self, ctx: ManagementContext) -> None:
        account = await find_account(ctx.backend, self.account)
        if not any(t.id == self.id for t in await ctx.backend.list_api_tokens(account.id)):
            raise StoreError(ErrorKind.NOT_FOUND, f"{account.name!r} has no token {self.id}")
        await ctx.backend.delete_api_token(self.id)
