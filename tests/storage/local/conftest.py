"""Fixtures for tests of the local backend itself (layout, hard links, recovery, faults)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from msgstore.core.accounts import AccountInfo
from msgstore.storage.local import LocalBackend
from tests.storage.support import new_account


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def local(data_dir: Path) -> AsyncIterator[LocalBackend]:
    backend = await LocalBackend.open(data_dir)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def alice(local: LocalBackend) -> AccountInfo:
    return await new_account(local, "alice")


def tree_of(data_dir: Path, account: int) -> Path:
    return data_dir / "users" / f"{account % 256:02x}" / str(account)
