"""Accounts: kinds, privileges and the account record every layer sees."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from msgstore.core.ids import AccountId


class AccountKind(enum.Enum):
    """``imap`` accounts have folders; ``pop`` accounts have an INBOX only (POP-only users)."""

    IMAP = "imap"
    POP = "pop"


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """One account as stored in the system database. The password hash is not part of it."""

    id: AccountId
    name: str
    kind: AccountKind
    manager: bool  # may manage other accounts, public folders and quotas
    login_disabled: bool
    receive_disabled: bool
    storage_limit_kib: int | None  # None = unlimited (RFC 9208 STORAGE is in KiB)
    message_limit: int | None  # None = unlimited (RFC 9208 MESSAGE)
    created: dt.datetime  # UTC


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """A partial update of an account; ``None`` leaves a field unchanged.

    ``storage_limit_kib``/``message_limit`` use ``-1`` for "set unlimited".
    """

    kind: AccountKind | None = None
    manager: bool | None = None
    login_disabled: bool | None = None
    receive_disabled: bool | None = None
    storage_limit_kib: int | None = None
    message_limit: int | None = None
