"""Identifier types and UID sets.

``Uid`` and ``SeqNum`` are different types so that mypy catches the classic IMAP server bug of
using one for the other; ``SelectedState.uid_for(seq)`` (IMAP layer) is the only way across.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NewType

from msgstore.core.errors import ErrorKind, StoreError

AccountId = NewType("AccountId", int)  # system-wide, never reused
MailboxId = NewType("MailboxId", int)  # unique within one account's tree, never reused there
Uid = NewType("Uid", int)  # 1..2**32-1, stable while UIDVALIDITY holds
SeqNum = NewType("SeqNum", int)  # 1..EXISTS, changes on every EXPUNGE
ModSeq = NewType("ModSeq", int)  # RFC 7162, 1..2**63-1
UidValidity = NewType("UidValidity", int)  # 1..2**32-1

MAX_UID = 2**32 - 1


@dataclass(frozen=True, slots=True)
class UidSet:
    """A set of UIDs as sorted, disjoint, non-adjacent closed ranges ``(lo, hi)``.

    The storage layer takes UID sets, never sequence sets: the IMAP layer resolves ``*`` and
    sequence numbers against its selected state before calling the store.
    """

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, ranges: Iterable[tuple[int, int]]) -> UidSet:
        """Normalise arbitrary (possibly reversed, overlapping) ranges."""
        spans = sorted((min(a, b), max(a, b)) for a, b in ranges)
        out: list[tuple[int, int]] = []
        for lo, hi in spans:
            if lo < 1 or hi > MAX_UID:
                raise StoreError(ErrorKind.PARAMS, f"UID out of range: {lo}:{hi}")
            if out and lo <= out[-1][1] + 1:
                if hi > out[-1][1]:
                    out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        return cls(tuple(out))

    @classmethod
    def from_uids(cls, uids: Iterable[int]) -> UidSet:
        return cls.of((u, u) for u in uids)

    @classmethod
    def all(cls) -> UidSet:
        return cls(((1, MAX_UID),))

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        lo_i, hi_i = 0, len(self.ranges)
        while lo_i < hi_i:
            mid = (lo_i + hi_i) // 2
            lo, hi = self.ranges[mid]
            if uid < lo:
                hi_i = mid
            elif uid > hi:
                lo_i = mid + 1
            else:
                return True
        return False

    def __iter__(self) -> Iterator[Uid]:
        for lo, hi in self.ranges:
            for u in range(lo, hi + 1):
                yield Uid(u)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self.ranges)
