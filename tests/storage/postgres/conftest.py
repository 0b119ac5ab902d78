"""Fixtures of the PostgreSQL backend's own tests: a fresh schema per test (dropped after)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage.pg import database_dsn, pg_database, pg_schema, schema_dsn


@pytest.fixture
def pg_name() -> Iterator[str]:
    """A schema with the msgstore tables, in the ``test`` database."""
    with pg_schema() as name:
        yield name


@pytest.fixture
def pg_empty() -> Iterator[str]:
    """An empty schema (no tables: ``msgstore db upgrade`` has not run)."""
    with pg_schema(upgrade=False) as name:
        yield name


@pytest.fixture
def pg_own_database() -> Iterator[str]:
    """The DSN of an empty database of the test's own (see ``tests.storage.pg.pg_database``)."""
    with pg_database() as name:
        yield database_dsn(name)


def pg_settings(name: str) -> dict[str, object]:
    """Server settings selecting the postgres backend on schema ``name``."""
    return {
        "storage.backend": "postgres",
        "storage.dsn": schema_dsn(name),
        "storage.pool_min": 1,
        "storage.pool_max": 8,
    }
