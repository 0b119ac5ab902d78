"""Named schema migrations: a table added after a store was created appears when it is
opened again, once, in system.db and in every index.db."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from msgstore.storage.local import LocalBackend, schema
from tests.storage.local.conftest import tree_of
from tests.storage.support import new_account

NEW_SYSTEM_TABLE = ("test-extra", "CREATE TABLE test_extra (k TEXT PRIMARY KEY, v TEXT)")
NEW_INDEX_TABLE = ("test-index-extra", "CREATE TABLE test_index_extra (k INTEGER PRIMARY KEY)")


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def applied(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key FROM meta WHERE key LIKE 'migration:%' ORDER BY key")
        return [r[0] for r in rows]


async def test_an_old_store_gains_new_tables_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await LocalBackend.open(data_dir)
    alice = await new_account(backend, "alice")
    await backend.close()
    index = tree_of(data_dir, alice.id) / "index.db"
    assert "test_extra" not in tables(data_dir / "system.db")

    monkeypatch.setattr(schema, "SYSTEM_MIGRATIONS", (*schema.SYSTEM_MIGRATIONS, NEW_SYSTEM_TABLE))
    monkeypatch.setattr(schema, "INDEX_MIGRATIONS", (*schema.INDEX_MIGRATIONS, NEW_INDEX_TABLE))
    for _ in range(2):  # the second open finds nothing to do (CREATE TABLE would fail twice)
        backend = await LocalBackend.open(data_dir)
        await backend.mailbox_status(alice.id, (await backend.list_mailboxes(alice.id))[0].id)
        await backend.close()

    assert "test_extra" in tables(data_dir / "system.db")
    assert "migration:test-extra" in applied(data_dir / "system.db")
    assert "test_index_extra" in tables(index)
    assert "migration:test-index-extra" in applied(index)


async def test_a_new_store_is_created_with_every_migration(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "SYSTEM_MIGRATIONS", (*schema.SYSTEM_MIGRATIONS, NEW_SYSTEM_TABLE))
    monkeypatch.setattr(schema, "INDEX_MIGRATIONS", (*schema.INDEX_MIGRATIONS, NEW_INDEX_TABLE))
    backend = await LocalBackend.open(data_dir)
    alice = await new_account(backend, "alice")
    await backend.close()
    assert "migration:test-extra" in applied(data_dir / "system.db")
    assert "migration:test-index-extra" in applied(tree_of(data_dir, alice.id) / "index.db")
