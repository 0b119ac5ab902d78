"""The connection pool, transactions with retry, and asyncpg errors as ``StoreError``.

asyncpg is imported here and only here (and by the modules of this package): the CLI does not
pay for it unless the postgres backend is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]

from msgstore.core.errors import ErrorKind, StoreError

log = logging.getLogger("msgstore.storage.postgres")

T = TypeVar("T")

#: Attempts of a transaction that hit a deadlock or a serialization failure.
RETRIES: Final = 8
UNAVAILABLE_TEXT: Final = "The mail database is unavailable; try again later"
BUSY_TEXT: Final = "The mail database is busy; try again later"

_CONNECTION_ERRORS: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.ConnectionFailureError,
    ConnectionError,
    OSError,
)
_CONFIG_ERRORS: Final = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
)
_RETRY_ERRORS: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def store_error(exc: BaseException) -> StoreError:
    """Map an asyncpg (or socket) error to the store's error family."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return StoreError(
            ErrorKind.NOT_POSSIBLE,
            "The database schema is older than this msgstore: run msgstore db upgrade",
            detail=str(exc),
        )
    if isinstance(exc, _CONFIG_ERRORS):  # the DSN names no database or a user not let in
        return StoreError(
            ErrorKind.UNAVAILABLE,
            f"Cannot connect to the mail database ([storage] dsn): {exc}",
            detail=repr(exc),
        )
    if isinstance(exc, TimeoutError):  # before OSError, its base class
        return StoreError(ErrorKind.TEMP, BUSY_TEXT, detail="no free database connection")
    if isinstance(exc, _CONNECTION_ERRORS):
        return StoreError(ErrorKind.UNAVAILABLE, UNAVAILABLE_TEXT, detail=repr(exc))
    if isinstance(
        exc,
        (
            *_RETRY_ERRORS,
            asyncpg.QueryCanceledError,
            asyncpg.LockNotAvailableError,
            asyncpg.exceptions.InsufficientResourcesError,
            asyncpg.TooManyConnectionsError,
        ),
    ):
        return StoreError(ErrorKind.TEMP, BUSY_TEXT, detail=repr(exc))
    return StoreError(ErrorKind.INTERNAL, "Internal database error", detail=repr(exc))


def is_store_failure(exc: BaseException) -> bool:
    return isinstance(exc, (asyncpg.PostgresError, TimeoutError, *_CONNECTION_ERRORS))


async def _no_reset(conn: Any) -> None:
    """Connections go back to the pool as they came: every use is one finished transaction
    that sets nothing on the session (LISTEN has its own connection), so asyncpg's reset
    query (``RESET ALL; UNLISTEN *; ...``, one more round trip per use) is not needed."""


class Database:
    """The pool of one backend instance."""

    def __init__(self, pool: Any, acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self._closed = False

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int, max_size: int, acquire_timeout: float
    ) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                max_inactive_connection_lifetime=300,
                timeout=acquire_timeout,
                reset=_no_reset,
            )
        except Exception as exc:
            raise store_error(exc) from exc
        return cls(pool, acquire_timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.pool.close(), 5)
        except Exception:
            self.pool.terminate()

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        conn = await self._take()
        try:
            yield conn
        finally:
            await self._give_back(conn)

    async def _take(self) -> Any:
        if self._closed:
            raise StoreError(ErrorKind.UNAVAILABLE, "The store is closed")
        try:
            return await self.pool.acquire(timeout=self.acquire_timeout)
        except Exception as exc:
            raise store_error(exc) from exc

    async def _give_back(self, conn: Any) -> None:
        try:
            await self.pool.release(conn)
        except Exception as exc:  # a broken connection: the pool replaces it
            log.debug("release failed: %r", exc)

    async def run(
        self,
        fn: Callable[[Any], Awaitable[T]],
        *,
        write: bool = True,
        isolation: str = "read_committed",
    ) -> T:
        """Run ``fn(conn)`` in one transaction and commit.

        Retried on a deadlock or serialization failure, and once on a fresh connection when
        the connection turns out to be dead before the COMMIT was sent (a database restart:
        the pool still held connections to the old server). A connection lost *during* the
        COMMIT is not retried (the outcome is unknown; the caller gets UNAVAILABLE and
        acknowledges nothing). Anything that fails rolls the whole transaction back: nothing
        half-written becomes visible.
        """
        reconnected = False
        attempt = 0
        # A read at READ COMMITTED needs no snapshot across its statements: no BEGIN/COMMIT
        # (two round trips less), each statement sees what was committed when it started.
        bare = not write and isolation == "read_committed"
        while True:
            committing = False
            try:
                # _take/_give_back rather than ``acquire()``: an async context manager per
                # statement costs more CPU than the pool itself.
                conn = await self._take()
                try:
                    if bare:
                        return await fn(conn)
                    tx = conn.transaction(isolation=isolation, readonly=not write)
                    await tx.start()
                    try:
                        result = await fn(conn)
                    except BaseException:
                        if not conn.is_closed():
                            with contextlib.suppress(Exception):
                                await tx.rollback()
                        raise
                    committing = True
                    await tx.commit()
                    return result
                finally:
                    await self._give_back(conn)
            except _RETRY_ERRORS as exc:
                attempt += 1
                if attempt >= RETRIES:
                    raise store_error(exc) from exc
                await asyncio.sleep(0.005 * attempt)
            except StoreError:
                raise
            except Exception as exc:
                if not is_store_failure(exc):
                    raise
                lost = isinstance(exc, _CONNECTION_ERRORS) and not isinstance(exc, TimeoutError)
                if lost and not committing and not reconnected:
                    reconnected = True
                    log.info("database connection lost (%r); retrying on a new one", exc)
                    continue
                raise store_error(exc) from exc
