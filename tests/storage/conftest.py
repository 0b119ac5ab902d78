"""Fixtures of the storage contract suite (STYLE.md §14.4).

``backend`` is parametrised over every backend in ``support.BACKENDS``; each test gets a fresh
store in its own ``tmp_path``. Contract tests use only ``storage.base``; behaviour specific to
one backend lives in its own directory (``tests/storage/local/``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.ids import MailboxId
from msgstore.storage.base import Backend
from tests.storage.pg import empty_schema, pg_schema, write_config
from tests.storage.support import BACKENDS, CONFIG_NAME, StoreSpec, inbox_of, new_account


@pytest.fixture(params=BACKENDS)
async def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreSpec]:
    """Local: a data directory. Postgres: the session's schema in the ``test`` database,
    emptied, named by a msgstore.toml next to the data directory (dropped after the
    session)."""
    name = request.param
    assert isinstance(name, str)
    spec = StoreSpec(name=name, data_dir=tmp_path / "data")
    if name != "postgres":
        yield spec
        return
    schema = request.getfixturevalue("pg_contract_schema")
    assert isinstance(schema, str)
    await empty_schema(schema)
    write_config(tmp_path / CONFIG_NAME, schema, spec.data_dir)
    yield spec


@pytest.fixture(scope="session")
def pg_contract_schema() -> Iterator[str]:
    """One schema for the whole session's postgres contract tests, emptied before each."""
    with pg_schema() as name:
        yield name


@pytest.fixture
async def backend(store_spec: StoreSpec) -> AsyncIterator[Backend]:
    opened = await store_spec.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def alice(backend: Backend) -> AccountInfo:
    return await new_account(backend, "alice")


@pytest.fixture
async def inbox(backend: Backend, alice: AccountInfo) -> MailboxId:
    return await inbox_of(backend, alice.id)
