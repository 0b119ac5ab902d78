"""Quota resources and usage (RFC 9208). STORAGE is counted in KiB, MESSAGE in messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Resource(enum.Enum):
    STORAGE = "STORAGE"  # RFC 9208 §5.1: units of 1024 octets
    MESSAGE = "MESSAGE"  # RFC 9208 §5.2: number of messages


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    """Limits and usage of one quota root (an account's tree, or the public tree)."""

    root: str  # quota root name: the account name, or "Public"
    storage_limit_kib: int | None  # None = no limit
    message_limit: int | None
    storage_used_octets: int
    messages_used: int

    @property
    def storage_used_kib(self) -> int:
        """Usage in KiB, rounded up as Dovecot and Cyrus report it."""
        return (self.storage_used_octets + 1023) // 1024

    def would_exceed(self, add_octets: int, add_messages: int) -> Resource | None:
        """The first resource that adding this much would push over its limit, if any."""
        if (
            self.storage_limit_kib is not None
            and self.storage_used_octets + add_octets > self.storage_limit_kib * 1024
        ):
            return Resource.STORAGE
        if (
            self.message_limit is not None
            and self.messages_used + add_messages > self.message_limit
        ):
            return Resource.MESSAGE
        return None
