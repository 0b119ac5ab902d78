"""Forwarding operations: ``forward add | delete | list | show`` (issue #4, docs/delivery.md),
and ``forward account show``: the entries of one account's own addresses, which the account
itself may read (``Access.SELF``; the usage page shows it, issue #7).

An address -- an account's or a fictitious one -- maps to destinations: accounts,
``public:NAME`` (the public folder "Public/NAME"), other forwarding addresses, external
addresses (sent through the relay queue); ``--keep-copy`` also delivers to the account of the
address itself. What an entry means (syntax, lookup, expansion) is ``storage/forwarding.py``,
shared with the delivery pipeline; here an entry is checked before it is stored:

- every destination is valid, and a local one is an account or a forwarding address (an
  unknown local name would bounce every message);
- ``public:NAME`` names an existing public folder;
- ``--keep-copy`` needs an account of that name;
- the new entry does not close a loop (``a -> b -> a``): PARAMS, with the loop spelt out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import mailbox_name
from msgstore.management.accounts import find_account
from msgstore.management.operation import Access, ManagementContext, operation, param
from msgstore.storage import forwarding
from msgstore.storage.base import Backend, ForwardEntry


@dataclass(frozen=True, slots=True)
class Destinations:
    """Destinations as given on a command line or in a form: separated by commas or spaces."""

    items: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Destinations:
        return cls(forwarding.parse_destinations(text))

    def __str__(self) -> str:
        return ", ".join(self.items)


@dataclass(frozen=True, slots=True)
class ForwardReport:
    """One forwarding entry."""

    address: str
    destinations: tuple[str, ...]
    keep_copy: bool
    created: dt.datetime

    @classmethod
    def of(cls, entry: ForwardEntry) -> ForwardReport:
        return cls(entry.address, entry.destinations, entry.keep_copy, entry.created)


def _local_domains(ctx: ManagementContext) -> forwarding.IsLocalDomain:
    domains = frozenset(d.lower() for d in ctx.config.delivery.domains)
    return lambda domain: not domains or domain.lower() in domains


async def _is_account(backend: Backend, name: str, is_local: forwarding.IsLocalDomain) -> bool:
    for key in forwarding.lookup_keys(name, is_local):
        try:
            await backend.get_account(key)
        except StoreError as exc:
            if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                raise
            continue
        return True
    return False


async def check_entry(ctx: ManagementContext, entry: ForwardEntry) -> None:
    """Refuse an entry that cannot work or would close a loop (see the module docstring)."""
    backend = ctx.backend
    is_local = _local_domains(ctx)
    own = entry.address.casefold()
    for text in entry.destinations:
        destination = forwarding.parse_destination(text, is_local)
        if destination.kind is forwarding.Kind.PUBLIC:
            public = await backend.public_account()
            try:
                await backend.get_mailbox(public.id, mailbox_name(destination.value))
            except StoreError as exc:
                if exc.kind is ErrorKind.NOT_FOUND:
                    raise StoreError(
                        ErrorKind.PARAMS, f"No public folder Public/{destination.value}"
                    ) from exc
                raise
        elif destination.kind is forwarding.Kind.LOCAL:
            if destination.value.casefold() == own:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"{entry.address} cannot forward to itself (use --keep-copy)",
                )
            known = await forwarding.find_forward(
                backend, destination.value, is_local
            ) is not None or await _is_account(backend, destination.value, is_local)
            if not known:
                raise StoreError(
                    ErrorKind.PARAMS,
                    f"Unknown local destination {destination.value!r}: not an account "
                    "nor a forwarding address",
                )
    if entry.keep_copy and not await _is_account(backend, entry.address, is_local):
        raise StoreError(ErrorKind.PARAMS, f"--keep-copy needs an account named {entry.address!r}")
    expansion = await forwarding.expand(backend, entry, is_local, override={own: entry})
    if expansion.loops:
        raise StoreError(ErrorKind.PARAMS, "Forwarding loop: " + " -> ".join(expansion.loops[0]))


@operation("forward add", http=("POST", "/forwards"))
@dataclass(frozen=True, slots=True)
class ForwardAdd:
    """Forward mail for an address (an account's or a fictitious one) to destinations.

    Destinations, separated by commas or spaces: account names or local addresses,
    ``public:NAME`` for the public folder Public/NAME (stored once for every reader), other
    forwarding addresses, external addresses (sent through the relay queue). A loop is
    refused. ``--keep-copy`` also delivers to the account of that name; ``--replace``
    overwrites an existing entry.
    """

    address: str = field(metadata=param("The address mail is sent to.", positional=True))
    destinations: Destinations = field(
        metadata=param(
            "Where it goes, e.g. 'bob, public:Lists, ann@example.net'.",
            positional=True,
            parse=Destinations.parse,
        )
    )
    keep_copy: bool = field(
        default=False, metadata=param("Also deliver to the account named like the address.")
    )
    replace: bool = field(default=False, metadata=param("Replace an existing entry."))

    async def run(self, ctx: ManagementContext) -> ForwardReport:
        address = forwarding.check_address(self.address)
        is_local = _local_domains(ctx)
        # Validate each destination's syntax and keep it in its canonical form.
        items = tuple(
            str(forwarding.parse_destination(d, is_local)) for d in self.destinations.items
        )
        proposed = ForwardEntry(address, items, self.keep_copy, dt.datetime.now(dt.UTC))
        if not self.replace:
            try:
                await ctx.backend.get_forward(address)
            except StoreError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
            else:
                raise StoreError(
                    ErrorKind.EXISTS,
                    f"Forwarding entry already exists: {address} (use --replace)",
                )
        await check_entry(ctx, proposed)
        entry = await ctx.backend.put_forward(
            address, items, keep_copy=self.keep_copy, replace=self.replace
        )
        return ForwardReport.of(entry)


@operation("forward delete", confirm=False, http=("DELETE", "/forwards/{address}"))
@dataclass(frozen=True, slots=True)
class ForwardDelete:
    """Delete the forwarding entry of an address (its mail goes to its account, if any)."""

    address: str = field(metadata=param("The forwarding address.", positional=True))

    async def run(self, ctx: ManagementContext) -> None:
        await ctx.backend.delete_forward(self.address.strip())


@operation("forward list", http=("GET", "/forwards"))
@dataclass(frozen=True, slots=True)
class ForwardList:
    """List every forwarding entry."""

    async def run(self, ctx: ManagementContext) -> list[ForwardReport]:
        return [ForwardReport.of(e) for e in await ctx.backend.list_forwards()]


@operation("forward show", http=("GET", "/forwards/{address}"))
@dataclass(frozen=True, slots=True)
class ForwardShow:
    """Show the forwarding entry of an address."""

    address: str = field(metadata=param("The forwarding address.", positional=True))

    async def run(self, ctx: ManagementContext) -> ForwardReport:
        return ForwardReport.of(await ctx.backend.get_forward(self.address.strip()))


def _own_address(address: str, name: str, is_local: forwarding.IsLocalDomain) -> str | None:
    """The local part of ``address`` if it is one of the addresses of the account ``name``
    (``name``, ``name+tag``, bare or in a local domain); None otherwise. ``name+tag`` is
    returned as is: the caller checks it is no other account's name."""
    local, at, domain = address.rpartition("@")
    if not at:
        local = address
    elif not is_local(domain):
        return None
    folded, own = local.casefold(), name.casefold()
    if folded == own or folded.startswith(own + "+"):
        return local
    return None


@operation(
    "forward account show",
    access=Access.SELF,
    http=("GET", "/accounts/{user}/forwards"),
)
@dataclass(frozen=True, slots=True)
class ForwardAccountShow:
    """Show the forwarding entries of an account's own addresses (read-only).

    Its addresses are its name, NAME@DOMAIN in the local domains ([delivery] domains; every
    domain when that is empty), and the plus-forms NAME+TAG of both (an entry for a
    plus-form catches that address before plus-addressing would). An account may see its
    own; an empty list: its mail is not forwarded.
    """

    user: str = field(metadata=param("Account name.", positional=True))

    async def run(self, ctx: ManagementContext) -> list[ForwardReport]:
        account = await find_account(ctx.backend, self.user)
        is_local = _local_domains(ctx)
        found: list[ForwardReport] = []
        for entry in await ctx.backend.list_forwards():
            local = _own_address(entry.address, account.name, is_local)
            if local is None:
                continue
            # ``bob+x`` is another account's address if an account has that very name.
            if local.casefold() != account.name.casefold() and await _is_account(
                ctx.backend, local, is_local
            ):
                continue
            found.append(ForwardReport.of(entry))
        return found
