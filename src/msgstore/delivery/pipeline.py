"""The local delivery pipeline: one path into the store for every door.

LMTP, SMTP, ``msgstore deliver`` and migration imports all deliver through
:class:`DeliveryPipeline`; each door only maps the outcomes to its own wire (an LMTP reply per
recipient, one SMTP reply, a sysexits code). Modelled on Dovecot's ``src/lib-lda``, shared by
its LMTP server and its LDA binary, so the quota check exists once.

    pipeline = DeliveryPipeline.from_config(backend, config)
    target = await pipeline.check("bob", mailbox="Lists")     # at RCPT time
    outcomes = await pipeline.deliver([target, ...], chunks)  # at end of DATA

Steps, per recipient and then once per message:

1. **resolve** the recipient to an account: first as an account name exactly as given; then,
   if it is an address ``local@domain`` in a local domain (``[delivery] domains``; every
   domain when the list is empty), by its local part; then, if the local part is
   ``user+folder`` (plus-addressing), as ``user`` with ``folder`` as the requested mailbox
   (step 3 falls back to INBOX when it does not exist). Unknown -> ``Rejected(NOT_FOUND)``.
   With ``storage.base.SupportsRecipientLookup`` (the local backend) the forwarding lookup
   below and these names are one backend call.
2. **check** the account: receiving not disabled (``Rejected(DISABLED)``); quota not already
   exceeded by a message of the announced size, or of one octet when the size is unknown
   (``Deferred(OVER_QUOTA)``; see *over quota* below). An account without limits needs no
   usage lookup: its check reads the system database only, and never opens its index.
3. **choose the mailbox**: INBOX, or the requested mailbox if it exists. A requested mailbox
   that does not exist (or is not a valid name) falls back to INBOX, as Dovecot's
   ``lda_mailbox_autocreate = no`` does: mail is never refused for a missing folder. Pop
   accounts always get INBOX. INBOX itself is looked up when the message is appended.
4. **stage once**: the optional per-delivery header prefix (trace headers: the LMTP door adds
   Return-Path/Received), then the message as it streams in, chunk by chunk, normalised to
   CRLF and capped at ``[store] max_message_size`` (``Rejected(TOO_BIG)`` for everyone; the
   rest of the source is then not read -- a door that must consume it, like LMTP DATA, does).
   An empty message is ``Rejected(PARAMS)``.
5. **append** the staged message to each accepted recipient's mailbox: in one
   ``deliver_many`` call when the backend has it (``storage.base.SupportsDeliverMany``: the
   local backend; INBOX is looked up inside it), else ``get_mailbox`` + ``append`` per
   mailbox, up to :data:`APPEND_CONCURRENCY` at a time (different accounts' index commits
   overlap). The local backend stores one file hard-linked into every tree. When nothing is
   forwarded outside, step 4's last write, fsync and parse and this append are one call
   (``storage.base.SupportsFinishAndDeliver``: for one recipient, one thread hop less). The
   quota is checked again with the real size, atomically inside the append, so racing deliveries
   cannot overshoot it.

Over quota is permanent in the configured pipeline (:meth:`DeliveryPipeline.from_config`:
``Rejected``, LMTP 552 5.2.2, like Cyrus' ``lmtp_over_quota_perm_failure``) unless
``[delivery] over_quota_temporary = true`` makes it ``Deferred`` (452 4.2.2, RFC 3463): the
sender's MTA retries and the user may make room in the meantime. The constructor's default
(``over_quota_permanent=False``) is the temporary form.

A failure whose cause is a full disk (ENOSPC, EDQUOT) is a ``Deferred`` with
``storage_full=True``, so that LMTP can say 452 4.3.1 rather than 451 4.3.0.

Delivering to the same account and mailbox twice in one message stores it once; both
recipients get the same outcome.

The POST right (RFC 4314 ``p``) is not checked: an account always holds every right on its
own tree, and delivery only ever targets the recipient's own tree (plus-addressing included).

**Forwarding** (docs/delivery.md). Step 1 first asks the forwarding database
(``storage/forwarding.py``): a recipient with an entry is expanded at RCPT time into its
leaves -- accounts (INBOX), public folders (``public:NAME``) and external addresses -- with
loops skipped and duplicates suppressed; each local leaf is checked as above, and the
recipient is accepted when at least one leaf can take the message (a leaf that cannot is
logged and left out). At the end of the data, a recipient whose expansion passed through an
address that the message already names in a ``Delivered-To`` field is refused as a mail
loop (``Rejected(loop=True)``, 554 5.4.6). Local leaves of every recipient are stored once
(one file, hard links; the same mailbox twice gets one copy); external leaves go to the relay
queue (``Backend.enqueue``), one queue entry per distinct forwarding path, with one
``Delivered-To`` field per forwarding hop (the newest on top) in front of the door's trace
fields minus the local-only ``Return-Path``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.address import parse_address
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import Uid
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.core.quota import Resource
from msgstore.delivery import relay
from msgstore.storage import forwarding
from msgstore.storage.base import (
    AppendResult,
    Backend,
    ForwardEntry,
    MailboxInfo,
    StagedMessage,
    SupportsDeliverMany,
    SupportsFinishAndDeliver,
    SupportsRecipientLookup,
)

if TYPE_CHECKING:
    from msgstore.config import Config

log = logging.getLogger(__name__)

#: Appends of one message to different mailboxes running at the same time.
APPEND_CONCURRENCY: Final = 128
#: Octets of the message's header section read for Delivered-To (loop detection).
MAX_HEADER_OCTETS: Final = 256 * 1024

#: Kinds that will not change by retrying; everything else is deferred (temporary).
_PERMANENT: Final = frozenset(
    {
        ErrorKind.NOT_FOUND,
        ErrorKind.DISABLED,
        ErrorKind.PARAMS,
        ErrorKind.TOO_BIG,
        ErrorKind.NO_PERM,
        ErrorKind.NOT_POSSIBLE,
    }
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The message is durably stored for this recipient."""

    recipient: str
    account: str
    mailbox: MailboxName
    uid: Uid


@dataclass(frozen=True, slots=True)
class Rejected:
    """Permanent failure for this recipient: retrying the same message will not help."""

    recipient: str
    kind: ErrorKind
    text: str
    #: A mail loop: the message already passed through this address (554 5.4.6).
    loop: bool = False


@dataclass(frozen=True, slots=True)
class Deferred:
    """Temporary failure for this recipient: the sender should retry later."""

    recipient: str
    kind: ErrorKind
    text: str
    #: The cause was a full disk or file system quota (ENOSPC, EDQUOT).
    storage_full: bool = False


Failure = Rejected | Deferred
Outcome = Accepted | Rejected | Deferred


@dataclass(frozen=True, slots=True)
class Local:
    """One mailbox the message is stored in. ``mailbox`` None is the account's INBOX, looked
    up when the message is appended: a recipient without quota limits is then checked at RCPT
    with the system database alone, without opening its index."""

    account: AccountInfo
    mailbox: MailboxInfo | None

    @property
    def key(self) -> tuple[int, int]:
        return (int(self.account.id), 0 if self.mailbox is None else int(self.mailbox.id))

    @property
    def mailbox_name(self) -> MailboxName:
        return INBOX if self.mailbox is None else self.mailbox.name


@dataclass(frozen=True, slots=True)
class Relay:
    """One external address the message is forwarded to, and the forwarding addresses that
    led there (outermost first: the Delivered-To hops)."""

    address: str
    hops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A recipient that passed the checks: where the message will go.

    A plain account address has one local destination; a forwarding address has what its
    expansion gave (``locals`` may then be empty, when every leaf is external).
    """

    recipient: str
    locals: tuple[Local, ...]
    relays: tuple[Relay, ...] = ()
    #: Forwarding addresses this recipient expanded through (the loop check at DATA).
    hops: tuple[str, ...] = ()

    @property
    def account(self) -> AccountInfo:
        """The first local destination's account (a plain recipient's only one)."""
        return self.locals[0].account

    @property
    def mailbox(self) -> MailboxInfo | None:
        """The first local destination's mailbox (None: INBOX, see :class:`Local`)."""
        return self.locals[0].mailbox

    @property
    def mailbox_name(self) -> MailboxName:
        return self.locals[0].mailbox_name


class DeliveryPipeline:
    """Resolve, check, stage once, append to each recipient (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_message_octets: int,
        over_quota_permanent: bool = False,
        domains: Sequence[str] = (),
    ) -> None:
        self._backend = backend
        #: One call appends to every mailbox (storage.base.SupportsDeliverMany), or None.
        self._many = backend if isinstance(backend, SupportsDeliverMany) else None
        #: The RCPT lookups in one call (SupportsRecipientLookup), or None.
        self._lookup = backend if isinstance(backend, SupportsRecipientLookup) else None
        #: Finish and append in one call (SupportsFinishAndDeliver), or None.
        self._fused = backend if isinstance(backend, SupportsFinishAndDeliver) else None
        self._max_message_octets = max_message_octets
        self._over_quota_permanent = over_quota_permanent
        self._domains = frozenset(d.lower() for d in domains)
        #: Domain added to a bare forwarding address in Delivered-To ("" : left bare).
        self._qualify = domains[0].lower() if domains else ""

    @classmethod
    def from_config(cls, backend: Backend, config: Config) -> DeliveryPipeline:
        return cls(
            backend,
            max_message_octets=config.store.max_message_size,
            over_quota_permanent=not config.delivery.over_quota_temporary,
            domains=config.delivery.domains,
        )

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def max_message_octets(self) -> int:
        return self._max_message_octets

    def is_local_domain(self, domain: str) -> bool:
        """Is ``domain`` one of ours? Every domain is when ``[delivery] domains`` is empty."""
        return not self._domains or domain.lower() in self._domains

    # --- per recipient ------------------------------------------------------------------------

    async def check(
        self, recipient: str, *, mailbox: str | None = None, size_octets: int | None = None
    ) -> Target | Failure:
        """Resolve and check one recipient before the message arrives (LMTP: at RCPT).

        ``size_octets`` is the announced size (RFC 1870 SIZE), if any.
        """
        size = max(size_octets or 1, 1)
        try:
            if self._lookup is not None:
                entry, found = await self._find(self._lookup, recipient)
            else:
                entry = await forwarding.find_forward(
                    self._backend, recipient, self.is_local_domain
                )
                found = None if entry is not None else await self._resolve(recipient)
            if entry is not None:
                return await self._check_forward(recipient, entry, size)
            assert found is not None
            account, folder = found
            local = await self._check_local(recipient, account, mailbox or folder, size)
        except StoreError as exc:
            return self._failure(recipient, exc)
        if not isinstance(local, Local):
            return local
        return Target(recipient, (local,))

    async def is_forward(self, recipient: str) -> bool:
        """Does the forwarding database know ``recipient``? (SMTP relaying is allowed for
        such a recipient outside the local domains.)"""
        try:
            found = await forwarding.find_forward(self._backend, recipient, self.is_local_domain)
        except StoreError:
            return False
        return found is not None

    async def _check_local(
        self, recipient: str, account: AccountInfo, mailbox: str | None, size: int
    ) -> Local | Failure:
        if account.receive_disabled:
            return Rejected(recipient, ErrorKind.DISABLED, "Account does not receive mail")
        full = await self._quota_failure(recipient, account, size)
        if full is not None:
            return full
        return Local(account, await self._target_mailbox(account, mailbox))

    async def _check_forward(
        self, recipient: str, entry: ForwardEntry, size: int
    ) -> Target | Failure:
        expansion = await forwarding.expand(self._backend, entry, self.is_local_domain)
        for path in expansion.loops:
            log.warning("forwarding loop skipped: %s", " -> ".join(path))
        for text, reason in expansion.invalid:
            log.warning(
                "forwarding entry %s: destination %r skipped: %s", entry.address, text, reason
            )
        if expansion.truncated:
            log.warning("forwarding of %s: expansion truncated at the limits", entry.address)
        locals_: list[Local] = []
        relays: list[Relay] = []
        failures: list[Failure] = []
        for leaf in expansion.leaves:
            destination = leaf.destination
            try:
                if destination.kind is forwarding.Kind.EXTERNAL:
                    relays.append(Relay(destination.value, leaf.path))
                    continue
                if destination.kind is forwarding.Kind.PUBLIC:
                    public = await self._backend.public_account()
                    box = await self._backend.get_mailbox(
                        public.id, mailbox_name(destination.value)
                    )
                    full = await self._quota_failure(recipient, public, size)
                    checked: Local | Failure = full if full is not None else Local(public, box)
                else:
                    account, folder = await self._resolve(destination.value)
                    checked = await self._check_local(recipient, account, folder, size)
            except StoreError as exc:
                checked = self._failure(recipient, exc)
            if isinstance(checked, Local):
                locals_.append(checked)
            else:
                log.warning(
                    "forwarding %s: destination %s refused: %s",
                    recipient,
                    destination,
                    checked.text,
                )
                failures.append(checked)
        if not locals_ and not relays:
            if failures:
                return failures[0]
            return Rejected(recipient, ErrorKind.NOT_FOUND, "Forwarding leads to no destination")
        return Target(recipient, tuple(locals_), tuple(relays), tuple(expansion.forwards))

    async def _find(
        self, lookup: SupportsRecipientLookup, recipient: str
    ) -> tuple[ForwardEntry | None, tuple[AccountInfo, str | None] | None]:
        """Step 1 in one backend call: the forwarding entry, else what :meth:`_resolve`
        gives."""
        names, error = self._candidates(recipient)
        keys = forwarding.lookup_keys(recipient, self.is_local_domain)
        entry, account, which = await lookup.find_recipient(keys, [n for n, _ in names])
        if entry is not None:
            return entry, None
        if account is None:
            raise error if error is not None else StoreError(ErrorKind.NOT_FOUND, "No such user")
        return None, (account, names[which][1])

    def _candidates(
        self, recipient: str
    ) -> tuple[list[tuple[str, str | None]], StoreError | None]:
        """The account names ``recipient`` may stand for, in the order they are tried, each
        with the folder it asks for (None: INBOX); and the error to raise when none is an
        account, if not "No such user"."""
        names: list[tuple[str, str | None]] = [(recipient, None)]
        local = recipient
        if "@" in recipient:
            try:
                address = parse_address(recipient, smtputf8=not recipient.isascii())
            except StoreError as exc:
                return names, exc
            if not self.is_local_domain(address.domain):
                return names, StoreError(ErrorKind.NOT_FOUND, "No such user (not a local domain)")
            local = address.local
            names.append((local, None))
        user, plus, folder = local.partition("+")
        if plus and user and folder:
            names.append((user, folder))
        return names, None

    async def _resolve(self, recipient: str) -> tuple[AccountInfo, str | None]:
        """The account, and the folder a plus-address asks for (None: INBOX)."""
        names, error = self._candidates(recipient)
        for name, folder in names:
            found = await self._account(name)
            if found is not None:
                return found, folder
        raise error if error is not None else StoreError(ErrorKind.NOT_FOUND, "No such user")

    async def _account(self, name: str) -> AccountInfo | None:
        try:
            return await self._backend.get_account(name)
        except StoreError as exc:
            if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                raise
        return None

    async def _target_mailbox(
        self, account: AccountInfo, requested: str | None
    ) -> MailboxInfo | None:
        """The requested mailbox if it exists; None for INBOX (see :class:`Local`)."""
        if requested is not None and account.kind is AccountKind.IMAP:
            try:
                found = await self._backend.get_mailbox(account.id, mailbox_name(requested))
            except StoreError as exc:
                if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                    raise
            else:
                return None if found.name == INBOX else found
        return None

    async def _quota_failure(
        self, recipient: str, account: AccountInfo, size_octets: int
    ) -> Failure | None:
        if account.storage_limit_kib is None and account.message_limit is None:
            return None  # unlimited: no need to read the usage (append checks it anyway)
        quota = await self._backend.get_quota(account.id)
        resource = quota.would_exceed(size_octets, 1)
        if resource is None:
            return None
        what = "storage" if resource is Resource.STORAGE else "message count"
        return self._failure(
            recipient, StoreError(ErrorKind.OVER_QUOTA, f"Mailbox is full ({what} quota)")
        )

    def _failure(self, recipient: str, exc: StoreError) -> Failure:
        if exc.kind is ErrorKind.OVER_QUOTA:
            permanent = self._over_quota_permanent
        else:
            permanent = exc.kind in _PERMANENT
        if permanent:
            return Rejected(recipient, exc.kind, exc.public)
        cause = exc.__cause__
        full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
        return Deferred(recipient, exc.kind, exc.public, full)

    # --- per message --------------------------------------------------------------------------

    async def deliver(
        self,
        targets: Sequence[Target],
        source: AsyncIterable[bytes],
        *,
        header_prefix: bytes = b"",
        internal_date: dt.datetime | None = None,
        sender: str | None = None,
        local_only_octets: int = 0,
    ) -> list[Outcome]:
        """Stage the message once and append it to every target; one outcome per target.

        ``header_prefix`` is written before the message: complete header lines, each ending
        in CRLF, that the door is responsible for (trace fields, RFC 5321 §4.4). It is the
        same for every recipient, so one stored file serves them all. Its first
        ``local_only_octets`` (the ``Return-Path`` field) are left out of forwarded copies.
        ``sender`` is the envelope sender for forwarded copies ("" or None: ``<>``).
        """
        outcomes: list[Outcome | None] = [None] * len(targets)
        if not targets:
            return []
        sniffer = _HeaderSniffer()
        try:
            async with self._backend.stage(max_octets=self._max_message_octets) as staged:
                if header_prefix:
                    await staged.write(header_prefix)
                received = 0
                async for chunk in sniffer.read(source):
                    if chunk:
                        received += len(chunk)
                        await staged.write(chunk)
                if received == 0:
                    raise StoreError(ErrorKind.PARAMS, "Message is empty")
                # Nothing to queue for the relay: the append finishes the message itself.
                fused = self._fused is not None and not any(t.relays for t in targets)
                if not fused:
                    await staged.finish()
                seen = sniffer.delivered_to(self.is_local_domain)
                done: dict[tuple[int, int], Outcome] = {}
                queued: dict[str, Relay] = {}  # external address -> its first path
                relay_of: dict[int, list[Relay]] = {}
                for i, target in enumerate(targets):
                    if seen and self._is_loop(target, seen):
                        log.warning("mail loop: %s already in Delivered-To", target.recipient)
                        outcomes[i] = Rejected(
                            target.recipient,
                            ErrorKind.NOT_POSSIBLE,
                            "Mail loop: message already delivered to this address",
                            loop=True,
                        )
                        continue
                    mine = [r for r in target.relays if r.address.casefold() not in queued]
                    for r in mine:
                        queued[r.address.casefold()] = r
                    relay_of[i] = mine
                relayed = await self._enqueue(
                    staged,
                    [r for rs in relay_of.values() for r in rs],
                    header_prefix[local_only_octets:],
                    len(header_prefix),
                    sender or "",
                )
                await self._append_all(targets, outcomes, staged, internal_date, done, fused)
                for i, target in enumerate(targets):
                    if outcomes[i] is not None:
                        continue
                    results: list[Outcome] = [done[local.key] for local in target.locals]
                    for r in relay_of.get(i, []):
                        results.append(relayed[r.address.casefold()])
                    outcomes[i] = _combined(target, results)
        except StoreError as exc:
            for i, target in enumerate(targets):
                if outcomes[i] is None:
                    outcomes[i] = self._failure(target.recipient, exc)
        return [o for o in outcomes if o is not None]

    def _is_loop(self, target: Target, seen: set[str]) -> bool:
        for hop in target.hops:
            keys = {k.casefold() for k in forwarding.lookup_keys(hop, self.is_local_domain)}
            if keys & seen:
                return True
        return False

    def _delivered_to(self, hop: str) -> str:
        if "@" in hop or not self._qualify:
            return hop
        return f"{hop}@{self._qualify}"

    async def _enqueue(
        self,
        staged: StagedMessage,
        relays: list[Relay],
        trace: bytes,
        skip_octets: int,
        sender: str,
    ) -> dict[str, Outcome]:
        """Queue the external copies: one queue entry per distinct forwarding path. Each is
        its Delivered-To fields, ``trace``, then the staged message without its first
        ``skip_octets`` (the door's trace fields as stored locally)."""
        by_path: dict[tuple[str, ...], list[Relay]] = {}
        for r in relays:
            by_path.setdefault(r.hops, []).append(r)
        out: dict[str, Outcome] = {}
        for hops, group in by_path.items():
            fields = "".join(f"Delivered-To: {self._delivered_to(h)}\r\n" for h in reversed(hops))
            try:
                entry = await self._backend.enqueue(
                    staged,
                    sender=sender,
                    recipients=[r.address for r in group],
                    prefix=fields.encode("utf-8") + trace,
                    skip_octets=skip_octets,
                )
            except StoreError as exc:
                for r in group:
                    out[r.address.casefold()] = self._failure(r.address, exc)
                continue
            log.info(
                "queued %d octets for %s (queue id %d)",
                entry.size,
                ", ".join(r.address for r in group),
                entry.id,
            )
            for r in group:
                out[r.address.casefold()] = Accepted(r.address, "", INBOX, Uid(0))
        if out:
            relay.wake_runners()
        return out

    async def _append_all(
        self,
        targets: Sequence[Target],
        outcomes: list[Outcome | None],
        staged: StagedMessage,
        internal_date: dt.datetime | None,
        done: dict[tuple[int, int], Outcome],
        fused: bool = False,
    ) -> None:
        """Append the staged message to every distinct mailbox of the targets still open,
        :data:`APPEND_CONCURRENCY` at a time: different accounts have different indexes, and
        their commits (and fsyncs) overlap instead of queueing one behind the other.

        ``fused``: the message is not finished yet; the backend's ``finish_and_deliver``
        finishes it (an error of that propagates, as from ``staged.finish()``)."""
        jobs: dict[tuple[int, int], tuple[Target, Local]] = {}
        for i, target in enumerate(targets):
            if outcomes[i] is None:
                for local in target.locals:
                    jobs.setdefault(local.key, (target, local))
        if (self._many is not None or fused) and jobs:
            # One call for every mailbox; the staged file is not used after it.
            destinations = [
                (local.account, None if local.mailbox is None else local.mailbox.id)
                for _, local in jobs.values()
            ]
            if fused:
                assert self._fused is not None
                results = await self._fused.finish_and_deliver(
                    staged, destinations, internal_date=internal_date, release=True
                )
            else:
                assert self._many is not None
                results = await self._many.deliver_many(
                    staged, destinations, internal_date=internal_date, release=True
                )
            for (key, (target, local)), result in zip(jobs.items(), results, strict=True):
                if isinstance(result, AppendResult):
                    done[key] = Accepted(
                        target.recipient, local.account.name, local.mailbox_name, result.uid
                    )
                else:
                    done[key] = self._failure(target.recipient, result)
            return
        gate = asyncio.Semaphore(APPEND_CONCURRENCY)

        async def one(key: tuple[int, int], target: Target, local: Local) -> None:
            async with gate:
                done[key] = await self._append(target, local, staged, internal_date)

        await asyncio.gather(*(one(key, t, loc) for key, (t, loc) in jobs.items()))

    async def _append(
        self,
        target: Target,
        local: Local,
        staged: StagedMessage,
        internal_date: dt.datetime | None,
    ) -> Outcome:
        # The quota is checked atomically by append itself (OVER_QUOTA -> _failure).
        try:
            mailbox = local.mailbox
            if mailbox is None:
                mailbox = await self._backend.get_mailbox(local.account.id, INBOX)
            result = await self._backend.append(
                local.account.id, mailbox.id, staged, internal_date=internal_date
            )
        except StoreError as exc:
            return self._failure(target.recipient, exc)
        return Accepted(target.recipient, local.account.name, mailbox.name, result.uid)

    async def deliver_message(
        self,
        recipients: Sequence[str],
        source: AsyncIterable[bytes],
        *,
        mailbox: str | None = None,
        header_prefix: bytes = b"",
        internal_date: dt.datetime | None = None,
        sender: str | None = None,
        local_only_octets: int = 0,
    ) -> list[Outcome]:
        """Check every recipient, then deliver to those that passed; one outcome per
        recipient, in order. The source is not read if no recipient passed."""
        checked = [await self.check(r, mailbox=mailbox) for r in recipients]
        targets = [c for c in checked if isinstance(c, Target)]
        delivered = iter(
            await self.deliver(
                targets,
                source,
                header_prefix=header_prefix,
                internal_date=internal_date,
                sender=sender,
                local_only_octets=local_only_octets,
            )
            if targets
            else []
        )
        return [next(delivered) if isinstance(c, Target) else c for c in checked]


def _for_recipient(outcome: Outcome, recipient: str) -> Outcome:
    """The same outcome, reported under another recipient (a duplicate target)."""
    if outcome.recipient == recipient:
        return outcome
    if isinstance(outcome, Accepted):
        return Accepted(recipient, outcome.account, outcome.mailbox, outcome.uid)
    if isinstance(outcome, Deferred):
        return Deferred(recipient, outcome.kind, outcome.text, outcome.storage_full)
    return Rejected(recipient, outcome.kind, outcome.text, outcome.loop)


def _combined(target: Target, results: list[Outcome]) -> Outcome:
    """One recipient's outcome from its destinations': accepted if any destination took the
    message (the others are logged), else the first failure."""
    accepted = [o for o in results if isinstance(o, Accepted)]
    for o in results:
        if not isinstance(o, Accepted):
            log.warning("delivery for %s: a destination failed: %s", target.recipient, o.text)
    if accepted:
        return _for_recipient(accepted[0], target.recipient)
    if not results:
        return Rejected(target.recipient, ErrorKind.NOT_FOUND, "No destination")
    return _for_recipient(results[0], target.recipient)


class _HeaderSniffer:
    """Passes the message through while keeping a copy of its header section (up to
    :data:`MAX_HEADER_OCTETS`), for the Delivered-To loop check."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._complete = False

    async def read(self, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in source:
            if not self._complete and chunk:
                self._head += chunk
                end = _header_end(self._head)
                if end >= 0:
                    del self._head[end:]
                    self._complete = True
                elif len(self._head) > MAX_HEADER_OCTETS:
                    del self._head[MAX_HEADER_OCTETS:]
                    self._complete = True
            yield chunk

    def delivered_to(self, is_local_domain: forwarding.IsLocalDomain) -> set[str]:
        """Lookup keys (casefolded) of every Delivered-To address in the header."""
        text = bytes(self._head).replace(b"\r\n", b"\n").decode("utf-8", "replace")
        out: set[str] = set()
        current: str | None = None
        values: list[str] = []
        for line in text.split("\n"):
            if line[:1] in (" ", "\t") and current is not None:
                current += " " + line.strip()
                continue
            if current is not None:
                values.append(current)
                current = None
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "delivered-to":
                current = value.strip()
        if current is not None:
            values.append(current)
        for value in values:
            address = value.strip().strip("<>").strip()
            if address:
                out.update(k.casefold() for k in forwarding.lookup_keys(address, is_local_domain))
        return out


def _header_end(data: bytearray) -> int:
    """Offset of the blank line ending the header section, or -1."""
    if data.startswith((b"\r\n", b"\n")):
        return 0
    found = [i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0]
    return min(found) if found else -1
