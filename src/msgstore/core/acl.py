"""RFC 4314 access rights as a small algebra.

Rights are the letters ``l r s w i p k x t e a``; identifiers are a user name, ``anyone``,
``authenticated``, or any of those prefixed with ``-`` for a negative right. Everything that
needs effective rights (MYRIGHTS, LISTRIGHTS, the storage guard) calls :func:`effective_rights`.

The parts:

- :class:`Rights`, an immutable set with ``|`` (grant), ``-`` (negative rights), ``&``,
  ``<=`` (subset), ``in`` and ``str()`` (canonical letter order);
- :func:`validate_identifier` for the identifier argument of SETACL/DELETEACL/LISTRIGHTS;
- :func:`modify_rights` for SETACL's ``[+|-]rights`` argument;
- :func:`effective_rights`, the one place rights are computed;
- :func:`listrights` for the LISTRIGHTS response, and :meth:`Rights.for_response` for the
  rights strings of MYRIGHTS and ACL responses.

**Obsolete rights** (RFC 4314 §2.1.1). The RFC 2086 rights ``c`` and ``d`` are virtual: on
input ``c`` means "create" = ``k`` + ``x`` and ``d`` means "delete" = ``t`` + ``e`` (the RFC's
first definition); in MYRIGHTS, ACL and LISTRIGHTS responses the server adds ``c`` when any of
``k x`` is present and ``d`` when any of ``t e`` is, so RFC 2086 clients keep working. They
are never stored.
"""

from __future__ import annotations

import unicodedata
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
#: Longest identifier, in UTF-8 octets, not counting a leading "-".
MAX_IDENTIFIER_OCTETS: Final = 255


@dataclass(frozen=True, slots=True)
class Rights:
    """An immutable set of RFC 4314 rights; ``str()`` gives them in canonical order.

    Build one with :meth:`parse` from client or stored text; the constructor only accepts the
    eleven standard letters (anything else is a programming error, ``ValueError``).
    """

    letters: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.letters - frozenset(ALL_RIGHTS)
        if unknown:
            raise ValueError(f"not RFC 4314 rights: {''.join(sorted(unknown))!r}")

    @classmethod
    def parse(cls, text: str) -> Rights:
        """Parse a rights string; obsolete ``c``/``d`` expand as RFC 4314 §2.1.1 says.

        Any other character is refused: RFC 4314 §3.1 forbids silently ignoring an
        unrecognised right, and we define none of the digits §2.1 reserves for site rights.

        Raises:
            StoreError: PARAMS naming the first unknown right.
        """
        out: set[str] = set()
        for ch in text:
            if ch in ALL_RIGHTS:
                out.add(ch)
            elif ch in _OBSOLETE:
                out.update(_OBSOLETE[ch])
            else:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"Unknown access right {ch!r} (the rights are {' '.join(ALL_RIGHTS)})",
                )
        return cls(frozenset(out))

    @classmethod
    def all(cls) -> Rights:
        """Every right (what the owner holds on their own tree)."""
        return cls(frozenset(ALL_RIGHTS))

    def for_response(self) -> str:
        """The rights string for a MYRIGHTS or ACL response: canonical letters plus ``c``/``d``.

        RFC 4314 §2.1.1: ``c`` is added when any of ``k x`` is present, ``d`` when any of
        ``t e`` is. RFC 4314 clients ignore both.
        """
        text = str(self)
        for virtual, members in _OBSOLETE.items():
            if any(m in self.letters for m in members):
                text += virtual
        return text

    def __str__(self) -> str:
        return "".join(r for r in ALL_RIGHTS if r in self.letters)

    def __contains__(self, right: object) -> bool:
        return right in self.letters

    def __or__(self, other: Rights) -> Rights:
        return Rights(self.letters | other.letters)

    def __sub__(self, other: Rights) -> Rights:
        return Rights(self.letters - other.letters)

    def __and__(self, other: Rights) -> Rights:
        return Rights(self.letters & other.letters)

    def __le__(self, other: Rights) -> bool:
        return self.letters <= other.letters

    def __bool__(self) -> bool:
        return bool(self.letters)


def validate_identifier(ident: str) -> str:
    """Validate an ACL identifier and return its canonical form.

    An identifier is a user (or group) name, ``anyone`` or ``authenticated``, optionally
    prefixed with one ``-`` for a negative right (RFC 4314 §2). ``anyone`` and
    ``authenticated`` are recognised in any ASCII case and returned in lower case, so
    ``Anyone`` cannot become a user name that looks like the special identifier. Other names
    are returned as given: whether such a user exists is for the caller to decide.

    Raises:
        StoreError: PARAMS if the identifier is empty, has more than one leading ``-``,
            contains a space or control character or a lone surrogate, or is longer than
            ``MAX_IDENTIFIER_OCTETS``.
    """
    negative = ident.startswith("-")
    base = ident[1:] if negative else ident
    if not base:
        raise StoreError(ErrorKind.PARAMS, "ACL identifier is empty")
    if base.startswith("-"):
        raise StoreError(ErrorKind.PARAMS, "ACL identifier may start with only one '-'")
    try:
        octets = len(base.encode("utf-8"))
    except UnicodeEncodeError:
        raise StoreError(ErrorKind.PARAMS, "ACL identifier is not valid UTF-8") from None
    if octets > MAX_IDENTIFIER_OCTETS:
        raise StoreError(
            ErrorKind.PARAMS, f"ACL identifier is longer than {MAX_IDENTIFIER_OCTETS} octets"
        )
    for ch in base:
        if unicodedata.category(ch) == "Cc":
            raise StoreError(
                ErrorKind.PARAMS, f"ACL identifier contains the control character U+{ord(ch):04X}"
            )
        if ch.isspace():
            raise StoreError(ErrorKind.PARAMS, "ACL identifier contains a space")
    if base.isascii() and base.lower() in (ANYONE, AUTHENTICATED):
        base = base.lower()
    return "-" + base if negative else base


def modify_rights(current: Rights, change: str) -> Rights:
    """Apply SETACL's rights argument (RFC 4314 §3.1) to an identifier's current rights.

    ``+rights`` adds, ``-rights`` removes, bare ``rights`` replaces. ``c``/``d`` expand.

    Raises:
        StoreError: PARAMS for an unknown right.
    """
    if change.startswith("+"):
        return current | Rights.parse(change[1:])
    if change.startswith("-"):
        return current - Rights.parse(change[1:])
    return Rights.parse(change)


def effective_rights(
    acl: Mapping[str, Rights],
    user: str,
    *,
    is_owner: bool = False,
    is_admin: bool = False,
    groups: Iterable[str] = (),
    authenticated: bool = True,
) -> Rights:
    """The rights ``user`` holds on a mailbox with this ACL (RFC 4314 §2).

    Positive rights of ``anyone``, ``authenticated`` (only if ``authenticated``; an
    anonymous session gets ``anyone`` alone), the user and their groups are united, then
    every matching negative right (``-user``, ``-anyone``, ``-authenticated``, ``-group``) is
    removed: a negative right wins over any positive one. The owner always holds every
    right on their own tree and an admin always holds ``a`` (docs/architecture.md); neither
    can be taken away by a negative right.

    ``acl`` keys must be canonical identifiers (:func:`validate_identifier`).
    """
    if is_owner:
        return Rights.all()
    ids = [ANYONE, user, *groups]
    if authenticated:
        ids.append(AUTHENTICATED)
    granted = Rights()
    for ident in ids:
        granted = granted | acl.get(ident, Rights())
    for ident in ids:
        granted = granted - acl.get("-" + ident, Rights())
    if is_admin:
        granted = granted | Rights(frozenset("a"))
    return granted


@dataclass(frozen=True, slots=True)
class ListRights:
    """The data of a LISTRIGHTS response (RFC 4314 §3.7) after mailbox and identifier.

    ``required`` is the rights string the identifier always holds (may be ``""``);
    ``optional`` are the groups that can be granted, each all-or-nothing.
    """

    required: str
    optional: tuple[str, ...]

    def words(self) -> tuple[str, ...]:
        """The rights strings in response order: required first, then each optional group."""
        return (self.required, *self.optional)


def listrights(identifier: str, *, is_owner: bool = False, is_admin: bool = False) -> ListRights:
    """What LISTRIGHTS reports for ``identifier`` on one mailbox (RFC 4314 §3.7).

    Every right can be granted on its own (we tie none together), so a plain identifier —
    including ``anyone``, ``authenticated`` and negative identifiers — gets required ``""``
    and the optional groups ``l r s w i p k x t e a``, followed by the virtual ``c`` and
    ``d`` as groups of their own (RFC 4314 §2.1.1; no right is listed twice, as §3.7 asks).
    The mailbox owner holds every right whatever the ACL says, so for the owner all are
    required; an admin always holds ``a``.

    Args:
        identifier: a canonical identifier (:func:`validate_identifier`); used only to decide
            whether the negative form can hold owner or admin rights (it cannot).
        is_owner: the identifier names the owner of the mailbox's tree.
        is_admin: the identifier names an admin.
    """
    if identifier.startswith("-"):
        is_owner = is_admin = False
    if is_owner:
        return ListRights(Rights.all().for_response(), ())
    required = Rights(frozenset("a")) if is_admin else Rights()
    optional = tuple(r for r in ALL_RIGHTS if r not in required)
    # Neither "a" nor nothing contains a member of c (k x) or d (t e): both stay optional.
    return ListRights(required.for_response(), optional + tuple(_OBSOLETE))
