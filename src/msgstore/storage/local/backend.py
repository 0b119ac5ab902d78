"""``LocalBackend``: the Backend protocol over system.db, per-account index.db files and
message files (see the package docstring for the layout and the rules)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import sqlite3
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, Final, ParamSpec, TypeVar

from msgstore.core.accounts import AccountChanges, AccountInfo
from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import FlagOp, Flags
from msgstore.core.ids import AccountId, MailboxId, ModSeq, Uid, UidSet, UidValidity
from msgstore.core.names import MailboxName, mailbox_name
from msgstore.core.quota import QuotaInfo
from msgstore.storage.base import (
    AccountQuery,
    ApiToken,
    AppendResult,
    AuditRecord,
    BodyReader,
    Changes,
    ChangeWatcher,
    CopyResult,
    ExportSummary,
    Feature,
    ForwardEntry,
    ImportedMessage,
    LoginRecord,
    MailboxInfo,
    MailboxStatus,
    MaildropRow,
    MessageMeta,
    NewAccount,
    NewApiToken,
    NewWebSession,
    Progress,
    QueueEntry,
    ReconstructReport,
    RunnerLock,
    Snapshot,
    StagedMessage,
    StoredWebSession,
    StoreFlagsResult,
    Want,
    WebSession,
)
from msgstore.storage.local import files
from msgstore.storage.local import relay as relay_store
from msgstore.storage.local import tokens as token_store
from msgstore.storage.local import websessions as web_store
from msgstore.storage.local.db import (
    BUSY_TIMEOUT_MS,
    INDEX_DAMAGED,
    SYSTEM_DAMAGED,
    Worker,
    store_error,
)
from msgstore.storage.local.faults import FaultPlan
from msgstore.storage.local.files import FileOps
from msgstore.storage.local.index import (
    EXPUNGED_KEEP,
    AccountIndex,
    AppendRequest,
    PreparedAppend,
    acl_identifier,
    parse_special_use,
)
from msgstore.storage.local.notify import ALL_MAILBOXES, NotifyChannel
from msgstore.storage.local.staging import LocalStagedMessage
from msgstore.storage.local.system import SystemDb, TreeBuilder
from msgstore.storage.notify import ChangeHub

log = logging.getLogger("msgstore.storage.local")

#: Open index.db files kept (each with its thread); the least recently used idle one closes.
MAX_OPEN_INDEXES: Final = 256
#: Threads for staging (write, fsync, parse) and message reads.
FILE_THREADS: Final = 8
#: Threads of a fan-out to accounts whose index is not open (``deliver_many``) for its
#: directory fsyncs and commits: mostly waiting for the disk, and the waits overlap.
FANOUT_THREADS: Final = 16
#: Of those, the threads opening the indexes and linking (CPU: the kernel creating the
#: ``-wal``/``-shm`` files, SQLite preparing statements; more threads than CPUs only contend).
FANOUT_OPENERS: Final = 4
#: Accounts of a fan-out linked, then fsynced, then committed together: each phase's waits
#: overlap across them, and one file-system journal commit covers many directories. It
#: bounds how long their write locks are held (one round of the three phases).
FANOUT_ROUND: Final = 500
#: Threads appending the accounts of a fan-out found locked by another connection (after
#: their round has committed; each waits up to ``busy_timeout``).
FANOUT_WAITERS: Final = 4
#: Indexes opened by ``deliver_many`` kept open for the next fan-out (no thread each; the
#: least recently used one closes beyond it). Reopening one costs ~1 ms of CPU (the
#: ``-shm`` set up again, every statement prepared again).
MAX_DELIVERY_INDEXES: Final = 2048
PUBLIC_QUOTA_ROOT: Final = "Public"

P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")


@dataclass(slots=True)
class _ColdAppend:
    """One account of a fan-out through the fan-out threads (``deliver_many``), from phase
    to phase: its index once opened, its transaction once prepared, its results at the end."""

    info: AccountInfo
    positions: list[int]  # of its requests in the call
    request_list: list[AppendRequest] = field(default_factory=list)  # its requests
    index: AccountIndex | None = None
    prepared: PreparedAppend | None = None
    results: list[AppendResult | StoreError] | None = None


class LocalBodyReader:
    """Implements ``storage.base.BodyReader`` over an open message file.

    Reads never go past the size recorded at delivery, and a file that turns out shorter
    raises CORRUPTED instead of serving a short message.
    """

    __slots__ = ("_executor", "_fd", "_head", "_size")

    def __init__(self, fd: int, size: int, head: bytes, executor: ThreadPoolExecutor) -> None:
        self._fd = fd
        self._size = size
        self._head = head  # the file's first octets, read when it was opened
        self._executor = executor

    @property
    def size(self) -> int:
        return self._size

    def fileno(self) -> int:
        return self._fd

    async def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StoreError(ErrorKind.PARAMS, "Negative offset or length")
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""
        if offset + length <= len(self._head):
            if offset == 0 and length == len(self._head):
                return self._head
            return self._head[offset : offset + length]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._pread, offset, length)

    def _pread(self, offset: int, length: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < length:
            data = os.pread(self._fd, length - got, offset + got)
            if not data:
                raise StoreError(
                    ErrorKind.CORRUPTED,
                    "message file damaged; run msgstore reconstruct",
                    detail=f"fd {self._fd}: file ends before its recorded size {self._size}",
                )
            parts.append(data)
            got += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self, offset: int, length: int, chunk: int = 65536) -> AsyncIterator[bytes]:
        if chunk <= 0:
            raise StoreError(ErrorKind.PARAMS, "Chunk size must be positive")
        end = min(self._size, offset + max(0, length))
        pos = max(0, offset)
        while pos < end:
            data = await self.read(pos, min(chunk, end - pos))
            yield data
            pos += len(data)


class LocalBackend:
    """The embedded default backend (implements ``storage.base.Backend``).

    Open it with :meth:`open`; close it with :meth:`close`. Every method may raise
    :class:`StoreError`; see ``storage.base`` for the contract of each.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fault_plan: FaultPlan | None,
        loop: asyncio.AbstractEventLoop,
        expunged_keep: int = EXPUNGED_KEEP,
        max_open_indexes: int = MAX_OPEN_INDEXES,
    ) -> None:
        self.data_dir = data_dir
        self.fault_plan = fault_plan
        self._expunged_keep = expunged_keep
        self._max_open_indexes = max_open_indexes
        self._ops = FileOps(fault_plan)
        self._users_dir = data_dir / "users"
        self._public_dir = data_dir / "public"
        self._tmp_dir = data_dir / "tmp"
        self._pool_dir = data_dir / files.POOL_DIR
        self._notify_dir = data_dir / "run" / "notify"
        self._files = ThreadPoolExecutor(
            max_workers=FILE_THREADS, thread_name_prefix="msgstore-files"
        )
        self._fanout = ThreadPoolExecutor(
            max_workers=FANOUT_THREADS, thread_name_prefix="msgstore-fanout"
        )
        #: The fan-out's appends that wait for a lock: never on the fan-out threads, which
        #: the commits that end such waits need.
        self._fanout_waiting = ThreadPoolExecutor(
            max_workers=FANOUT_WAITERS, thread_name_prefix="msgstore-fanout-wait"
        )
        self._pool = files.TempPool(self._tmp_dir, self._pool_dir, self._files, files.POOL_SIZE)
        self._system: Worker[SystemDb] = Worker(
            "msgstore-system",
            lambda: SystemDb(data_dir / "system.db", fault_plan),
            damaged_text=SYSTEM_DAMAGED,
        )
        self._indexes: OrderedDict[AccountId, Worker[AccountIndex]] = OrderedDict()
        #: Idle delivery-only indexes (``deliver_many``); a fan-out thread takes one out
        #: under the lock, uses it alone, and puts it back.
        self._spare: OrderedDict[AccountId, AccountIndex] = OrderedDict()
        self._spare_lock = threading.Lock()
        #: Fan-outs in progress; they run to the end even if their caller is cancelled.
        self._fanouts: set[asyncio.Task[list[_ColdAppend]]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._hub = ChangeHub(loop)
        self._channel: NotifyChannel | None = None
        self._public: AccountInfo | None = None
        self._queue_swept = False  # orphan queue files removed (list_queue)
        self._closed = False

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        fault_plan: FaultPlan | None = None,
        expunged_keep: int = EXPUNGED_KEEP,
        max_open_indexes: int = MAX_OPEN_INDEXES,
    ) -> LocalBackend:
        """Open (creating if needed) the store in ``data_dir`` and run startup recovery:
        stale staging files of dead processes and trees of accounts that do not exist are
        removed. Each index runs its own recovery when it is first opened.

        ``expunged_keep``: expunged UIDs remembered per mailbox for QRESYNC and
        ``changes_since`` (docs/storage-local.md, "The expunge log"); ``max_open_indexes``:
        account indexes kept open at once (least recently used ones are closed beyond it)."""
        loop = asyncio.get_running_loop()
        data_dir = Path(await loop.run_in_executor(None, os.path.abspath, data_dir))
        backend = cls(
            data_dir,
            fault_plan=fault_plan,
            loop=loop,
            expunged_keep=expunged_keep,
            max_open_indexes=max_open_indexes,
        )
        try:
            await loop.run_in_executor(backend._files, backend._make_dirs)
            backend._channel = NotifyChannel(backend._notify_dir, backend._hub)
            backend._public = await backend._system.run(
                SystemDb.public_account, *backend._public_builder()
            )
            await backend._system.run(
                SystemDb.remove_orphan_trees, backend._users_dir, backend._trash_tree
            )
            for stale_dir in (backend._tmp_dir, *backend._pool.dirs):
                await loop.run_in_executor(
                    backend._files, files.remove_stale_temp_files, backend._ops, stale_dir
                )
        except BaseException:
            await backend.close()
            raise
        return backend

    def _make_dirs(self) -> None:
        for path in (
            self.data_dir,
            self._users_dir,
            self._tmp_dir,
            self._pool_dir,
            *self._pool.dirs,
            self._notify_dir,
        ):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def features(self) -> frozenset[Feature]:
        return frozenset(
            {Feature.HARD_LINKS, Feature.RECONSTRUCT, Feature.UID_IMPORT, Feature.STORE_IMPORT}
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Workers first: their queued jobs finish (and notify) before the channel goes.
        workers = list(self._indexes.values())
        self._indexes.clear()
        for worker in workers:
            await worker.close()
        while self._closing:
            await asyncio.gather(*list(self._closing))
        while self._fanouts:
            await asyncio.gather(*list(self._fanouts), return_exceptions=True)
        await self._system.close()
        await asyncio.get_running_loop().run_in_executor(self._fanout, self._close_spares, None)
        if self._channel is not None:
            await self._channel.close()
        self._hub.close()
        await asyncio.get_running_loop().run_in_executor(self._files, self._pool.close)
        self._files.shutdown(wait=False)
        self._fanout.shutdown(wait=False)
        self._fanout_waiting.shutdown(wait=False)

    def account_path(self, account: AccountId) -> Path:
        """Where the account's tree lives on this machine (``management.accounts.TreePaths``):
        ``DATA/users/<aa>/<id>``, or ``DATA/public`` for the public folders."""
        self._check_open()
        return self._tree(account)

    # --- plumbing -----------------------------------------------------------------------------

    def _tree(self, account: AccountId) -> Path:
        if self._public is not None and account == self._public.id:
            return self._public_dir
        return self._users_dir / f"{account % 256:02x}" / str(account)

    def _tree_builder(
        self, *, mailboxes: Sequence[tuple[MailboxName, str]] = ()
    ) -> Callable[[AccountId, str, int | None, int | None], None]:
        def build(
            account: AccountId, name: str, storage: int | None, messages: int | None
        ) -> None:
            tree = self._tree(account)
            try:
                AccountIndex.build(
                    tree,
                    self._ops,
                    account=account,
                    name=name,
                    storage_limit_kib=storage,
                    message_limit=messages,
                    mailboxes=mailboxes,
                )
            except BaseException:
                files.remove_tree_quietly(tree)
                raise

        return build

    def _public_builder(self) -> tuple[TreeBuilder, Callable[[AccountId], None]]:
        """Build the public tree, or adopt an existing valid one: a public folder tree
        without its system.db row (system.db lost or restored from an older backup) keeps
        its mail. Returns (build, remove-after-failure)."""
        adopted = False

        def build(
            account: AccountId, name: str, storage: int | None, messages: int | None
        ) -> None:
            nonlocal adopted
            if AccountIndex.is_valid_tree(self._public_dir):
                log.warning("adopting the existing public folder tree %s", self._public_dir)
                adopted = True
                return
            files.remove_tree_quietly(self._public_dir)
            AccountIndex.build(
                self._public_dir,
                self._ops,
                account=account,
                name=name,
                storage_limit_kib=storage,
                message_limit=messages,
            )

        def remove(_: AccountId) -> None:
            if not adopted:
                files.remove_tree_quietly(self._public_dir)

        return build, remove

    def _trash_tree(self, tree: Path) -> None:
        """Remove an account tree: renamed into ``tmp/`` first (atomic: other processes see
        the account vanish at once), then deleted. A crash leaves it to startup cleanup."""
        trash = self._tmp_dir / (files.temp_name() + ".deleted")
        try:
            self._ops.rename(tree, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("could not move %s aside: %s", tree, exc)
            trash = tree
        files.remove_tree_quietly(trash)

    def _changed(self, account: AccountId, mailbox: MailboxId) -> None:
        """After a commit, on a worker thread: wake watchers here and in other processes."""
        self._hub.publish_threadsafe(account, mailbox)
        if self._channel is not None:
            self._channel.send(account, mailbox)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(ErrorKind.UNAVAILABLE, "The store is closed")

    async def _sys(
        self, fn: Callable[Concatenate[SystemDb, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        self._check_open()
        return await self._system.run(fn, *args, **kwargs)

    async def _idx(
        self,
        account: AccountId,
        fn: Callable[Concatenate[AccountIndex, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn`` on the account's index thread (opening the index if needed)."""
        self._check_open()
        worker = self._indexes.get(account)
        if worker is None:
            worker = await self._open_index(account)
        else:
            self._indexes.move_to_end(account)
        worker.leases += 1
        try:
            return await worker.run(fn, *args, **kwargs)
        finally:
            worker.leases -= 1
            self._evict()

    async def _open_index(
        self, account: AccountId, known: AccountInfo | None = None
    ) -> Worker[AccountIndex]:
        """The account's index worker, opened; ``known``: the account as the caller just read
        it from system.db (delivery, at RCPT), saving the lookup."""
        info = known if known is not None else await self._sys(SystemDb.get_account_by_id, account)
        existing = self._indexes.get(account)
        if existing is not None:  # opened by another task while we looked the account up
            return existing
        tree = self._tree(account)

        def opener() -> AccountIndex:
            return AccountIndex(
                account,
                tree,
                self._ops,
                self._changed,
                defer=worker.defer,
                expunged_keep=self._expunged_keep,
            )

        worker: Worker[AccountIndex] = Worker(
            f"msgstore-index-{account}", opener, damaged_text=INDEX_DAMAGED
        )
        self._indexes[account] = worker
        worker.leases += 1
        try:
            # Mirror the limits of system.db (repairs a crash between the two updates).
            await worker.run(AccountIndex.sync_limits, info.storage_limit_kib, info.message_limit)
        except StoreError as exc:
            if exc.kind is ErrorKind.NOT_FOUND:
                self._drop_index(account)
            raise
        finally:
            worker.leases -= 1
        return worker

    def _evict(self) -> None:
        excess = len(self._indexes) - self._max_open_indexes
        if excess <= 0:
            return
        for account, worker in list(self._indexes.items()):
            if excess <= 0:
                break
            if worker.leases == 0:
                self._drop_index(account)
                excess -= 1

    def _drop_index(self, account: AccountId) -> None:
        worker = self._indexes.pop(account, None)
        if worker is None:
            return
        task = asyncio.get_running_loop().create_task(worker.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- accounts -----------------------------------------------------------------------------

    async def create_account(self, spec: NewAccount) -> AccountInfo:
        mailboxes = [(mailbox_name(n), parse_special_use(s)) for n, s in spec.mailboxes]
        return await self._sys(
            SystemDb.create_account,
            name=spec.name,
            password_hash=spec.password_hash,
            kind=spec.kind,
            manager=spec.manager,
            storage_limit_kib=spec.storage_limit_kib,
            message_limit=spec.message_limit,
            build_tree=self._tree_builder(mailboxes=mailboxes),
            remove_tree=lambda account: files.remove_tree_quietly(self._tree(account)),
        )

    async def get_account(self, name: str) -> AccountInfo:
        return await self._sys(SystemDb.get_account, name)

    async def get_account_by_id(self, account: AccountId) -> AccountInfo:
        return await self._sys(SystemDb.get_account_by_id, account)

    async def list_accounts(self, query: AccountQuery | None = None) -> list[AccountInfo]:
        return await self._sys(SystemDb.list_accounts, query)

    async def update_account(self, name: str, changes: AccountChanges) -> AccountInfo:
        info = await self._sys(SystemDb.update_account, name, changes)
        if changes.storage_limit_kib is not None or changes.message_limit is not None:
            await self._idx(
                info.id, AccountIndex.set_limits, info.storage_limit_kib, info.message_limit
            )
        return info

    async def rename_account(self, old: str, new: str) -> AccountInfo:
        before, after = await self._sys(SystemDb.rename_account, old, new)
        await self._idx(after.id, AccountIndex.set_account_name, after.name)
        if before.name.casefold() != after.name.casefold():
            await self._rename_identifier(before.name, after.name)
        return after

    async def _rename_identifier(self, old: str, new: str) -> None:
        """Carry ACL entries naming a renamed account over to its new name, in every tree."""
        pairs = [(old, new), ("-" + old, "-" + new)]
        keys = [o.casefold() for o, _ in pairs]
        shares = await self._sys(SystemDb.shares_for, keys)
        for owner, mailbox, key in shares:
            new_key = key.replace(old.casefold(), new.casefold(), 1)
            await self._sys(SystemDb.add_share, AccountId(owner), mailbox, new_key)
        for owner in sorted({s[0] for s in shares}):
            with contextlib.suppress(StoreError):
                await self._idx(AccountId(owner), AccountIndex.rename_identifiers, pairs)
        for owner, mailbox, key in shares:
            await self._sys(SystemDb.remove_shares, AccountId(owner), mailbox, [key])

    async def delete_account(self, name: str) -> None:
        info = await self._sys(SystemDb.delete_account, name)
        worker = self._indexes.pop(info.id, None)
        if worker is not None:
            await worker.close()
        await asyncio.get_running_loop().run_in_executor(self._fanout, self._close_spares, info.id)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._files, self._trash_tree, self._tree(info.id))
        self._hub.publish_account(info.id)
        if self._channel is not None:
            self._channel.send(info.id, ALL_MAILBOXES)
        keys = [name.casefold(), "-" + name.casefold(), info.name.casefold()]
        keys += ["-" + info.name.casefold()]
        shares = await self._sys(SystemDb.shares_for, keys)
        for owner in sorted({s[0] for s in shares}):
            try:
                await self._idx(AccountId(owner), AccountIndex.drop_identifiers, sorted(set(keys)))
            except StoreError as exc:
                log.warning("account %s: ACL entries in #%d left: %s", name, owner, exc.detail)
        for owner, mailbox, key in shares:
            await self._sys(SystemDb.remove_shares, AccountId(owner), mailbox, [key])

    async def get_password_hash(self, name: str) -> tuple[AccountInfo, str]:
        return await self._sys(SystemDb.get_password_hash, name)

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        await self._sys(SystemDb.set_password_hash, name, password_hash)

    async def public_account(self) -> AccountInfo:
        self._check_open()
        assert self._public is not None
        return self._public

    # --- mailboxes ----------------------------------------------------------------------------

    async def create_mailbox(
        self, account: AccountId, name: MailboxName, *, special_use: str = ""
    ) -> MailboxInfo:
        return await self._idx(account, AccountIndex.create_mailbox, name, special_use)

    async def delete_mailbox(self, account: AccountId, name: MailboxName) -> None:
        mailbox = await self._idx(account, AccountIndex.delete_mailbox, name)
        await self._sys(SystemDb.remove_shares, account, mailbox, None)

    async def rename_mailbox(self, account: AccountId, old: MailboxName, new: MailboxName) -> None:
        await self._idx(account, AccountIndex.rename_mailbox, old, new)

    async def get_mailbox(self, account: AccountId, name: MailboxName) -> MailboxInfo:
        return await self._idx(account, AccountIndex.get_mailbox, name)

    async def list_mailboxes(self, account: AccountId) -> list[MailboxInfo]:
        return await self._idx(account, AccountIndex.list_mailboxes)

    async def set_subscribed(self, account: AccountId, name: MailboxName, on: bool) -> None:
        await self._idx(account, AccountIndex.set_subscribed, name, on)

    async def list_subscriptions(self, account: AccountId) -> list[MailboxName]:
        return await self._idx(account, AccountIndex.list_subscriptions)

    async def set_special_use(
        self, account: AccountId, name: MailboxName, special_use: str
    ) -> None:
        await self._idx(account, AccountIndex.set_special_use, name, special_use)

    async def mailbox_status(self, account: AccountId, mailbox: MailboxId) -> MailboxStatus:
        return await self._idx(account, AccountIndex.mailbox_status, mailbox)

    # --- messages -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _stage(self, max_octets: int) -> AsyncIterator[StagedMessage]:
        self._check_open()
        staged = LocalStagedMessage(
            pool=self._pool, ops=self._ops, executor=self._files, max_octets=max_octets
        )
        try:
            yield staged
        finally:
            await staged.discard()

    def stage(self, *, max_octets: int) -> AbstractAsyncContextManager[StagedMessage]:
        return self._stage(max_octets)

    async def append(
        self,
        account: AccountId,
        mailbox: MailboxId,
        staged: StagedMessage,
        *,
        flags: Flags = frozenset(),
        internal_date: dt.datetime | None = None,
        uidl: str | None = None,
        check_quota: bool = True,
    ) -> AppendResult:
        if not isinstance(staged, LocalStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        when = internal_date if internal_date is not None else dt.datetime.now().astimezone()
        request = AppendRequest(mailbox, staged.staged_file(), flags, when, uidl, check_quota)
        self._check_open()
        worker = self._indexes.get(account)
        if worker is None:
            worker = await self._open_index(account)
        else:
            self._indexes.move_to_end(account)
        worker.leases += 1
        try:
            # Group commit: appends queued while the index is busy commit together.
            return await worker.run_grouped(AccountIndex.append_batch, request)
        finally:
            worker.leases -= 1
            self._evict()

    async def deliver_many(
        self,
        staged: StagedMessage,
        destinations: Sequence[tuple[AccountInfo, MailboxId | None]],
        *,
        internal_date: dt.datetime | None = None,
        release: bool = False,
    ) -> list[AppendResult | StoreError]:
        """``storage.base.SupportsDeliverMany``: the append of ``append``, per account.

        An account whose index is open (or the only account of the call) goes through its
        index thread like ``append`` (group commit with concurrent appends; INBOX is looked
        up there, not in a separate call). The others -- most of a large fan-out -- are not
        opened into the cache (which they would flush, one thread each) but go through the
        fan-out threads in rounds of ``FANOUT_ROUND`` accounts, each round in three phases
        (:meth:`_fan_out`): open each index without recovery (or take it from the idle
        delivery indexes, ``MAX_DELIVERY_INDEXES``) and link the file inside its open
        transaction; fsync every mailbox directory; commit every transaction and put the
        index back. Each account's order is an append's -- fsync(file) -> link ->
        fsync(dir) -> commit -- but the waits overlap, and one file-system journal commit
        covers the directories of many accounts. Either way every destination is durable
        before this returns. With ``release`` and a single destination, the index thread
        also removes the temp file after the commit.
        """
        if not isinstance(staged, LocalStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        self._check_open()
        when = internal_date if internal_date is not None else dt.datetime.now().astimezone()
        file = staged.staged_file()
        release = release and len(destinations) == 1
        requests = [
            AppendRequest(mailbox, file, frozenset(), when, None, True, release)
            for _, mailbox in destinations
        ]
        by_account: dict[AccountId, tuple[AccountInfo, list[int]]] = {}
        for i, (info, _) in enumerate(destinations):
            by_account.setdefault(info.id, (info, []))[1].append(i)
        results: list[AppendResult | StoreError] = [
            StoreError(ErrorKind.INTERNAL, "Internal storage error")
        ] * len(destinations)
        cold: list[_ColdAppend] = []
        warm: list[tuple[AccountInfo, list[int]]] = []
        for account, (info, positions) in by_account.items():
            if len(by_account) == 1 or account in self._indexes:
                warm.append((info, positions))
            else:
                cold.append(_ColdAppend(info, positions))

        async def via_worker(info: AccountInfo, positions: list[int]) -> None:
            worker = self._indexes.get(info.id)
            try:
                if worker is None:
                    worker = await self._open_index(info.id, info)
                else:
                    self._indexes.move_to_end(info.id)
            except StoreError as exc:
                for i in positions:
                    results[i] = exc
                return
            worker.leases += 1
            try:
                got = await asyncio.gather(
                    *(
                        worker.run_grouped(AccountIndex.append_batch, requests[i])
                        for i in positions
                    ),
                    return_exceptions=True,
                )
            finally:
                worker.leases -= 1
                self._evict()
            for i, one in zip(positions, got, strict=True):
                if isinstance(one, BaseException) and not isinstance(one, StoreError):
                    raise one
                results[i] = one

        fanout: asyncio.Task[list[_ColdAppend]] | None = None
        if cold:
            # Shielded: once indexes are linked into, their commits must follow.
            fanout = asyncio.get_running_loop().create_task(self._fan_out(cold, requests))
            self._fanouts.add(fanout)
            fanout.add_done_callback(self._fanouts.discard)
        await asyncio.gather(*(via_worker(info, positions) for info, positions in warm))
        if fanout is not None:
            for job in await asyncio.shield(fanout):
                assert job.results is not None
                for i, one in zip(job.positions, job.results, strict=True):
                    results[i] = one
        if release and isinstance(results[0], AppendResult):
            staged.released()
        return results

    async def finish_and_deliver(
        self,
        staged: StagedMessage,
        destinations: Sequence[tuple[AccountInfo, MailboxId | None]],
        *,
        internal_date: dt.datetime | None = None,
        release: bool = False,
    ) -> list[AppendResult | StoreError]:
        """``storage.base.SupportsFinishAndDeliver``: ``staged.finish()`` then
        :meth:`deliver_many`. For one destination whose index is open (a delivery to one
        recipient, the common case), the files thread that writes, fsyncs and parses the
        message hands the append straight to the index thread: one trip through the event
        loop instead of two. The durable order is unchanged (fsync(file) before the link).
        Raises what ``finish`` raises."""
        if not isinstance(staged, LocalStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        self._check_open()
        worker = self._indexes.get(destinations[0][0].id) if len(destinations) == 1 else None
        if worker is None:
            await staged.finish()
            return await self.deliver_many(
                staged, destinations, internal_date=internal_date, release=release
            )
        self._indexes.move_to_end(destinations[0][0].id)
        chunk = await staged.last_chunk()
        when = internal_date if internal_date is not None else dt.datetime.now().astimezone()
        mailbox = destinations[0][1]
        loop = asyncio.get_running_loop()
        appended: asyncio.Future[object] = loop.create_future()
        unfinished: list[BaseException] = []  # finish failed: nothing was appended

        def finish_then_append() -> None:
            try:
                file = staged.finish_here(chunk)
            except BaseException as exc:
                unfinished.append(exc)
                loop.call_soon_threadsafe(_fail_future, appended, exc)
                return
            request = AppendRequest(mailbox, file, frozenset(), when, None, True, release)
            try:
                worker.enqueue_grouped(AccountIndex.append_batch, request, appended, loop)
            except RuntimeError:  # the index thread was shut down (the store is closing)
                closing = StoreError(ErrorKind.UNAVAILABLE, "Storage is shutting down")
                loop.call_soon_threadsafe(_fail_future, appended, closing)

        worker.leases += 1
        try:
            self._files.submit(finish_then_append)
            try:
                result = await appended
            except StoreError as exc:
                if unfinished:
                    raise  # as finish() would
                return [exc]
        finally:
            worker.leases -= 1
            self._evict()
        assert isinstance(result, AppendResult)
        if release:
            staged.released()
        return [result]

    def _open_delivery_index(self, info: AccountInfo, *, wait: bool = False) -> AccountIndex:
        """Open an index for deliveries only (no recovery: see ``AccountIndex``), usable
        from any thread, its quota limits mirrored from system.db. Unless ``wait``, a write
        fails at once with SQLITE_BUSY (``busy_timeout`` 0) when another connection holds
        the write lock (``_fan_out``)."""
        index = AccountIndex(
            info.id,
            self._tree(info.id),
            self._ops,
            self._changed,
            expunged_keep=self._expunged_keep,
            recover=False,
            any_thread=True,
        )
        try:
            if not wait:
                index.conn.execute("PRAGMA busy_timeout = 0")
            # Mirror the limits of system.db, as when an index is opened for good.
            index.sync_limits(info.storage_limit_kib, info.message_limit)
        except BaseException:
            index.close()
            raise
        return index

    def _put_spare(self, account: AccountId, index: AccountIndex) -> None:
        """Keep ``index`` open for the next fan-out; close what falls out (on this thread)."""
        surplus: list[AccountIndex] = []
        with self._spare_lock:
            if self._closed or account in self._spare:
                surplus.append(index)
            else:
                self._spare[account] = index
            while len(self._spare) > MAX_DELIVERY_INDEXES:
                surplus.append(self._spare.popitem(last=False)[1])
        for extra in surplus:
            _close_index(extra)

    def _close_spares(self, account: AccountId | None) -> None:
        """Close the idle delivery indexes: one account's (deleted), or all (closing)."""
        with self._spare_lock:
            if account is None:
                gone = list(self._spare.values())
                self._spare.clear()
            else:
                one = self._spare.pop(account, None)
                gone = [] if one is None else [one]
        for index in gone:
            _close_index(index)

    async def _fan_out(
        self, jobs: list[_ColdAppend], requests: list[AppendRequest]
    ) -> list[_ColdAppend]:
        """``deliver_many`` for accounts whose index is not open, in rounds of
        ``FANOUT_ROUND``: (1) on ``FANOUT_OPENERS`` threads, open each index (or take it
        from the idle delivery indexes) and link inside its open transaction; (2) on
        ``FANOUT_THREADS`` threads, fsync every mailbox directory linked into; (3) on as
        many, commit each transaction and put the index back. A failure fails its own
        account (its transaction rolled back, its links removed, its index closed), never
        another. Every job has its results when this returns.

        Phase 1 never waits for a lock: a fan-out holds the write locks of a whole round
        until phase 3, so two fan-outs (or processes) waiting for each other's would stall
        until ``busy_timeout``. An account whose index another connection is writing is
        set aside and appended once the round has committed, waiting then, holding none."""
        for start in range(0, len(jobs), FANOUT_ROUND):
            round_ = jobs[start : start + FANOUT_ROUND]
            await self._on_fanout_threads(
                FANOUT_OPENERS, round_, lambda job: self._cold_prepare(job, requests)
            )
            linked = [job for job in round_ if job.prepared is not None]
            await self._on_fanout_threads(FANOUT_THREADS, linked, self._cold_sync)
            synced = [job for job in linked if job.prepared is not None]
            await self._on_fanout_threads(FANOUT_THREADS, synced, self._cold_commit)
            busy = [job for job in round_ if job.results is None and job.prepared is None]
            await self._on_fanout_threads(
                FANOUT_WAITERS, busy, self._cold_append_waiting, self._fanout_waiting
            )
        return jobs

    async def _on_fanout_threads(
        self,
        threads: int,
        items: Sequence[ItemT],
        fn: Callable[[ItemT], None],
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        """``fn(item)`` for every item, on up to ``threads`` threads of ``executor`` (the
        fan-out threads by default) taking items in turn; returns when all are done. ``fn``
        handles its own errors."""
        if not items:
            return
        queue = deque(items)

        def work() -> None:
            while True:
                try:
                    item = queue.popleft()
                except IndexError:
                    return
                fn(item)

        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(executor or self._fanout, work)
                for _ in range(min(threads, len(items)))
            )
        )

    def _cold_prepare(self, job: _ColdAppend, requests: list[AppendRequest]) -> None:
        """Fan-out phase 1, on a fan-out thread: the index, open; the links, made."""
        try:
            with self._spare_lock:
                job.index = self._spare.pop(job.info.id, None)
            if job.index is not None and job.index.is_stale():
                job.index.close()
                job.index = None
            if job.index is None:
                job.index = self._open_delivery_index(job.info)
            job.request_list = [requests[i] for i in job.positions]
            job.prepared = job.index.prepare_append(job.request_list)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                self._cold_failed(job, exc)
            # else: locked by another connection; appended after the round's commits
        except Exception as exc:  # every job must end with results (a bug: INTERNAL)
            self._cold_failed(job, exc)

    def _cold_append_waiting(self, job: _ColdAppend) -> None:
        """After a round's commits: the accounts phase 1 found locked, appended one by one
        (waiting up to ``busy_timeout`` for the lock, holding no other)."""
        try:
            if job.index is None:
                job.index = self._open_delivery_index(job.info, wait=True)
            else:
                job.index.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            job.results = job.index.append_batch(job.request_list)
            job.index.conn.execute("PRAGMA busy_timeout = 0")
        except Exception as exc:
            self._cold_failed(job, exc)
            return
        self._put_spare(job.info.id, job.index)

    def _cold_sync(self, job: _ColdAppend) -> None:
        """Fan-out phase 2: fsync the directories the links went into."""
        assert job.index is not None
        assert job.prepared is not None
        try:
            for mailbox_dir in job.prepared.mailbox_dirs:
                self._ops.fsync_dir(mailbox_dir)
        except Exception as exc:
            job.index.abort_append(job.prepared)
            self._cold_failed(job, exc)

    def _cold_commit(self, job: _ColdAppend) -> None:
        """Fan-out phase 3: commit (which rolls back and unlinks if it fails); the index is
        kept for the next fan-out."""
        assert job.index is not None
        assert job.prepared is not None
        try:
            job.results = job.index.commit_append(job.prepared)
        except Exception as exc:
            self._cold_failed(job, exc)
            return
        job.prepared = None
        self._put_spare(job.info.id, job.index)

    def _cold_failed(self, job: _ColdAppend, exc: Exception) -> None:
        """Every request of ``job`` fails with ``exc``; its index (rolled back) is closed."""
        if job.index is not None:
            _close_index(job.index)
            job.index = None
        job.prepared = None
        err = store_error(exc, damaged_text=INDEX_DAMAGED)
        if err.kind is ErrorKind.CORRUPTED:
            log.error("index of #%d: %s (%s)", job.info.id, err.public, err.detail)
        elif err.kind is ErrorKind.INTERNAL:
            log.error("index of #%d: %s", job.info.id, err.detail, exc_info=exc)
        elif err.kind is not ErrorKind.NOT_FOUND:
            log.warning("index of #%d: %s", job.info.id, err.detail)
        job.results = [err] * len(job.positions)

    async def snapshot(
        self, account: AccountId, mailbox: MailboxId, *, claim_recent: bool = False
    ) -> Snapshot:
        return await self._idx(account, AccountIndex.snapshot, mailbox, claim_recent)

    async def fetch_meta(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet, want: Want
    ) -> list[MessageMeta]:
        return await self._idx(account, AccountIndex.fetch_meta, mailbox, uids, want)

    async def fetch_flags(
        self, account: AccountId, mailbox: MailboxId, uids: UidSet
    ) -> list[tuple[int, int, Flags]]:
        """``storage.base.SupportsFlagScan``."""
        return await self._idx(account, AccountIndex.fetch_flags, mailbox, uids)

    async def list_maildrop(self, account: AccountId, mailbox: MailboxId) -> list[MaildropRow]:
        return await self._idx(account, AccountIndex.list_maildrop, mailbox)

    @asynccontextmanager
    async def _open_body(
        self, account: AccountId, mailbox: MailboxId, uid: Uid
    ) -> AsyncIterator[BodyReader]:
        opening = asyncio.ensure_future(self._idx(account, AccountIndex.open_body, mailbox, uid))
        try:
            fd, size, head = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        try:
            yield LocalBodyReader(fd, size, head, self._files)
        finally:
            os.close(fd)

    def open_body(
        self, account: AccountId, mailbox: MailboxId, uid: Uid
    ) -> AbstractAsyncContextManager[BodyReader]:
        return self._open_body(account, mailbox, uid)

    async def read_bodies(
        self, account: AccountId, mailbox: MailboxId, uids: Sequence[Uid]
    ) -> dict[Uid, bytes]:
        """``storage.base.SupportsBodyBatch``: one hop to the index thread for all of them."""
        return await self._idx(account, AccountIndex.read_bodies, mailbox, uids)

    async def store_flags(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        op: FlagOp,
        flags: Flags,
        *,
        unchanged_since: ModSeq | None = None,
    ) -> StoreFlagsResult:
        return await self._idx(
            account, AccountIndex.store_flags, mailbox, uids, op, flags, unchanged_since
        )

    async def copy(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        if account == dest_account:
            return await self._idx(
                account, AccountIndex.copy_within, mailbox, uids, dest_mailbox, move=False
            )
        sources = await self._idx(account, AccountIndex.read_for_copy, mailbox, uids)
        return await self._idx(
            dest_account, AccountIndex.insert_copies, dest_mailbox, sources, True
        )

    async def move(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet,
        dest_account: AccountId,
        dest_mailbox: MailboxId,
    ) -> CopyResult:
        """Within one account: one transaction (atomic). Across accounts: copy, then expunge
        the copied sources; a crash between the two leaves the messages in both places (a
        duplicate, never a loss)."""
        if account == dest_account:
            return await self._idx(
                account, AccountIndex.copy_within, mailbox, uids, dest_mailbox, move=True
            )
        result = await self.copy(account, mailbox, uids, dest_account, dest_mailbox)
        if result.source_uids:
            await self.expunge(
                account, mailbox, UidSet.from_uids(result.source_uids), only_deleted=False
            )
        return result

    async def expunge(
        self,
        account: AccountId,
        mailbox: MailboxId,
        uids: UidSet | None = None,
        *,
        only_deleted: bool = True,
    ) -> list[Uid]:
        return await self._idx(account, AccountIndex.expunge, mailbox, uids, only_deleted)

    async def changes_since(
        self, account: AccountId, mailbox: MailboxId, modseq: ModSeq
    ) -> Changes:
        return await self._idx(account, AccountIndex.changes_since, mailbox, modseq)

    # --- acl ----------------------------------------------------------------------------------

    async def get_acl(self, account: AccountId, mailbox: MailboxId) -> dict[str, Rights]:
        return await self._idx(account, AccountIndex.get_acl, mailbox)

    async def set_acl(
        self, account: AccountId, mailbox: MailboxId, identifier: str, rights: Rights
    ) -> None:
        _, key = acl_identifier(identifier)
        if not rights:
            await self.delete_acl(account, mailbox, identifier)
            return
        # Directory first: it may list a share that is not (yet) in the index, never the reverse.
        await self._idx(account, AccountIndex.check_mailbox, mailbox)
        await self._sys(SystemDb.add_share, account, mailbox, key)
        await self._idx(account, AccountIndex.set_acl, mailbox, identifier, rights)

    async def delete_acl(self, account: AccountId, mailbox: MailboxId, identifier: str) -> None:
        _, key = acl_identifier(identifier)
        await self._idx(account, AccountIndex.delete_acl, mailbox, identifier)
        await self._sys(SystemDb.remove_shares, account, mailbox, [key])

    async def shared_with(self, identifiers: Sequence[str]) -> list[tuple[AccountId, MailboxId]]:
        keys = [acl_identifier(i)[1] for i in identifiers]
        shares = await self._sys(SystemDb.shares_for, keys)
        return sorted({(AccountId(o), MailboxId(m)) for o, m, _ in shares})

    # --- quota --------------------------------------------------------------------------------

    async def get_quota(self, account: AccountId) -> QuotaInfo:
        info = await self._sys(SystemDb.get_account_by_id, account)
        used, count, limit, message_limit = await self._idx(account, AccountIndex.get_quota)
        public = self._public is not None and account == self._public.id
        return QuotaInfo(
            root=PUBLIC_QUOTA_ROOT if public else info.name,
            storage_limit_kib=None if limit is None else limit // 1024,
            message_limit=message_limit,
            storage_used_octets=used,
            messages_used=count,
        )

    async def set_quota(
        self, account: AccountId, *, storage_limit_kib: int | None, message_limit: int | None
    ) -> QuotaInfo:
        await self._sys(SystemDb.set_limits, account, storage_limit_kib, message_limit)
        await self._idx(account, AccountIndex.set_limits, storage_limit_kib, message_limit)
        return await self.get_quota(account)

    # --- reconstruct (storage/local/reconstruct.py) ---------------------------------------------

    async def reconstruct(
        self,
        account: AccountId,
        *,
        apply: bool,
        mailbox: MailboxName | None = None,
        new_uidvalidity: bool = False,
        progress: Progress | None = None,
    ) -> ReconstructReport:
        from msgstore.storage.local.reconstruct import reconstruct_account

        return await reconstruct_account(
            self,
            account,
            apply=apply,
            mailbox=mailbox,
            new_uidvalidity=new_uidvalidity,
            progress=progress,
        )

    # --- migration keeps source UIDs (storage/local/uidimport.py) --------------------------------

    async def import_uid_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidvalidity: UidValidity | None,
        uidnext: Uid,
    ) -> None:
        from msgstore.storage.local.uidimport import import_uid_state

        await self._idx(account, import_uid_state, mailbox, uidvalidity, uidnext)

    # --- msgstore store copy keeps UIDs and modseqs (storage/local/storeimport.py) -----------

    async def import_messages(
        self, account: AccountId, mailbox: MailboxId, messages: Sequence[ImportedMessage]
    ) -> None:
        from msgstore.storage.local import storeimport

        rows = []
        for m in messages:
            if not isinstance(m.staged, LocalStagedMessage):
                raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
            rows.append(
                storeimport.ImportRow(
                    m.staged.staged_file(), m.uid, m.modseq, m.flags, m.internal_date, m.uidl
                )
            )
        await self._idx(account, storeimport.import_messages, mailbox, rows)

    async def import_mailbox_state(
        self,
        account: AccountId,
        mailbox: MailboxId,
        *,
        uidnext: Uid,
        highestmodseq: ModSeq,
        keywords: frozenset[str],
    ) -> None:
        from msgstore.storage.local import storeimport

        await self._idx(
            account, storeimport.import_mailbox_state, mailbox, uidnext, highestmodseq, keywords
        )

    async def import_forward(self, entry: ForwardEntry) -> None:
        from msgstore.storage.local import storeimport

        await self._sys(storeimport.import_forward, entry)

    async def import_queued(self, entry: QueueEntry, data: bytes) -> bool:
        from msgstore.storage.local import storeimport

        if await self._sys(storeimport.queued_exists, entry.id):
            return False
        queue_dir = self.data_dir / relay_store.QUEUE_DIR
        loop = asyncio.get_running_loop()
        try:
            name = await loop.run_in_executor(
                self._files, relay_store.write_queue_bytes, self._ops, queue_dir, data
            )
        except OSError as exc:
            raise StoreError(ErrorKind.TEMP, "Cannot write to the relay queue") from exc
        try:
            added = await self._sys(storeimport.insert_queued, entry, name, len(data))
        except BaseException:
            await self._remove_queue_file(name)
            raise
        if not added:
            await self._remove_queue_file(name)
        return added

    async def export_api_tokens(self) -> list[tuple[ApiToken, str]]:
        from msgstore.storage.local import storeimport

        return await self._sys(storeimport.export_api_tokens)

    async def import_api_token(self, token: NewApiToken, ident: int) -> bool:
        from msgstore.storage.local import storeimport

        return await self._sys(storeimport.import_api_token, token, ident)

    async def import_audit(self, records: Sequence[AuditRecord]) -> None:
        from msgstore.storage.local import storeimport

        await self._sys(storeimport.import_audit, list(records))

    async def set_account_created(self, account: AccountId, created: dt.datetime) -> None:
        from msgstore.storage.local import storeimport

        await self._sys(storeimport.set_account_created, int(account), created)

    async def export_web_sessions(self) -> list[StoredWebSession]:
        return await self._sys(web_store.export_web_sessions)

    async def import_web_session(self, account: AccountId, session: StoredWebSession) -> bool:
        return await self._sys(web_store.import_web_session, int(account), session)

    # --- forwarding and the relay queue (storage/local/relay.py) -------------------------------

    async def put_forward(
        self, address: str, destinations: Sequence[str], *, keep_copy: bool, replace: bool
    ) -> ForwardEntry:
        return await self._sys(
            relay_store.put_forward, address, list(destinations), keep_copy, replace
        )

    async def get_forward(self, address: str) -> ForwardEntry:
        return await self._sys(relay_store.get_forward, address)

    async def find_recipient(
        self, forward_keys: Sequence[str], account_names: Sequence[str]
    ) -> tuple[ForwardEntry | None, AccountInfo | None, int]:
        """``storage.base.SupportsRecipientLookup``: a recipient's forwarding entry or
        account in one system-db call (``relay.find_recipient``)."""
        return await self._sys(relay_store.find_recipient, list(forward_keys), list(account_names))

    async def list_forwards(self) -> list[ForwardEntry]:
        return await self._sys(relay_store.list_forwards)

    async def delete_forward(self, address: str) -> None:
        await self._sys(relay_store.delete_forward, address)

    async def enqueue(
        self,
        staged: StagedMessage,
        *,
        sender: str,
        recipients: Sequence[str],
        prefix: bytes = b"",
        skip_octets: int = 0,
    ) -> QueueEntry:
        if not isinstance(staged, LocalStagedMessage):
            raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
        if not recipients:
            raise StoreError(ErrorKind.PARAMS, "A queued message needs recipients")
        source = staged.staged_file().path
        self._check_open()
        loop = asyncio.get_running_loop()
        queue_dir = self.data_dir / relay_store.QUEUE_DIR
        try:
            name, size = await loop.run_in_executor(
                self._files,
                relay_store.write_queue_file,
                self._ops,
                queue_dir,
                source,
                prefix,
                skip_octets,
            )
        except OSError as exc:
            raise StoreError(ErrorKind.TEMP, "Cannot write to the relay queue") from exc
        try:
            return await self._sys(relay_store.insert_queued, name, sender, list(recipients), size)
        except BaseException:
            await loop.run_in_executor(
                self._files, relay_store.remove_queue_file, self._ops, queue_dir, name
            )
            raise

    async def list_queue(self) -> list[QueueEntry]:
        entries = await self._sys(relay_store.list_queue)
        if not self._queue_swept:
            self._queue_swept = True
            known = await self._sys(relay_store.queued_files)
            await asyncio.get_running_loop().run_in_executor(
                self._files,
                relay_store.remove_orphans,
                self._ops,
                self.data_dir / relay_store.QUEUE_DIR,
                known,
            )
        return entries

    async def get_queued(self, ident: int) -> QueueEntry:
        return await self._sys(relay_store.get_queued, ident)

    async def read_queued(self, ident: int) -> bytes:
        name = await self._sys(relay_store.queued_file, ident)
        return await asyncio.get_running_loop().run_in_executor(
            self._files, relay_store.read_queue_file, self.data_dir / relay_store.QUEUE_DIR, name
        )

    async def update_queued(
        self,
        ident: int,
        *,
        done: Sequence[str] = (),
        attempts: int | None = None,
        next_attempt: dt.datetime | None = None,
        last_error: str | None = None,
        dsn: StagedMessage | None = None,
    ) -> QueueEntry | None:
        dsn_file: tuple[str, int] | None = None
        if dsn is not None:  # its file first; its row commits with the update (relay.py)
            if not isinstance(dsn, LocalStagedMessage):
                raise StoreError(ErrorKind.PARAMS, "The message was not staged by this store")
            self._check_open()
            try:
                dsn_file = await asyncio.get_running_loop().run_in_executor(
                    self._files,
                    relay_store.write_queue_file,
                    self._ops,
                    self.data_dir / relay_store.QUEUE_DIR,
                    dsn.staged_file().path,
                    b"",
                    0,
                )
            except OSError as exc:
                raise StoreError(ErrorKind.TEMP, "Cannot write to the relay queue") from exc
        try:
            entry, gone = await self._sys(
                relay_store.update_queued,
                ident,
                list(done),
                attempts,
                next_attempt,
                last_error,
                dsn_file,
            )
        except BaseException:
            if dsn_file is not None:
                await self._remove_queue_file(dsn_file[0])
            raise
        if gone is not None:
            await self._remove_queue_file(gone)
        return entry

    async def delete_queued(self, ident: int) -> None:
        await self._remove_queue_file(await self._sys(relay_store.delete_queued, ident))

    def runner_lock(self, name: str) -> AbstractAsyncContextManager[RunnerLock | None]:
        return relay_store.runner_lock(self.data_dir / "run", name)

    async def _remove_queue_file(self, name: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._files,
            relay_store.remove_queue_file,
            self._ops,
            self.data_dir / relay_store.QUEUE_DIR,
            name,
        )

    # --- web sessions and last logins (storage/local/websessions.py) ---------------------------

    async def create_web_session(self, session: NewWebSession) -> None:
        await self._sys(web_store.create_web_session, session)

    async def get_web_session(self, id_hash: str) -> WebSession | None:
        return await self._sys(web_store.get_web_session, id_hash)

    async def touch_web_session(self, id_hash: str, last_seen: dt.datetime) -> None:
        await self._sys(web_store.touch_web_session, id_hash, last_seen)

    async def delete_web_session(self, id_hash: str) -> None:
        await self._sys(web_store.delete_web_session, id_hash)

    async def delete_web_sessions(self, account: AccountId) -> int:
        return await self._sys(web_store.delete_web_sessions, int(account))

    async def expire_web_sessions(
        self, *, idle_before: dt.datetime, created_before: dt.datetime
    ) -> int:
        return await self._sys(web_store.expire_web_sessions, idle_before, created_before)

    async def record_logins(self, logins: Sequence[LoginRecord]) -> None:
        await self._sys(web_store.record_logins, list(logins))

    async def last_logins(self, account: AccountId, *, limit: int = 20) -> list[LoginRecord]:
        return await self._sys(web_store.last_logins, int(account), limit)

    # --- API tokens (storage/local/tokens.py) ---------------------------------------------------

    async def create_api_token(self, token: NewApiToken) -> ApiToken:
        return await self._sys(token_store.create_api_token, token)

    async def find_api_token(self, token_hash: str) -> tuple[ApiToken, AccountInfo] | None:
        return await self._sys(token_store.find_api_token, token_hash)

    async def list_api_tokens(self, account: AccountId | None = None) -> list[ApiToken]:
        return await self._sys(
            token_store.list_api_tokens, None if account is None else int(account)
        )

    async def delete_api_token(self, token_id: int) -> None:
        await self._sys(token_store.delete_api_token, token_id)

    # --- audit log (storage/local/audit.py) ------------------------------------------------------

    async def append_audit(self, record: AuditRecord) -> None:
        from msgstore.storage.local import audit

        await self._sys(audit.append_audit, record)

    async def list_audit(
        self,
        *,
        since: dt.datetime | None = None,
        actor: str | None = None,
        operation: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        from msgstore.storage.local import audit

        return await self._sys(audit.list_audit, since, actor, operation, limit, offset)

    # --- per-account backup (storage/local/backup.py) -------------------------------------------

    async def export_account(
        self, account: AccountId, destination: Path, *, progress: Progress | None = None
    ) -> ExportSummary:
        from msgstore.storage.local import backup

        return await backup.export_account(self, account, destination, progress)

    async def restore_account(
        self, account: AccountId, source: Path, *, progress: Progress | None = None
    ) -> int:
        from msgstore.storage.local import backup

        return await backup.restore_account(self, account, source, progress)

    # --- notifications ------------------------------------------------------------------------

    @asynccontextmanager
    async def _watch(self, account: AccountId, mailbox: MailboxId) -> AsyncIterator[ChangeWatcher]:
        self._check_open()
        assert self._channel is not None
        self._channel.listen(asyncio.get_running_loop())
        async with self._hub.watch(account, mailbox) as watcher:
            yield watcher

    def watch(
        self, account: AccountId, mailbox: MailboxId
    ) -> AbstractAsyncContextManager[ChangeWatcher]:
        return self._watch(account, mailbox)


def _fail_future(future: asyncio.Future[object], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (5, 6)
    return "locked" in str(exc)


def _close_index(index: AccountIndex) -> None:
    try:
        index.close()
    except sqlite3.Error as exc:
        log.warning("closing the index of #%d failed: %s", index.account, exc)


def _close_opened(task: asyncio.Future[tuple[int, int, bytes]]) -> None:
    """A cancelled open_body whose file was opened anyway: close the descriptor."""
    if not task.cancelled() and task.exception() is None:
        os.close(task.result()[0])
