"""PostgreSQL for the tests: the server at 127.0.0.1:5432 (database ``test``), one fresh schema
per test, dropped afterwards. A test that needs PostgreSQL fails (never skips) when it is not
reachable; ``.ci/run`` starts it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the tests set up PostgreSQL

from msgstore.storage.postgres import schema

T = TypeVar("T")

#: The server and database every PostgreSQL test uses (trust authentication).
PG_SERVER: Final = "postgresql://postgres@127.0.0.1:5432/test"


def schema_dsn(name: str) -> str:
    return f"{PG_SERVER}?search_path={name}"


def database_dsn(name: str) -> str:
    """The DSN of database ``name`` on the same server (see :func:`pg_database`)."""
    return f"{PG_SERVER.rpartition('/')[0]}/{name}"


async def _connect() -> Any:
    try:
        return await asyncpg.connect(PG_SERVER, timeout=10)
    except Exception as exc:  # fail, never skip
        raise AssertionError(
            f"PostgreSQL is not reachable at {PG_SERVER}: {exc!r} (.ci/run starts it)"
        ) from exc


async def create_schema(*, upgrade: bool = True) -> str:
    """A new empty schema (with the msgstore tables unless ``upgrade`` is False)."""
    name = "t_" + secrets.token_hex(6)
    conn = await _connect()
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
        if upgrade:
            await conn.execute(f"SET search_path = {name}")
            await schema.upgrade(conn)
    finally:
        await conn.close()
    return name


async def drop_schema(name: str) -> None:
    conn = await _connect()
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


async def empty_schema(name: str) -> None:
    """Make a schema made by :func:`create_schema` new again: every table emptied, every
    sequence restarted (much cheaper than creating the tables again for each test)."""
    conn = await _connect()
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 "
                "AND tablename <> 'schema_version'",
                name,
            )
        ]
        sequences = [
            r["sequencename"]
            for r in await conn.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = $1", name
            )
        ]
        async with conn.transaction():
            if tables:
                await conn.execute(
                    "TRUNCATE " + ", ".join(f"{name}.{t}" for t in tables) + " RESTART IDENTITY"
                )
            for seq in sequences:
                await conn.execute(f"ALTER SEQUENCE {name}.{seq} RESTART")
    finally:
        await conn.close()


def write_config(path: Path, name: str, data_dir: Path, *, extra: str = "") -> Path:
    """A msgstore.toml selecting the postgres backend on schema ``name``."""
    path.write_text(
        f'[store]\ndata_dir = "{data_dir}"\n'
        f'[storage]\nbackend = "postgres"\ndsn = "{schema_dsn(name)}"\npool_min = 1\n'
        f"pool_max = 10\n{extra}"
    )
    return path


def _run_apart(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a thread of its own (callers may be inside a loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def create_database() -> str:
    """A new empty database (see :func:`pg_database`)."""
    name = "t_" + secrets.token_hex(6)
    conn = await _connect()
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await _connect()
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@contextmanager
def pg_database() -> Iterator[str]:
    """A database of its own, dropped at the end, for a test that must not wait for the
    others: ``CREATE INDEX CONCURRENTLY`` waits for every older transaction of its database,
    and in ``test`` those are the other test workers' (one of 25 s there made it take 22 s)."""
    name = _run_apart(create_database())
    try:
        yield name
    finally:
        _run_apart(drop_database(name))


@contextmanager
def pg_schema(*, upgrade: bool = True) -> Iterator[str]:
    """A fresh schema for fixtures and synchronous tests, dropped at the end."""
    name = _run_apart(create_schema(upgrade=upgrade))
    try:
        yield name
    finally:
        _run_apart(drop_schema(name))
