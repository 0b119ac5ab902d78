"""SQLite plumbing: one thread per database file, connection settings, transactions, errors.

A :class:`Worker` owns one state object (an open database and what belongs to it) and runs
every call on its own single thread, so a connection is only ever used by the thread that
opened it and no SQLite call runs on the event loop (STYLE.md §3.3). Calls on one worker run
in submission order; two workers run in parallel.

Connections use ``isolation_level=None`` with explicit ``BEGIN IMMEDIATE``/``COMMIT`` (the
implicit transactions of Python 3.11's sqlite3 are a trap), WAL, ``synchronous=FULL`` (a
committed transaction survives power loss), ``busy_timeout`` and ``foreign_keys``
(ECOSYSTEM.md §6).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, Final, Generic, ParamSpec, Protocol, TypeVar
from urllib.parse import quote

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.storage.local.faults import FaultPlan

log = logging.getLogger("msgstore.storage.local")

BUSY_TIMEOUT_MS: Final = 10_000
#: Public text for an index SQLite cannot read (RELIABILITY.md §7 case 37).
INDEX_DAMAGED: Final = "mailbox index damaged; run msgstore reconstruct"
SYSTEM_DAMAGED: Final = "system database damaged; restore it from a backup"
_CORRUPT_CODES: Final = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def connect(path: Path, *, create: bool, any_thread: bool = False) -> sqlite3.Connection:
    """Open a database with the store's settings; never creates the file unless ``create``.

    ``any_thread``: the connection may be used by one thread after another (never by two at
    once: the caller hands it over under a lock), not only by the one that opened it."""
    mode = "rwc" if create else "rw"
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode={mode}",
        uri=True,
        isolation_level=None,
        cached_statements=256,
        check_same_thread=not any_thread,
        timeout=BUSY_TIMEOUT_MS / 1000,  # busy_timeout, without a statement to prepare
    )
    try:
        _set_wal(conn)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, waiting like ``busy_timeout`` would.

    Switching a new, still empty file to WAL needs its exclusive lock, and SQLite answers
    SQLITE_BUSY at once (no busy handler) when another process is doing the same: several
    server workers opening a fresh data directory together.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


@contextmanager
def write_transaction(conn: sqlite3.Connection, faults: FaultPlan | None) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; any exception rolls back and propagates.

    IMMEDIATE takes the write lock up front (waiting up to ``busy_timeout``), so a transaction
    never fails half-way with SQLITE_BUSY when it first writes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        commit(conn, faults)
    except BaseException:
        rollback(conn)
        raise


def commit(conn: sqlite3.Connection, faults: FaultPlan | None) -> None:
    """``COMMIT`` the transaction ``BEGIN IMMEDIATE`` opened (the ``commit`` fault point);
    on failure the caller calls :func:`rollback`. For a transaction that cannot be one
    ``with`` block: a fan-out commits many indexes' transactions after all their links."""
    if faults is not None:
        faults.check("commit")
    conn.execute("COMMIT")


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any; a failure is logged, never raised."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback failed: %s", exc)


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A consistent read of several statements (WAL readers never block the writer)."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def store_error(exc: BaseException, *, damaged_text: str) -> StoreError:
    """The StoreError for a low-level failure: CORRUPTED for damage, TEMP for I/O and locks."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error) and is_corruption(exc):
        return StoreError(ErrorKind.CORRUPTED, damaged_text, detail=f"{type(exc).__name__}: {exc}")
    if isinstance(exc, sqlite3.OperationalError | OSError):
        return StoreError(
            ErrorKind.TEMP,
            "Temporary storage failure, try again later",
            detail=f"{type(exc).__name__}: {exc}",
        )
    return StoreError(
        ErrorKind.INTERNAL, "Internal storage error", detail=f"{type(exc).__name__}: {exc}"
    )


class ThreadState(Protocol):
    """What a worker owns: something that can tell it went stale, and be closed."""

    def is_stale(self) -> bool: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=ThreadState)
P = ParamSpec("P")
T = TypeVar("T")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Worker(Generic[S]):
    """One thread, one lazily opened state object; ``run`` executes a function on it.

    The state is opened on first use and reopened when ``is_stale()`` says the file under it
    was replaced (reconstruct renames a rebuilt index into place) or after it was found
    damaged. Failures come back as :class:`StoreError` (see :func:`store_error`).
    """

    def __init__(self, name: str, opener: Callable[[], S], *, damaged_text: str) -> None:
        self.name = name
        self._opener = opener
        self._damaged_text = damaged_text
        self._state: S | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.leases = 0
        self._closed = False
        self._queue_lock = threading.Lock()
        self._queued: list[tuple[object, asyncio.Future[object]]] = []
        self._drain_queued = False

    async def run(
        self, fn: Callable[Concatenate[S, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._closed:
            raise StoreError(ErrorKind.UNAVAILABLE, "Storage is shutting down")
        loop = asyncio.get_running_loop()
        call = functools.partial(self._call, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    async def run_grouped(
        self, fn: Callable[[S, list[ItemT]], list[ResultT | StoreError]], item: ItemT
    ) -> ResultT:
        """Run ``fn`` on a list of items that includes ``item`` and whatever other calls
        queued meanwhile (one ``fn`` per worker uses this: the index's group commit).

        A call queued while the worker is busy waits for the next drain, which takes every
        item queued by the time it starts: under load, one ``fn`` call serves many callers;
        alone, a call runs at once with a list of one. ``fn`` returns one result or
        StoreError per item; if it raises, every item of that drain gets the error.
        """
        if self._closed:
            raise StoreError(ErrorKind.UNAVAILABLE, "Storage is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self.enqueue_grouped(fn, item, future, loop)
        result = await future
        return result  # type: ignore[return-value]

    def enqueue_grouped(
        self,
        fn: Callable[[S, list[ItemT]], list[ResultT | StoreError]],
        item: ItemT,
        future: asyncio.Future[object],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """:meth:`run_grouped` from any thread: queue ``item``; ``future`` (of ``loop``) gets
        its result or error on the loop. Lets another worker thread hand its result on to
        this one without a trip through the event loop."""
        with self._queue_lock:
            self._queued.append((item, future))
            start = not self._drain_queued
            self._drain_queued = True
        if start:
            self._executor.submit(self._drain, fn, loop)

    def _drain(
        self,
        fn: Callable[[S, list[ItemT]], list[ResultT | StoreError]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        with self._queue_lock:
            batch, self._queued = self._queued, []
            self._drain_queued = False
        items: list[ItemT] = [item for item, _ in batch]  # type: ignore[misc]
        outcome: list[object]
        try:
            outcome = list(self._call(fn, items))
            if len(outcome) != len(batch):
                raise StoreError(ErrorKind.INTERNAL, "Internal storage error", detail=str(fn))
        except BaseException as exc:  # every caller of this drain sees the failure
            outcome = [exc] * len(batch)
        loop.call_soon_threadsafe(_settle, [f for _, f in batch], outcome)

    def defer(self, fn: Callable[[], None]) -> None:
        """From the worker's thread: run ``fn`` on it after the current call has returned its
        result (housekeeping off the caller's path: unlinks after an expunge). Later calls
        queue behind it, so they see its effects."""
        try:
            self._executor.submit(self._deferred, fn)
        except RuntimeError:  # shutting down: do it now
            self._deferred(fn)

    def _deferred(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (sqlite3.Error, OSError, StoreError) as exc:
            log.warning("%s: deferred work failed: %s", self.name, exc)

    def _call(self, fn: Callable[Concatenate[S, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            state = self._state
            if state is not None and state.is_stale():
                self._drop()
                state = None
            if state is None:
                state = self._opener()
                self._state = state
            return fn(state, *args, **kwargs)
        except StoreError as exc:
            if exc.kind is ErrorKind.CORRUPTED:
                log.error("%s: %s (%s)", self.name, exc.public, exc.detail)
                self._drop()
            raise
        except (sqlite3.Error, OSError) as exc:
            err = store_error(exc, damaged_text=self._damaged_text)
            if err.kind is ErrorKind.CORRUPTED:
                log.error("%s: %s (%s)", self.name, err.public, err.detail)
                self._drop()
            else:
                log.warning("%s: %s", self.name, err.detail)
            raise err from exc

    def _drop(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            try:
                state.close()
            except (sqlite3.Error, OSError) as exc:
                log.warning("%s: close failed: %s", self.name, exc)

    async def close(self) -> None:
        """Close the state on its own thread (after every queued call), then let the thread
        end. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._drop)
        finally:
            self._executor.shutdown(wait=False)


def _settle(futures: list[asyncio.Future[object]], outcome: list[object]) -> None:
    """On the event loop: hand each caller of a drain its result or its error."""
    for future, result in zip(futures, outcome, strict=True):
        if future.done():  # the caller was cancelled; its item ran anyway
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
