"""Administration of the PostgreSQL store: ``msgstore db upgrade`` and ``msgstore store copy``.

The copy itself is ``storage.storecopy`` (the same code in both directions); here are the
entry points that open the two stores.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from msgstore.config import Config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.storage.postgres import schema
from msgstore.storage.postgres.db import store_error
from msgstore.storage.storecopy import CopySummary, copy_between

__all__ = ["CopySummary", "copy_store", "copy_to_local", "upgrade_database"]


async def _connect(dsn: str) -> Any:
    try:
        return await asyncpg.connect(dsn, timeout=30)
    except Exception as exc:
        raise store_error(exc) from exc


async def upgrade_database(dsn: str) -> tuple[int, list[int]]:
    """Apply the missing migrations; returns (version now, versions applied)."""
    conn = await _connect(dsn)
    try:
        applied = await schema.upgrade(conn)
        return await schema.current_version(conn), applied
    except Exception as exc:
        raise store_error(exc) from exc
    finally:
        await conn.close()


async def copy_store(config: Config, dsn: str, *, progress: bool = True) -> CopySummary:
    """Copy the store ``config`` opens into the PostgreSQL database ``dsn`` (upgraded first;
    see ``storage.storecopy``)."""
    from msgstore.storage.open import open_backend
    from msgstore.storage.postgres.backend import PostgresBackend

    await upgrade_database(dsn)
    # Large messages spill to DATA/tmp/store-copy/tmp while staged; a killed copy's are
    # removed by the next one.
    work = config.store.data_dir / "tmp" / "store-copy"
    _remove_stale_spills(work / "tmp")
    source = await open_backend(config)
    try:
        dest = await PostgresBackend.open(dsn, work, pool_min=1, pool_max=2)
        try:
            return await copy_between(source, dest, progress=progress)
        finally:
            await dest.close()
    finally:
        await source.close()


def _remove_stale_spills(tmp_dir: Path) -> None:
    """Remove ``<pid>-*`` staging files whose process is gone."""
    try:
        names = os.listdir(tmp_dir)
    except FileNotFoundError:
        return
    for name in names:
        pid = name.partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive: a copy running now
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(tmp_dir / name)


async def copy_to_local(config: Config, data_dir: Path, *, progress: bool = True) -> CopySummary:
    """Copy the configured store into a local store in ``data_dir`` (created if new)."""
    from msgstore.config import load_config
    from msgstore.storage.open import open_backend

    source = await open_backend(config)
    try:
        dest = await open_backend(load_config(None, data_dir=data_dir))
        try:
            return await copy_between(source, dest, progress=progress)
        finally:
            await dest.close()
    finally:
        await source.close()


async def create_schema(dsn: str, name: str) -> None:
    """Create schema ``name`` (for benchmarks and tests: ``?search_path=name`` selects it)."""
    if not name.isidentifier() or not name.isascii():
        raise StoreError(ErrorKind.PARAMS, f"Bad schema name {name!r}")
    conn = await _connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()


async def drop_schema(dsn: str, name: str) -> None:
    if not name.isidentifier() or not name.isascii():
        raise StoreError(ErrorKind.PARAMS, f"Bad schema name {name!r}")
    conn = await _connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()
