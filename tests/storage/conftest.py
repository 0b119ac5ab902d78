"""Fixtures of the storage contract suite (STYLE.md §14.4).

``backend`` is parametrised over every backend in ``support.BACKENDS``; each test gets a fresh
store in its own ``tmp_path``. Contract tests use only ``storage.base``; behaviour specific to
one backend lives in its own directory (``tests/storage/local/``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.core.ids import MailboxId
from msgstore.storage.base import Backend
from tests.storage.support import BACKENDS, StoreSpec, inbox_of, new_account


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    name = request.param
    assert isinstance(name, str)
    return StoreSpec(name=name, data_dir=tmp_path / "data")


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
