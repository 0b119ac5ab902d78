"""The one error family of msgstore.

Every layer raises :class:`StoreError` with an :class:`ErrorKind`; each face maps the kind to its
own reply in one table (IMAP response codes, SMTP enhanced status codes, POP3 RESP-CODES, CLI exit
codes from sysexits, HTTP status). The ``public`` text is safe to show a client; ``detail`` is for
the log only.

    StoreError
      kind: ErrorKind       what happened, protocol-neutral
      public: str           one line for the client
      detail: str | None    for the log (paths, errno, SQL) -- never sent

Modelled on Dovecot's ``enum mail_error`` (src/lib-storage/mail-error.h).
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, independent of the protocol that reports it."""

    TEMP = "temp"  # temporary failure (lock timeout, I/O error); retrying later may work
    UNAVAILABLE = "unavailable"  # the storage backend cannot be reached
    PARAMS = "params"  # the request is malformed (bad name, bad size, bad flag)
    NOT_FOUND = "not-found"  # account/mailbox/message does not exist *or is not visible*
    EXISTS = "exists"  # the account or mailbox already exists
    NO_PERM = "no-perm"  # the actor lacks the right for this operation
    OVER_QUOTA = "over-quota"  # the change would exceed a quota limit
    TOO_BIG = "too-big"  # the message exceeds the configured maximum size
    NOT_POSSIBLE = (
        "not-possible"  # valid request the store refuses (delete INBOX, rename under itself)
    )
    HAS_CHILDREN = "has-children"  # a mailbox with children cannot be deleted
    EXPUNGED = "expunged"  # the message was expunged meanwhile
    IN_USE = "in-use"  # the resource is locked by another session
    LIMIT = "limit"  # a configured limit other than size/quota was reached
    DISABLED = "disabled"  # the account may not log in / may not receive mail
    AUTH_FAILED = "auth-failed"  # wrong user name or password (never says which)
    CORRUPTED = "corrupted"  # stored data is damaged; reconstruct may repair it
    INTERNAL = "internal"  # a bug or unexpected condition; details only in the log


class StoreError(Exception):
    """An error any layer may raise; each protocol maps ``kind`` to its own reply."""

    def __init__(self, kind: ErrorKind, public: str, *, detail: str | None = None) -> None:
        super().__init__(public)
        self.kind = kind
        self.public = public
        self.detail = detail

    def __repr__(self) -> str:
        return f"StoreError({self.kind.name}, {self.public!r})"
