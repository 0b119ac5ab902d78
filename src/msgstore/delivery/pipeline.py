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
2. **check** the account: receiving not disabled (``Rejected(DISABLED)``); quota not already
   exceeded by a message of the announced size, or of one octet when the size is unknown
   (``Deferred(OVER_QUOTA)``; see *over quota* below).
3. **choose the mailbox**: INBOX, or the requested mailbox if it exists. A requested mailbox
   that does not exist (or is not a valid name) falls back to INBOX, as Dovecot's
   ``lda_mailbox_autocreate = no`` does: mail is never refused for a missing folder. Pop
   accounts always get INBOX.
4. **stage once**: the optional per-delivery header prefix (trace headers: the LMTP door adds
   Return-Path/Received), then the message as it streams in, chunk by chunk, normalised to
   CRLF and capped at ``[store] max_message_size`` (``Rejected(TOO_BIG)`` for everyone; the
   rest of the source is then not read -- a door that must consume it, like LMTP DATA, does).
   An empty message is ``Rejected(PARAMS)``.
5. **append** the staged message to each accepted recipient's mailbox. The local backend
   stores one file hard-linked into every tree. The quota is checked again with the real size,
   and once more atomically inside ``append``, so racing deliveries cannot overshoot it.

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
"""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.address import parse_address
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import Uid
from msgstore.core.names import INBOX, MailboxName, mailbox_name
from msgstore.core.quota import Resource
from msgstore.storage.base import Backend, MailboxInfo, StagedMessage

if TYPE_CHECKING:
    from msgstore.config import Config

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
class Target:
    """A recipient that passed the checks: where the message will go."""

    recipient: str
    account: AccountInfo
    mailbox: MailboxInfo


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
        self._max_message_octets = max_message_octets
        self._over_quota_permanent = over_quota_permanent
        self._domains = frozenset(d.lower() for d in domains)

    @classmethod
    def from_config(cls, backend: Backend, config: Config) -> DeliveryPipeline:
        return cls(
            backend,
            max_message_octets=config.store.max_message_size,
            over_quota_permanent=not config.delivery.over_quota_temporary,
            domains=config.delivery.domains,
        )

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
        try:
            account, folder = await self._resolve(recipient)
            if account.receive_disabled:
                return Rejected(recipient, ErrorKind.DISABLED, "Account does not receive mail")
            full = await self._quota_failure(recipient, account, max(size_octets or 1, 1))
            if full is not None:
                return full
            target_mailbox = await self._target_mailbox(account, mailbox or folder)
        except StoreError as exc:
            return self._failure(recipient, exc)
        return Target(recipient, account, target_mailbox)

    async def _resolve(self, recipient: str) -> tuple[AccountInfo, str | None]:
        """The account, and the folder a plus-address asks for (None: INBOX)."""
        found = await self._account(recipient)
        if found is not None:
            return found, None
        local = recipient
        if "@" in recipient:
            address = parse_address(recipient, smtputf8=not recipient.isascii())
            if not self.is_local_domain(address.domain):
                raise StoreError(ErrorKind.NOT_FOUND, "No such user (not a local domain)")
            local = address.local
            found = await self._account(local)
            if found is not None:
                return found, None
        user, plus, folder = local.partition("+")
        if plus and user and folder:
            found = await self._account(user)
            if found is not None:
                return found, folder
        raise StoreError(ErrorKind.NOT_FOUND, "No such user")

    async def _account(self, name: str) -> AccountInfo | None:
        try:
            return await self._backend.get_account(name)
        except StoreError as exc:
            if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                raise
        return None

    async def _target_mailbox(self, account: AccountInfo, requested: str | None) -> MailboxInfo:
        if requested is not None and account.kind is AccountKind.IMAP:
            try:
                return await self._backend.get_mailbox(account.id, mailbox_name(requested))
            except StoreError as exc:
                if exc.kind not in (ErrorKind.NOT_FOUND, ErrorKind.PARAMS):
                    raise
        return await self._backend.get_mailbox(account.id, INBOX)

    async def _quota_failure(
        self, recipient: str, account: AccountInfo, size_octets: int
    ) -> Failure | None:
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
    ) -> list[Outcome]:
        """Stage the message once and append it to every target; one outcome per target.

        ``header_prefix`` is written before the message: complete header lines, each ending
        in CRLF, that the door is responsible for (trace fields, RFC 5321 §4.4). It is the
        same for every recipient, so one stored file serves them all.
        """
        outcomes: list[Outcome | None] = [None] * len(targets)
        if not targets:
            return []
        try:
            async with self._backend.stage(max_octets=self._max_message_octets) as staged:
                if header_prefix:
                    await staged.write(header_prefix)
                received = 0
                async for chunk in source:
                    if chunk:
                        received += len(chunk)
                        await staged.write(chunk)
                if received == 0:
                    raise StoreError(ErrorKind.PARAMS, "Message is empty")
                await staged.finish()
                done: dict[tuple[int, int], Outcome] = {}
                for i, target in enumerate(targets):
                    key = (int(target.account.id), int(target.mailbox.id))
                    if key not in done:
                        done[key] = await self._append(target, staged, internal_date)
                    outcomes[i] = _for_recipient(done[key], target.recipient)
        except StoreError as exc:
            for i, target in enumerate(targets):
                if outcomes[i] is None:
                    outcomes[i] = self._failure(target.recipient, exc)
        return [o for o in outcomes if o is not None]

    async def _append(
        self, target: Target, staged: StagedMessage, internal_date: dt.datetime | None
    ) -> Outcome:
        try:
            full = await self._quota_failure(target.recipient, target.account, staged.size)
            if full is not None:
                return full
            result = await self._backend.append(
                target.account.id, target.mailbox.id, staged, internal_date=internal_date
            )
        except StoreError as exc:
            return self._failure(target.recipient, exc)
        return Accepted(target.recipient, target.account.name, target.mailbox.name, result.uid)

    async def deliver_message(
        self,
        recipients: Sequence[str],
        source: AsyncIterable[bytes],
        *,
        mailbox: str | None = None,
        header_prefix: bytes = b"",
        internal_date: dt.datetime | None = None,
    ) -> list[Outcome]:
        """Check every recipient, then deliver to those that passed; one outcome per
        recipient, in order. The source is not read if no recipient passed."""
        checked = [await self.check(r, mailbox=mailbox) for r in recipients]
        targets = [c for c in checked if isinstance(c, Target)]
        delivered = iter(
            await self.deliver(
                targets, source, header_prefix=header_prefix, internal_date=internal_date
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
    return Rejected(recipient, outcome.kind, outcome.text)
