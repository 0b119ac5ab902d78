"""The one table from the error family to POP3 replies (RFC 2449 §8 RESP-CODES, RFC 3206).

    [IN-USE]       another session holds the maildrop lock
    [LOGIN-DELAY]  the account logged in more recently than LOGIN-DELAY allows
    [SYS/TEMP]     a temporary problem of the server; retrying later may work
    [SYS/PERM]     a permanent problem the user must have fixed (e.g. logins disabled)
    [AUTH]         the credentials were refused

Handlers raise :class:`~msgstore.core.errors.StoreError`; the session turns it into
``-ERR [CODE] public text`` with :func:`error_line`. Protocol-level refusals (syntax, no such
message) are :class:`Refusal`.
"""

from __future__ import annotations

from typing import Final, assert_never

from msgstore.core.errors import ErrorKind, StoreError

IN_USE: Final = "IN-USE"
LOGIN_DELAY: Final = "LOGIN-DELAY"
SYS_TEMP: Final = "SYS/TEMP"
SYS_PERM: Final = "SYS/PERM"
AUTH: Final = "AUTH"


class Refusal(Exception):  # noqa: N818 -- a reply, not a failure of ours
    """A ``-ERR`` reply a handler wants sent, with an optional response code."""

    def __init__(self, text: str, code: str | None = None, *, close: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.close = close


def resp_code(kind: ErrorKind) -> str | None:
    """The RESP-CODE of an error kind (None: a plain ``-ERR``)."""
    match kind:
        case ErrorKind.IN_USE:
            return IN_USE
        case ErrorKind.AUTH_FAILED | ErrorKind.NO_PERM:
            return AUTH
        case ErrorKind.DISABLED | ErrorKind.CORRUPTED:
            return SYS_PERM
        case ErrorKind.TEMP | ErrorKind.UNAVAILABLE | ErrorKind.INTERNAL | ErrorKind.LIMIT:
            return SYS_TEMP
        case (
            ErrorKind.PARAMS
            | ErrorKind.NOT_FOUND
            | ErrorKind.EXISTS
            | ErrorKind.OVER_QUOTA
            | ErrorKind.TOO_BIG
            | ErrorKind.NOT_POSSIBLE
            | ErrorKind.HAS_CHILDREN
            | ErrorKind.EXPUNGED
        ):
            return None
        case _:
            assert_never(kind)


def err(text: str, code: str | None = None) -> bytes:
    """``-ERR [CODE] text`` with CRLF."""
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}\r\n".encode("utf-8", "replace")


def error_line(exc: StoreError) -> bytes:
    """The reply line for a store error (its public text only; details go to the log)."""
    return err(exc.public, resp_code(exc.kind))
