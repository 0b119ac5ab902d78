"""The forwarding database above any backend: destination syntax, lookup, expansion.

The backend only stores entries (``Backend.put_forward`` and friends); what they mean lives
here, once, for the two places that need it -- delivery (``delivery/pipeline.py`` expands a
recipient at RCPT time) and management (``management/forwarding.py`` refuses a loop when an
entry is added). Like ``storage/access.py`` it uses ``storage.base`` only.

Destinations, as written in an entry:

- ``public:NAME`` -- the public folder "Public/NAME" (stored once, read by everyone with
  access);
- an account name, or a forwarding address, bare (``bob``) or in a local domain
  (``bob@example.org``);
- any other address ``user@domain`` -- an external address, sent through the relay queue.

Lookup of an address: the entry of the address exactly as given (case-insensitively); then,
for ``local@domain`` in a local domain, the entry of the bare local part. So an entry stored
under a bare name answers for every local domain.

Expansion (:func:`expand`) walks the entries depth first from one entry: a destination that
has an entry of its own is expanded in turn; every other destination is a *leaf* (an
account, a public folder, an external address) reported with the *path* of forwarding
addresses that led to it, outermost first (the Delivered-To hops). An entry reached twice is
expanded once and a leaf reached twice is reported once (duplicate suppression); an entry
reached again from below itself is a *loop*, reported and not followed. At most
:data:`MAX_FORWARDS` entries and :data:`MAX_LEAVES` leaves are visited.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from msgstore.core.address import parse_address
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import mailbox_name
from msgstore.storage.base import Backend, ForwardEntry

PUBLIC_PREFIX: Final = "public:"
MAX_FORWARDS: Final = 100
MAX_LEAVES: Final = 1000
#: Destinations of one entry.
MAX_DESTINATIONS: Final = 1000

IsLocalDomain = Callable[[str], bool]


class Kind(enum.Enum):
    LOCAL = "local"  # an account (or, before expansion, possibly another entry)
    PUBLIC = "public"  # a public folder: ``value`` is the folder name below "Public/"
    EXTERNAL = "external"  # an address for the relay queue


@dataclass(frozen=True, slots=True)
class Destination:
    kind: Kind
    value: str

    @property
    def key(self) -> tuple[Kind, str]:
        return (self.kind, self.value.casefold())

    def __str__(self) -> str:
        return PUBLIC_PREFIX + self.value if self.kind is Kind.PUBLIC else self.value


def check_address(text: str) -> str:
    """A forwarding address as it will be stored: a bare name or ``local@domain`` (the domain
    in lower case). Raises PARAMS."""
    text = text.strip()
    if not text:
        raise StoreError(ErrorKind.PARAMS, "The address is empty")
    if text.casefold().startswith(PUBLIC_PREFIX):
        raise StoreError(ErrorKind.PARAMS, "A public folder cannot be a forwarding address")
    if "@" in text:
        return str(parse_address(text, smtputf8=not text.isascii()))
    bare = parse_address(f"{text}@localhost", smtputf8=not text.isascii()).local
    if bare != text or any(c in text for c in "/\\") or text.startswith(("#", "-")):
        raise StoreError(ErrorKind.PARAMS, f"Invalid address {text!r}")
    return text


def parse_destination(text: str, is_local_domain: IsLocalDomain) -> Destination:
    """Classify one destination as written in an entry. Raises PARAMS."""
    text = text.strip()
    if text.casefold().startswith(PUBLIC_PREFIX):
        name = text[len(PUBLIC_PREFIX) :]
        if not name:
            raise StoreError(ErrorKind.PARAMS, "public: needs a folder name (public:NAME)")
        return Destination(Kind.PUBLIC, str(mailbox_name(name)))
    address = check_address(text)
    if "@" in address:
        domain = address.rpartition("@")[2]
        if not is_local_domain(domain):
            return Destination(Kind.EXTERNAL, address)
    return Destination(Kind.LOCAL, address)


def parse_destinations(text: str) -> tuple[str, ...]:
    """``"bob, public:Lists ext@example.net"`` -> the destinations, commas or spaces
    between them; PARAMS if there is none or too many."""
    items = tuple(part for part in text.replace(",", " ").split() if part)
    if not items:
        raise StoreError(ErrorKind.PARAMS, "No destination given")
    if len(items) > MAX_DESTINATIONS:
        raise StoreError(ErrorKind.PARAMS, f"More than {MAX_DESTINATIONS} destinations")
    return items


def lookup_keys(address: str, is_local_domain: IsLocalDomain) -> list[str]:
    """The keys under which ``address`` may have an entry, in the order they are tried."""
    keys = [address]
    local, at, domain = address.rpartition("@")
    if at and local and is_local_domain(domain):
        with contextlib.suppress(StoreError):
            keys.append(parse_address(address, smtputf8=not address.isascii()).local)
    return keys


async def find_forward(
    backend: Backend,
    address: str,
    is_local_domain: IsLocalDomain,
    *,
    override: Mapping[str, ForwardEntry] | None = None,
) -> ForwardEntry | None:
    """The entry ``address`` resolves to, or None. ``override`` (casefolded key -> entry)
    stands in for stored entries (the one being added)."""
    for key in lookup_keys(address, is_local_domain):
        if override is not None and key.casefold() in override:
            return override[key.casefold()]
        try:
            return await backend.get_forward(key)
        except StoreError as exc:
            if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                raise
    return None


@dataclass(frozen=True, slots=True)
class Leaf:
    destination: Destination
    path: tuple[str, ...]  # forwarding addresses from the outermost to the one naming it


@dataclass(slots=True)
class Expansion:
    leaves: list[Leaf] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)  # every entry expanded, in order
    loops: list[tuple[str, ...]] = field(default_factory=list)  # a path, then the repeat
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (destination, reason)
    truncated: bool = False


async def expand(
    backend: Backend,
    start: ForwardEntry,
    is_local_domain: IsLocalDomain,
    *,
    override: Mapping[str, ForwardEntry] | None = None,
) -> Expansion:
    """Walk the entries from ``start`` (see the module docstring)."""
    out = Expansion()
    seen_forwards: set[str] = set()
    seen_leaves: set[tuple[Kind, str]] = set()

    def leaf(destination: Destination, path: tuple[str, ...]) -> None:
        if destination.key in seen_leaves:
            return
        if len(seen_leaves) >= MAX_LEAVES:
            out.truncated = True
            return
        seen_leaves.add(destination.key)
        out.leaves.append(Leaf(destination, path))

    async def walk(entry: ForwardEntry, path: tuple[str, ...]) -> None:
        seen_forwards.add(entry.address.casefold())
        out.forwards.append(entry.address)
        if entry.keep_copy:
            leaf(Destination(Kind.LOCAL, entry.address), path)
        for text in entry.destinations:
            try:
                destination = parse_destination(text, is_local_domain)
            except StoreError as exc:
                out.invalid.append((text, exc.public))
                continue
            if destination.kind is not Kind.LOCAL:
                leaf(destination, path)
                continue
            sub = await find_forward(
                backend, destination.value, is_local_domain, override=override
            )
            if sub is None:
                leaf(destination, path)
                continue
            key = sub.address.casefold()
            if key in {p.casefold() for p in path}:
                out.loops.append((*path, sub.address))
                continue
            if key in seen_forwards:
                continue
            if len(seen_forwards) >= MAX_FORWARDS:
                out.truncated = True
                continue
            await walk(sub, (*path, sub.address))

    await walk(start, (start.address,))
    return out
