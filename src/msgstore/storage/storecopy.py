"""``msgstore store copy``: one whole store into another, through ``storage.base`` only.

Both directions (local -> PostgreSQL, PostgreSQL -> local, and local -> local) are the same
code: the source is read through the ``Backend`` interface, account by account and mailbox by
mailbox, and the destination is filled through ``SupportsUidImport`` (UIDVALIDITY) and
``SupportsStoreImport`` (messages at their UIDs with their modseqs, HIGHESTMODSEQ, UIDNEXT,
keywords, the expunge floor; account creation times; forwarding entries, the relay queue, API
tokens, web sessions and the audit log with their ids and timestamps).

What a client can see is kept: UIDs, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and every message's
modseq (CONDSTORE/QRESYNC caches stay valid), flags and keywords, internal dates, UIDLs,
subscriptions, special-use attributes, ACLs, quota limits (usage is recomputed), account
kinds, flags, password hashes and creation times, the last logins, and web sessions (with the
fingerprint of the password hash each began with, so a logged-in browser stays logged in and a
session the source would refuse stays refused). Account and mailbox ids are the destination's
(nothing outside the store shows them; API tokens, sessions and ACLs name accounts).

Resumable: accounts and mailboxes found in the destination are brought up to the source's
settings, messages whose UID is already there are skipped, and the site-wide tables are
merged (forwards overwritten by address, queue entries by id, tokens by hash, web sessions by
id hash, audit records that are already there counted off), so an interrupted copy is
finished by running it again. Each batch of messages is one destination transaction; a kill
between batches loses nothing that was committed, and a kill inside one leaves nothing
half-written.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Final

from msgstore.core.accounts import AccountChanges, AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import AccountId, ModSeq, Uid, UidSet
from msgstore.storage.base import (
    MAX_LOGINS_KEPT,
    AuditRecord,
    Backend,
    Feature,
    ImportedMessage,
    LoginRecord,
    MailboxInfo,
    MessageMeta,
    NewAccount,
    NewApiToken,
    SupportsStoreImport,
    SupportsUidImport,
    Want,
)

#: Messages per destination transaction, and the octets a batch may hold staged at once.
BATCH: Final = 200
BATCH_OCTETS: Final = 32 * 1024 * 1024
#: Audit records per read and per destination transaction.
AUDIT_PAGE: Final = 1000


@dataclass
class CopySummary:
    accounts: int = 0
    mailboxes: int = 0
    messages: int = 0
    skipped: int = 0
    octets: int = 0
    forwards: int = 0
    queued: int = 0
    tokens: int = 0
    sessions: int = 0
    audit: int = 0

    def __str__(self) -> str:
        return (
            f"copied {self.accounts} accounts, {self.mailboxes} mailboxes, {self.messages} "
            f"messages ({self.octets} octets); {self.skipped} already there; "
            f"{self.forwards} forwards, {self.queued} queued messages, {self.tokens} API "
            f"tokens, {self.audit} audit records, {self.sessions} web sessions"
        )


class _Bar:
    """A rich progress bar over messages, or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._progress: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import Progress

            self._progress = Progress(transient=False)
            self._progress.start()
            self._task = self._progress.add_task("copying messages", total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and n:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextlib.contextmanager
def _bar(enabled: bool, total: int) -> Iterator[_Bar]:
    bar = _Bar(enabled, total)
    try:
        yield bar
    finally:
        bar.close()


def _importer(dest: Backend) -> Any:
    if (
        Feature.STORE_IMPORT not in dest.features
        or not isinstance(dest, SupportsStoreImport)
        or not isinstance(dest, SupportsUidImport)
    ):
        raise StoreError(
            ErrorKind.NOT_POSSIBLE, "The destination store cannot keep UIDs and modseqs"
        )
    return dest


async def copy_between(source: Backend, dest: Backend, *, progress: bool = True) -> CopySummary:
    """Copy everything of ``source`` into ``dest`` (see the module docstring). Raises
    NOT_POSSIBLE when ``dest`` lacks the import capabilities, or a mailbox there already
    has another UIDVALIDITY and messages; whatever the stores raise."""
    target = _importer(dest)
    exporter = source if isinstance(source, SupportsStoreImport) else None
    summary = CopySummary()
    source_public = await source.public_account()
    accounts = [source_public, *await source.list_accounts()]
    total = 0
    for info in accounts:
        for box in await source.list_mailboxes(info.id):
            total += (await source.mailbox_status(info.id, box.id)).messages
    await _check(source, dest, accounts, source_public.id)
    with _bar(progress, total) as bar:
        for info in accounts:
            if info.id == source_public.id:
                mine = await dest.public_account()
            else:
                mine = await _account(source, dest, info)
            if mine.created != info.created:
                await target.set_account_created(mine.id, info.created)
            quota = await source.get_quota(info.id)
            await dest.set_quota(
                mine.id,
                storage_limit_kib=quota.storage_limit_kib,
                message_limit=quota.message_limit,
            )
            for name in await source.list_subscriptions(info.id):
                await dest.set_subscribed(mine.id, name, True)
            for box in await source.list_mailboxes(info.id):
                await _mailbox(source, target, info.id, mine.id, box, summary, bar)
                summary.mailboxes += 1
            if info.id != source_public.id:
                logins = await source.last_logins(info.id, limit=MAX_LOGINS_KEPT)
                if logins:
                    await dest.record_logins(
                        [
                            LoginRecord(
                                account=mine.id, protocol=x.protocol, address=x.address, at=x.at
                            )
                            for x in logins
                        ]
                    )
            summary.accounts += 1
    await _site(source, exporter, target, summary)
    return summary


async def _check(
    source: Backend, dest: Backend, accounts: list[AccountInfo], public: AccountId
) -> None:
    """Refuse (NOT_POSSIBLE, before anything is written) a destination mailbox that holds
    other mail: another UIDVALIDITY, or UIDs at or above those still to copy."""
    for info in accounts:
        try:
            if info.id == public:
                mine = await dest.public_account()
            else:
                mine = await dest.get_account(info.name)
        except StoreError as exc:
            if exc.kind is not ErrorKind.NOT_FOUND:
                raise
            continue
        for box in await source.list_mailboxes(info.id):
            try:
                theirs = await dest.get_mailbox(mine.id, box.name)
            except StoreError as exc:
                if exc.kind is not ErrorKind.NOT_FOUND:
                    raise
                continue
            there = await dest.snapshot(mine.id, theirs.id)
            if there.uidnext == 1:
                continue  # never held a message: takes the source's UIDVALIDITY
            snapshot = await source.snapshot(info.id, box.id)
            where = f"{mine.name}: {box.name}"
            if there.uidvalidity != snapshot.uidvalidity:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE,
                    f"{where}: the destination mailbox already holds other mail "
                    f"(UIDVALIDITY {there.uidvalidity}, the source's is "
                    f"{snapshot.uidvalidity}); copy into a new store",
                )
            have = set(there.uids)
            both = [u for u in snapshot.uids if u in have]
            if both:
                # A resumed copy finds its own messages; another store's, made in the same
                # second with the same UIDVALIDITY, has other contents under the same UIDs.
                uids = UidSet.from_uids(both)
                ours = await source.fetch_meta(info.id, box.id, uids, Want.FLAGS)
                theirs_meta = await dest.fetch_meta(mine.id, theirs.id, uids, Want.FLAGS)
                hashes = {m.uid: m.sha256 for m in theirs_meta}
                for meta in ours:
                    if hashes.get(meta.uid, meta.sha256) != meta.sha256:
                        raise StoreError(
                            ErrorKind.NOT_POSSIBLE,
                            f"{where}: the destination mailbox already holds other mail "
                            f"(UID {meta.uid} differs); copy into a new store",
                        )
            missing = [u for u in snapshot.uids if u not in have]
            if missing and missing[0] < there.uidnext:
                raise StoreError(
                    ErrorKind.NOT_POSSIBLE,
                    f"{where}: UID {missing[0]} cannot be placed below the destination's "
                    f"UIDNEXT {there.uidnext}; copy into a new store",
                )


async def _account(source: Backend, dest: Backend, info: AccountInfo) -> AccountInfo:
    """The destination's account of that name, created or brought up to the source's."""
    _, password_hash = await source.get_password_hash(info.name)
    try:
        there, their_hash = await dest.get_password_hash(info.name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        await dest.create_account(
            NewAccount(
                name=info.name,
                password_hash=password_hash,
                kind=info.kind,
                manager=info.manager,
                storage_limit_kib=info.storage_limit_kib,
                message_limit=info.message_limit,
            )
        )
    else:
        if their_hash != password_hash:
            await dest.set_password_hash(there.name, password_hash)
    return await dest.update_account(
        info.name,
        AccountChanges(
            kind=info.kind,
            manager=info.manager,
            login_disabled=info.login_disabled,
            receive_disabled=info.receive_disabled,
        ),
    )


async def _mailbox(
    source: Backend,
    dest: Any,
    account: AccountId,
    target: AccountId,
    box: MailboxInfo,
    summary: CopySummary,
    bar: _Bar,
) -> None:
    special = " ".join(sorted(box.special_use))
    try:
        mine = await dest.get_mailbox(target, box.name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        mine = await dest.create_mailbox(target, box.name, special_use=special)
    if mine.special_use != box.special_use:
        await dest.set_special_use(target, box.name, special)
    theirs = await source.get_acl(account, box.id)
    ours = await dest.get_acl(target, mine.id)
    for ident, rights in theirs.items():
        if ours.get(ident) != rights:
            await dest.set_acl(target, mine.id, ident, rights)
    for ident in ours.keys() - theirs.keys():
        await dest.delete_acl(target, mine.id, ident)

    snapshot = await source.snapshot(account, box.id)
    there = await dest.snapshot(target, mine.id)
    if there.uidvalidity != snapshot.uidvalidity:
        # Only while the destination mailbox never held a message (else NOT_POSSIBLE).
        await dest.import_uid_state(
            target, mine.id, uidvalidity=snapshot.uidvalidity, uidnext=Uid(1)
        )
    have = set(there.uids)
    todo = [Uid(u) for u in snapshot.uids if u not in have]
    summary.skipped += len(snapshot.uids) - len(todo)
    bar.advance(len(snapshot.uids) - len(todo))
    for start in range(0, len(todo), BATCH):
        metas = await source.fetch_meta(
            account, box.id, UidSet.from_uids(todo[start : start + BATCH]), Want.FLAGS
        )
        while metas:
            chunk: list[MessageMeta] = []
            octets = 0
            while metas and (not chunk or octets + metas[0].size <= BATCH_OCTETS):
                octets += metas[0].size
                chunk.append(metas.pop(0))
            async with AsyncExitStack() as stack:
                imported = []
                for meta in chunk:
                    async with source.open_body(account, box.id, meta.uid) as reader:
                        data = await reader.read(0, reader.size)
                    staged = await stack.enter_async_context(
                        dest.stage(max_octets=max(len(data), 1) * 2)
                    )
                    await staged.write(data)
                    await staged.finish()
                    imported.append(
                        ImportedMessage(
                            staged=staged,
                            uid=meta.uid,
                            modseq=meta.modseq,
                            flags=meta.flags,
                            internal_date=meta.internal_date,
                            uidl=meta.uidl,
                        )
                    )
                await dest.import_messages(target, mine.id, imported)
            summary.messages += len(chunk)
            summary.octets += octets
            bar.advance(len(chunk))
    await dest.import_mailbox_state(
        target,
        mine.id,
        uidnext=snapshot.uidnext,
        highestmodseq=ModSeq(snapshot.highestmodseq),
        keywords=snapshot.keywords,
    )


async def _site(source: Backend, exporter: Any, dest: Any, summary: CopySummary) -> None:
    """Forwarding entries, the relay queue, API tokens, web sessions and the audit log."""
    for entry in await source.list_forwards():
        await dest.import_forward(entry)
        summary.forwards += 1
    for queued in await source.list_queue():
        try:
            data = await source.read_queued(queued.id)
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                continue  # sent meanwhile
            raise
        if await dest.import_queued(queued, data):
            summary.queued += 1
    if exporter is not None:
        for token, token_hash in await exporter.export_api_tokens():
            owner = await dest.get_account(token.account_name)
            new = NewApiToken(
                account=owner.id,
                token_hash=token_hash,
                label=token.label,
                created=token.created,
                expires=token.expires,
            )
            if await dest.import_api_token(new, token.id):
                summary.tokens += 1
        for session in await exporter.export_web_sessions():
            try:
                owner = await dest.get_account(session.account_name)
            except StoreError as exc:
                if exc.kind is ErrorKind.NOT_FOUND:
                    continue  # the account was added to the source after it was copied
                raise
            if await dest.import_web_session(owner.id, session):
                summary.sessions += 1
    theirs = await _all_audit(source)
    have = Counter(await _all_audit(dest))
    missing: list[AuditRecord] = []
    for record in theirs:  # oldest first
        if have[record] > 0:
            have[record] -= 1
        else:
            missing.append(record)
    for start in range(0, len(missing), AUDIT_PAGE):
        await dest.import_audit(missing[start : start + AUDIT_PAGE])
    summary.audit += len(missing)


async def _all_audit(backend: Backend) -> list[AuditRecord]:
    """The whole audit log, oldest first."""
    out: list[AuditRecord] = []
    while page := await backend.list_audit(limit=AUDIT_PAGE, offset=len(out)):
        out.extend(page)
        if len(page) < AUDIT_PAGE:
            break
    out.reverse()
    return out
