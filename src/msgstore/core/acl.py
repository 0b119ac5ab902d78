"""RFC 4314 access rights as a small algebra.

Rights are the letters ``l r s w i p k x t e a``; identifiers are a user name, ``anyone``,
``authenticated``, or any of those prefixed with ``-`` for a negative right. Everything that
needs effective rights (MYRIGHTS, LISTRIGHTS, the storage guard) calls :func:`effective_rights`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

#: All RFC 4314 rights, in the order RFC 4314 lists them.
ALL_RIGHTS: Final = "lrswipkxtea"
ANYONE: Final = "anyone"
AUTHENTICATED: Final = "authenticated"
#: Obsolete RFC 2086 rights and what they expand to (RFC 4314 §2.1.1).
_OBSOLETE: Final[dict[str, str]] = {"c": "kx", "d": "te"}


@dataclass(frozen=True, slots=True)
class Rights:
    """An immutable set of RFC 4314 rights; ``str()`` gives them in canonical order."""

    letters: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Rights:
        """Parse a rights string; obsolete ``c``/``d`` expand as RFC 4314 §2.1.1 says."""
        out: set[str] = set()
        for ch in text:
            if ch in ALL_RIGHTS:
                out.add(ch)
            elif ch in _OBSOLETE:
                out.update(_OBSOLETE[ch])
            elif ch.isdigit():
                continue  # RFC 4314 §2.1: digits are reserved for implementation rights
            else:
                raise StoreError(ErrorKind.PARAMS, f"Unknown right {ch!r}")
        return cls(frozenset(out))

    @classmethod
    def all(cls) -> Rights:
        return cls(frozenset(ALL_RIGHTS))

    def __str__(self) -> str:
        return "".join(r for r in ALL_RIGHTS if r in self.letters)

    def __contains__(self, right: object) -> bool:
        return right in self.letters

    def __or__(self, other: Rights) -> Rights:
        return Rights(self.letters | other.letters)

    def __sub__(self, other: Rights) -> Rights:
        return Rights(self.letters - other.letters)

    def __bool__(self) -> bool:
        return bool(self.letters)


def effective_rights(
    acl: Mapping[str, Rights],
    user: str,
    *,
    is_owner: bool = False,
    is_admin: bool = False,
    groups: Iterable[str] = (),
) -> Rights:
    """The rights ``user`` holds on a mailbox with this ACL (RFC 4314 §2).

    Positive rights of ``anyone``, ``authenticated`` and the user (and groups) are united, then
    every matching negative right (``-user``, ``-anyone``...) is removed. The owner always holds
    every right on their own tree and an admin always holds ``a`` (docs/architecture.md).
    """
    if is_owner:
        return Rights.all()
    ids = [ANYONE, AUTHENTICATED, user, *groups]
    granted = Rights()
    for ident in ids:
        granted = granted | acl.get(ident, Rights())
    for ident in ids:
        granted = granted - acl.get("-" + ident, Rights())
    if is_admin:
        granted = granted | Rights(frozenset("a"))
    return granted
