"""The management audit log in system.db (table ``audit_log``, migration "audit_log").

Blocking functions run on the system worker thread (``LocalBackend._sys``); each append is one
short write transaction, so a record is durable when ``append_audit`` returns.
"""

from __future__ import annotations

import datetime as dt

from msgstore.storage.base import AuditRecord
from msgstore.storage.local.db import read_transaction, write_transaction
from msgstore.storage.local.system import SystemDb

_MICRO = 1_000_000


def _micros(ts: dt.datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * _MICRO + delta.microseconds


def _datetime(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def append_audit(db: SystemDb, record: AuditRecord) -> None:
    with write_transaction(db.conn, db.faults):
        db.conn.execute(
            "INSERT INTO audit_log(ts, actor, origin, operation, params, outcome, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                _micros(record.ts),
                record.actor,
                record.origin,
                record.operation,
                record.params,
                record.outcome,
                record.message,
            ),
        )


def list_audit(
    db: SystemDb,
    since: dt.datetime | None,
    actor: str | None,
    operation: str | None,
    limit: int,
    offset: int,
) -> list[AuditRecord]:
    where: list[str] = []
    values: list[object] = []
    if since is not None:
        where.append("ts >= ?")
        values.append(_micros(since))
    if actor is not None:
        where.append("actor = ?")
        values.append(actor)
    if operation is not None:
        where.append("operation = ?")
        values.append(operation)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    # The clauses come from the fixed strings above, never from input.
    sql = (
        "SELECT ts, actor, origin, operation, params, outcome, message FROM audit_log "  # noqa: S608
        + clause
        + "ORDER BY id DESC LIMIT ? OFFSET ?"
    )
    with read_transaction(db.conn):
        rows = db.conn.execute(sql, (*values, max(0, limit), max(0, offset))).fetchall()
    return [
        AuditRecord(
            ts=_datetime(int(r[0])),
            actor=str(r[1]),
            origin=str(r[2]),
            operation=str(r[3]),
            params=str(r[4]),
            outcome=str(r[5]),
            message=str(r[6]),
        )
        for r in rows
    ]
