"""Contract: the management audit log (``append_audit``/``list_audit``) on every backend."""

from __future__ import annotations

import datetime as dt

from msgstore.storage.base import AuditRecord, Backend
from tests.storage.support import StoreSpec

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)


def record(n: int, *, actor: str = "os:root", operation: str = "account add") -> AuditRecord:
    return AuditRecord(
        ts=T0 + dt.timedelta(minutes=n),
        actor=actor,
        origin="cli",
        operation=operation,
        params=f'{{"name": "u{n}"}}',
        outcome="ok" if n % 2 else "params",
        message="" if n % 2 else "bad",
    )


async def test_records_come_back_newest_first_and_exact(backend: Backend) -> None:
    for n in range(5):
        await backend.append_audit(record(n))
    got = await backend.list_audit()
    assert got == [record(n) for n in reversed(range(5))]
    assert got[0].ts.tzinfo is not None


async def test_filters_limit_and_offset(backend: Backend) -> None:
    await backend.append_audit(record(0, actor="bob"))
    await backend.append_audit(record(1, operation="quota set"))
    await backend.append_audit(record(2, actor="bob", operation="quota set"))
    await backend.append_audit(record(3))
    assert [r.ts for r in await backend.list_audit(actor="bob")] == [record(2).ts, record(0).ts]
    assert len(await backend.list_audit(operation="quota set")) == 2
    assert [r.ts for r in await backend.list_audit(since=record(2).ts)] == [
        record(3).ts,
        record(2).ts,
    ]
    assert [r.ts for r in await backend.list_audit(limit=2, offset=1)] == [
        record(2).ts,
        record(1).ts,
    ]
    assert await backend.list_audit(actor="nobody") == []


async def test_records_are_durable_across_handles(store_spec: StoreSpec, backend: Backend) -> None:
    await backend.append_audit(record(7))
    other = await store_spec.open()
    try:
        assert await other.list_audit() == [record(7)]
    finally:
        await other.close()
