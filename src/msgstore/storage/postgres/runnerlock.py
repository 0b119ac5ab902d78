"""``Backend.runner_lock`` on PostgreSQL: a session-level advisory lock on a connection of its
own, so that one process among every front end sharing the database runs a task (the relay
queue runner).

The lock is ``pg_try_advisory_lock`` on a 64-bit key hashed from the task's name and the
schema in use (``current_schema()``), so several msgstore installations in one database, each
in its own schema, do not take each other's lock. It is held as long as the connection lives:

- the process exits or is killed (kill -9 included): its operating system closes the socket,
  PostgreSQL ends the session and the lock is free at once;
- the machine vanishes without closing the socket: PostgreSQL notices through the TCP
  keepalives this connection asks for (:data:`KEEPALIVES`), within about
  ``idle + interval * count`` seconds, and frees the lock then;
- the runner asks :meth:`PgRunnerLock.held` before each pass: a query on the connection,
  False once it fails, so a runner whose connection broke stops working the queue.

A connection pooler in transaction mode (PgBouncer ``pool_mode = transaction``) cannot hold a
session lock: the DSN must reach PostgreSQL itself, or a pooler in session mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from msgstore.storage.postgres.db import store_error

log = logging.getLogger("msgstore.storage.postgres")

#: Server-side TCP keepalives of the lock's connection (seconds, seconds, probes): a machine
#: that vanished loses its lock after about 10 + 5 * 3 = 25 s.
KEEPALIVES: Final = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
_TRY_LOCK: Final = (
    "SELECT pg_try_advisory_lock("
    "hashtextextended('msgstore.' || $1 || ':' || current_schema(), 0))"
)


class PgRunnerLock:
    """The lock, held by :attr:`conn`'s session."""

    def __init__(self, conn: Any, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout
        self._lost = False

    async def held(self) -> bool:
        if self._lost:
            return False
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self._timeout)
        except (Exception, TimeoutError) as exc:
            log.warning("runner lock: its connection failed (%r); the lock is lost", exc)
            self._lost = True
        return not self._lost


@asynccontextmanager
async def runner_lock(dsn: str, name: str, *, wait: float) -> AsyncIterator[PgRunnerLock | None]:
    """Connect, try the lock once; yield it (or None), then close the connection, which
    releases the lock."""
    try:
        conn = await asyncpg.connect(
            dsn,
            timeout=wait,
            server_settings={**KEEPALIVES, "application_name": f"msgstore {name} lock"},
        )
    except Exception as exc:
        raise store_error(exc) from exc
    try:
        try:
            got = await asyncio.wait_for(conn.fetchval(_TRY_LOCK, name), wait)
        except Exception as exc:
            raise store_error(exc) from exc
        yield PgRunnerLock(conn, wait) if got else None
    finally:
        try:
            await asyncio.wait_for(conn.close(), wait)
        except Exception:
            conn.terminate()
        except BaseException:  # cancelled while closing
            conn.terminate()
            raise
