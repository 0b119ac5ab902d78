"""The migration engine: accounts, folders and messages into the store, safe to run twice.

Every message takes the store's one durable path (``stage`` + ``append``, which parses it
once). A message already in the target mailbox -- same content hash, or for a source that
has not downloaded it yet the same Message-ID and size -- is skipped, so a second run (or a
run after a dropped connection) copies only what is new. UIDs and UIDVALIDITY are kept when
the backend offers ``SupportsUidImport`` and the target mailbox allows it (new, or already
carrying the source's UIDVALIDITY); otherwise messages are renumbered and the summary says
how many. Nothing is written in a dry run. Problems go into the summary and the run goes on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Final, Protocol

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import normalize_flag
from msgstore.core.ids import MailboxId, Uid, UidSet, UidValidity
from msgstore.management.accounts import AccountAdd, account_name
from msgstore.management.operation import ManagementContext, Secret, run_operation
from msgstore.migrate.model import (
    Known,
    Present,
    Problem,
    Source,
    SourceFolder,
    SourceMessage,
    Summary,
    content_hash,
    message_id_key,
)
from msgstore.storage.base import AppendResult, Backend, Feature, SupportsUidImport, Want

log = logging.getLogger("msgstore.migrate")


class Reporter(Protocol):
    """Progress of a run (the CLI draws a bar per mailbox; tests may pass :class:`Quiet`)."""

    def folder(self, account: str, name: str, total: int | None) -> None: ...

    def advance(self, octets: int) -> None: ...

    def done(self) -> None: ...


class Quiet:
    def folder(self, account: str, name: str, total: int | None) -> None:
        pass

    def advance(self, octets: int) -> None:
        pass

    def done(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Options:
    dry_run: bool = False
    keep_uids: bool = True
    max_octets: int = 50 * 1024 * 1024


#: Messages staged and appended concurrently per folder (appends still go in source order, so
#: the store's group commit shares one fsync among them); larger messages travel alone.
WINDOW: Final = 16
BIG_MESSAGE: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Put:
    stored: bytes
    flags: frozenset[str]
    internal_date: dt.datetime | None
    uidl: str | None
    wanted: int | None  # the source UID to keep, if it can be kept
    gap: bool  # UIDNEXT must move up to ``wanted`` first
    source_uid: int | None
    where: str


class _Pipeline:
    """Up to ``WINDOW`` messages in flight: staged concurrently, appended in source order.

    Each message waits for its predecessor's append to be *queued* before queueing its own
    (a chain of futures), so UIDs are taken in source order and the store's group commit
    batches the appends. A message that must move UIDNEXT first waits until every earlier
    append is done. An error that makes the rest of the folder pointless (over quota, a
    damaged index, the mailbox gone) is kept in ``fatal`` and stops the folder.
    """

    def __init__(
        self,
        backend: Backend,
        account: AccountInfo | None,
        mailbox: MailboxId | None,
        importer: SupportsUidImport | None,
        options: Options,
        summary: Summary,
        reporter: Reporter,
        label: str,
    ) -> None:
        self.backend = backend
        self.account = account
        self.mailbox = mailbox
        self.importer = importer
        self.options = options
        self.summary = summary
        self.reporter = reporter
        self.label = label
        self.window = asyncio.Semaphore(WINDOW)
        self.tasks: set[asyncio.Task[None]] = set()
        self.appends: list[asyncio.Task[AppendResult]] = []
        self.turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.turn.set_result(None)
        self.fatal: StoreError | None = None
        self.uidnext = 1

    async def put(self, put: _Put) -> None:
        await self.window.acquire()
        if len(self.appends) > 4 * WINDOW:
            self.appends = [a for a in self.appends if not a.done()]
        previous, mine = self.turn, asyncio.get_running_loop().create_future()
        self.turn = mine
        task = asyncio.create_task(self._one(put, previous, mine))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.appends.clear()

    async def _one(
        self, put: _Put, previous: asyncio.Future[None], mine: asyncio.Future[None]
    ) -> None:
        assert self.account is not None
        assert self.mailbox is not None
        account, mailbox = self.account.id, self.mailbox
        try:
            async with self.backend.stage(max_octets=self.options.max_octets) as staged:
                await staged.write(put.stored)
                await staged.finish()
                await asyncio.shield(previous)
                try:
                    if self.fatal is not None:
                        return
                    if put.gap and self.importer is not None and put.wanted is not None:
                        await asyncio.gather(*self.appends, return_exceptions=True)
                        await self.importer.import_uid_state(
                            account, mailbox, uidvalidity=None, uidnext=Uid(put.wanted)
                        )
                    append = asyncio.ensure_future(
                        self.backend.append(
                            account,
                            mailbox,
                            staged,
                            flags=put.flags,
                            internal_date=put.internal_date,
                            uidl=put.uidl,
                        )
                    )
                    self.appends.append(append)
                finally:
                    if not mine.done():
                        mine.set_result(None)
                result = await append
        except StoreError as exc:
            self._failed(put, exc)
        except OSError as exc:
            self._failed(put, StoreError(ErrorKind.TEMP, f"I/O error: {exc}", detail=str(exc)))
        except Exception as exc:  # a bug must show in the summary, not vanish in a task
            log.exception("%s: %s", self.label, put.where)
            self._failed(put, StoreError(ErrorKind.INTERNAL, f"internal error: {exc!r}"))
        else:
            self._stored(put, result)
        finally:
            if not mine.done():  # failed before its turn: keep the chain in order
                await asyncio.shield(previous)
                mine.set_result(None)
            self.window.release()

    def _stored(self, put: _Put, result: AppendResult) -> None:
        s = self.summary
        s.messages += 1
        s.octets += len(put.stored)
        self.uidnext = max(self.uidnext, int(result.uid) + 1)
        if put.source_uid is not None:
            if int(result.uid) == put.source_uid:
                s.uids_kept += 1
            else:
                s.uids_changed += 1
        self.reporter.advance(len(put.stored))

    def _failed(self, put: _Put, exc: StoreError) -> None:
        self.reporter.advance(len(put.stored))
        if exc.kind in (ErrorKind.OVER_QUOTA, ErrorKind.CORRUPTED, ErrorKind.NOT_FOUND):
            if self.fatal is None:
                self.fatal = StoreError(
                    exc.kind, f"stopped at {put.where}: {exc.public}", detail=exc.detail
                )
            return
        self.summary.problem(self.label, put.where, exc.public)


def dovecot_uidl(uid: int, uidvalidity: int) -> str:
    """Dovecot's default POP3 UIDL (``%08Xu%08Xv``), which the store also derives."""
    return f"{uid:08X}{uidvalidity:08X}"


async def ensure_account(
    ctx: ManagementContext,
    name: str,
    summary: Summary,
    *,
    create: bool,
    password_hash: str | None,
    dry_run: bool,
) -> AccountInfo | None:
    """The target account, created with ``create`` when missing; None (and a problem in the
    summary, or in a dry run a note) when there is none to migrate into."""
    try:
        account_name(name)
    except StoreError as exc:
        summary.problem(name, "", f"invalid account name here: {exc.public}")
        return None
    try:
        return await ctx.backend.get_account(name)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
    if not create:
        summary.problem(name, "", "no such account (use --create)")
        return None
    if dry_run:
        summary.notes.append(f"{name}: would create the account")
        return None
    # A random password until the carried-over hash replaces it; it is never shown.
    op = AccountAdd(name=name, password=Secret(secrets.token_urlsafe(24)))
    info = await run_operation(op, ctx)
    assert isinstance(info, AccountInfo)
    if password_hash:
        await ctx.backend.set_password_hash(info.name, password_hash)
        summary.notes.append(f"{name}: account created, password hash carried over")
    else:
        summary.notes.append(
            f"{name}: account created without a usable password: set one with "
            "`msgstore password set`"
        )
    return info


async def migrate_source(
    backend: Backend,
    account: AccountInfo | None,
    account_label: str,
    source: Source,
    summary: Summary,
    options: Options,
    reporter: Reporter,
) -> None:
    """Copy every folder of ``source`` into ``account`` (None: a dry run for an account that
    would be created)."""
    for problem in source.problems:
        summary.problem(account_label, problem.where, problem.reason)
    try:
        await _folders(backend, account, account_label, source, summary, options, reporter)
    finally:
        if source.close is not None:
            await source.close()


async def _folders(
    backend: Backend,
    account: AccountInfo | None,
    account_label: str,
    source: Source,
    summary: Summary,
    options: Options,
    reporter: Reporter,
) -> None:
    for folder in source.folders:
        summary.folders += 1
        reporter.folder(account_label, folder.name, folder.count)
        try:
            await _folder(backend, account, account_label, folder, summary, options, reporter)
        except StoreError as exc:
            summary.problem(account_label, folder.where, exc.public)
            log.warning("%s: %s: %s (%s)", account_label, folder.where, exc.public, exc.detail)
        except OSError as exc:
            summary.problem(account_label, folder.where, f"cannot read: {exc}")
        finally:
            reporter.done()


def _uid_importer(backend: Backend) -> SupportsUidImport | None:
    if Feature.UID_IMPORT in backend.features and isinstance(backend, SupportsUidImport):
        return backend
    return None


async def _target(
    backend: Backend, account: AccountInfo, folder: SourceFolder, dry_run: bool
) -> MailboxId | None:
    try:
        return (await backend.get_mailbox(account.id, folder.name)).id
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
    if dry_run:
        return None
    try:
        info = await backend.create_mailbox(
            account.id, folder.name, special_use=folder.special_use
        )
    except StoreError as err:
        if err.kind is not ErrorKind.PARAMS or not folder.special_use:
            raise
        info = await backend.create_mailbox(account.id, folder.name)
    await backend.set_subscribed(account.id, folder.name, True)
    return info.id


async def _known(backend: Backend, account: AccountInfo, mailbox: MailboxId | None) -> Known:
    if mailbox is None:
        return Known(frozenset(), frozenset())
    metas = await backend.fetch_meta(account.id, mailbox, UidSet.all(), Want.HEADERS)
    hashes = frozenset(m.sha256 for m in metas)
    ids = frozenset(
        (message_id_key(m.headers.get("message-id", "")), m.size)
        for m in metas
        if m.headers is not None and m.headers.get("message-id")
    )
    return Known(hashes, ids)


def _flags(item: SourceMessage, account: str, summary: Summary) -> frozenset[str]:
    out: set[str] = set()
    for flag in item.flags:
        try:
            out.add(normalize_flag(flag))
        except StoreError:
            summary.notes.append(
                f"{account}: {item.where}: flag {flag!r} dropped (not valid here)"
            )
    return frozenset(out)


async def _folder(
    backend: Backend,
    account: AccountInfo | None,
    label: str,
    folder: SourceFolder,
    summary: Summary,
    options: Options,
    reporter: Reporter,
) -> None:
    mailbox = None if account is None else await _target(backend, account, folder, options.dry_run)
    known = (
        Known(frozenset(), frozenset())
        if account is None
        else await _known(backend, account, mailbox)
    )
    seen = set(known.hashes)
    importer = _uid_importer(backend) if options.keep_uids else None
    keep = False
    uidnext = 1
    if account is not None and mailbox is not None:
        status = await backend.mailbox_status(account.id, mailbox)
        uidnext = int(status.uidnext)
        if importer is not None and folder.uidvalidity is not None:
            if status.uidvalidity == folder.uidvalidity:
                keep = True
            elif status.uidnext == 1 and status.messages == 0:
                if not options.dry_run:
                    await importer.import_uid_state(
                        account.id,
                        mailbox,
                        uidvalidity=UidValidity(folder.uidvalidity),
                        uidnext=Uid(1),
                    )
                keep = True
            else:
                summary.notes.append(
                    f"{label}: {folder.name}: UIDVALIDITY {folder.uidvalidity} not kept "
                    "(the mailbox already held other mail); messages get new UIDs"
                )
    elif folder.uidvalidity is not None and importer is not None:
        keep = True  # dry run into a mailbox that would be created
    problems_before = len(summary.problems)
    pipeline = _Pipeline(backend, account, mailbox, importer, options, summary, reporter, label)
    async for item in folder.messages(known):
        if isinstance(item, Present):
            summary.duplicates += 1
            reporter.advance(0)
            continue
        if isinstance(item, Problem):
            summary.problem(label, item.where, item.reason)
            if item.skipped:
                reporter.advance(0)
            continue
        stored, sha = content_hash(item.data)
        if sha in seen:
            summary.duplicates += 1
            reporter.advance(len(stored))
            continue
        if len(stored) > options.max_octets:
            summary.problem(
                label, item.where, f"message of {len(stored)} octets is over the size limit"
            )
            reporter.advance(len(stored))
            continue
        flags = _flags(item, label, summary)
        uidl = item.uidl
        if uidl is None and item.uid is not None and folder.uidvalidity is not None:
            uidl = dovecot_uidl(item.uid, folder.uidvalidity)
        wanted = item.uid if keep and item.uid is not None and item.uid >= uidnext else None
        if keep and item.uid is None and folder.uidnext is not None and uidnext < folder.uidnext:
            # A message the source never numbered goes after the source's UIDNEXT: a UID
            # below it may have been shown to a client for a message since expunged.
            wanted = folder.uidnext
        if options.dry_run or account is None or mailbox is None:
            seen.add(sha)
            summary.messages += 1
            summary.octets += len(stored)
            if wanted is not None:
                uidnext = wanted + 1
            if item.uid is not None:
                if wanted is not None:
                    summary.uids_kept += 1
                else:
                    summary.uids_changed += 1
            reporter.advance(len(stored))
            continue
        if pipeline.fatal is not None:
            break
        if len(stored) > BIG_MESSAGE:
            await pipeline.drain()  # a big message travels alone: bounded memory
        seen.add(sha)
        gap = wanted is not None and wanted > uidnext
        uidnext = (wanted if wanted is not None else uidnext) + 1
        await pipeline.put(
            _Put(stored, flags, item.internal_date, uidl, wanted, gap, item.uid, item.where)
        )
    await pipeline.drain()
    if pipeline.fatal is not None:
        raise pipeline.fatal
    uidnext = max(uidnext, pipeline.uidnext)
    # Only a folder read to its end may move UIDNEXT to the source's: an interrupted one must
    # leave room for the UIDs the next run brings.
    if (
        keep
        and len(summary.problems) == problems_before
        and importer is not None
        and not options.dry_run
        and account is not None
        and mailbox is not None
        and folder.uidnext is not None
        and folder.uidnext > uidnext
    ):
        await importer.import_uid_state(
            account.id, mailbox, uidvalidity=None, uidnext=Uid(folder.uidnext)
        )
