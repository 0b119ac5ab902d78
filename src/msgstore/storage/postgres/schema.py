"""The PostgreSQL schema: versioned migrations, ``msgstore db upgrade``, the startup check.

Migrations are numbered and applied in order, each in its own transaction, by :func:`upgrade`
(``msgstore db upgrade``). ``schema_version`` records every version applied. A server refuses
to start on a database whose newest version is older than :data:`SCHEMA_VERSION`
(:func:`check_schema`). Upgrading is safe on a live database: a transaction-level advisory
lock serialises concurrent upgrades, every migration only adds (tables, columns with
defaults, indexes), and running servers keep working on the tables they know. An index on a
table that already holds many rows is built ``CONCURRENTLY`` first, outside the migration's
transaction (:data:`CONCURRENT_INDEXES`), so writers are not blocked for the length of the
build; the migration's own transaction then finds it there.

Sharding (docs/storage-postgres.md): every table holding one account's data leads its primary
key with ``account_id`` and no query joins rows of two accounts, so those tables can be
distributed by ``account_id`` (Citus ``create_distributed_table(..., 'account_id')``,
co-located). ``accounts`` is the directory (a reference table); ``blobs`` and
``blob_chunks`` are keyed by content hash and distributed by ``sha256``.

Every table is created unqualified: it lands in the connection's ``search_path`` (the tests
give each test its own schema that way).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from msgstore.core.errors import ErrorKind, StoreError

#: The version the code needs; ``msgstore db upgrade`` brings the database to it.
SCHEMA_VERSION: Final = 3

#: Advisory lock key of ``msgstore db upgrade`` (any constant; "msgstore" in ASCII).
UPGRADE_LOCK: Final = 0x6D736773746F7265

#: Advisory lock key of a concurrent index build (taken at session level, polled).
INDEX_LOCK: Final = UPGRADE_LOCK + 1

#: A table with at least this many rows gets a new index ``CONCURRENTLY`` (no write lock for
#: the length of the build); a smaller one inside the migration's transaction.
CONCURRENT_ROWS: Final = 50_000

UPGRADE_HINT: Final = "run msgstore db upgrade"

_V1: Final = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE account_ids;
CREATE SEQUENCE mailbox_ids;

-- The directory (a reference table when sharded): names -> ids, credentials, limits.
CREATE TABLE accounts (
    account_id        bigint PRIMARY KEY DEFAULT nextval('account_ids'),
    name              text NOT NULL,
    name_key          text NOT NULL UNIQUE,          -- name.casefold()
    kind              text NOT NULL,
    manager           boolean NOT NULL DEFAULT false,
    login_disabled    boolean NOT NULL DEFAULT false,
    receive_disabled  boolean NOT NULL DEFAULT false,
    password_hash     text NOT NULL,
    storage_limit_kib bigint,
    message_limit     bigint,
    created           bigint NOT NULL,               -- epoch seconds, UTC
    public            boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX accounts_one_public ON accounts(public) WHERE public;

-- Per account: quota usage (with the limits mirrored, so a reservation is one conditional
-- UPDATE) and the UIDVALIDITY counter.
CREATE TABLE account_state (
    account_id           bigint PRIMARY KEY,
    storage_used_octets  bigint NOT NULL DEFAULT 0,
    messages_used        bigint NOT NULL DEFAULT 0,
    storage_limit_octets bigint,
    message_limit        bigint,
    next_uidvalidity     bigint NOT NULL
);

CREATE TABLE mailboxes (
    account_id      bigint NOT NULL,
    mailbox_id      bigint NOT NULL DEFAULT nextval('mailbox_ids'),
    name            text NOT NULL,
    uidvalidity     bigint NOT NULL,
    uidnext         bigint NOT NULL DEFAULT 1,
    highestmodseq   bigint NOT NULL DEFAULT 1,
    special_use     text NOT NULL DEFAULT '',
    recent_uid      bigint NOT NULL DEFAULT 1,
    expunged_floor  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, mailbox_id),
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id bigint NOT NULL,
    name       text NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- The hot row. Metadata computed at delivery lives with the content (blobs), once.
CREATE TABLE messages (
    account_id    bigint NOT NULL,
    mailbox_id    bigint NOT NULL,
    uid           bigint NOT NULL,
    modseq        bigint NOT NULL,
    sysflags      integer NOT NULL,
    keywords      text,
    internal_date bigint NOT NULL,
    tz_offset     integer NOT NULL,
    size          bigint NOT NULL,
    sha256        bytea NOT NULL,
    uidl          text NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid)
);
CREATE INDEX messages_by_modseq ON messages(account_id, mailbox_id, modseq);
CREATE INDEX messages_unseen ON messages(account_id, mailbox_id, uid) WHERE sysflags & 1 = 0;
CREATE INDEX messages_deleted ON messages(account_id, mailbox_id, uid) WHERE sysflags & 8 <> 0;

CREATE TABLE expunged (
    account_id bigint NOT NULL,
    mailbox_id bigint NOT NULL,
    uid        bigint NOT NULL,
    modseq     bigint NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, uid)
);
CREATE INDEX expunged_by_modseq ON expunged(account_id, mailbox_id, modseq);

CREATE TABLE mailbox_keywords (
    account_id bigint NOT NULL,
    mailbox_id bigint NOT NULL,
    keyword    text NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, keyword)
);

CREATE TABLE acl (
    account_id     bigint NOT NULL,
    mailbox_id     bigint NOT NULL,
    identifier_key text NOT NULL,
    identifier     text NOT NULL,
    rights         text NOT NULL,
    PRIMARY KEY (account_id, mailbox_id, identifier_key)
);
CREATE INDEX acl_by_identifier ON acl(identifier_key);

-- Message contents, once per SHA-256, with the number of messages referring to them, and the
-- metadata parsed from them at delivery (a function of the content).
CREATE TABLE blobs (
    sha256        bytea PRIMARY KEY,
    size          bigint NOT NULL,
    refcount      bigint NOT NULL,
    chunk_octets  integer NOT NULL,
    meta_version  integer NOT NULL,
    envelope      bytea,
    bodystructure bytea,
    body          bytea,
    partmap       bytea,
    headers       text
);

CREATE TABLE blob_chunks (
    sha256 bytea NOT NULL,
    seq    integer NOT NULL,
    data   bytea NOT NULL,
    PRIMARY KEY (sha256, seq)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

#: Audit log, forwarding, relay queue, web sessions, last logins, API tokens (#4, #6, #7).
_V2: Final = """
-- Global, append-only (not per account: a reference table when sharded).
CREATE TABLE audit_log (
    id        bigserial PRIMARY KEY,
    ts        timestamptz NOT NULL,
    actor     text NOT NULL,
    origin    text NOT NULL,
    operation text NOT NULL,
    params    text NOT NULL,
    outcome   text NOT NULL,
    message   text NOT NULL
);
CREATE INDEX audit_log_by_ts ON audit_log(ts);

-- Addresses are not accounts: a reference table when sharded.
CREATE TABLE forwards (
    address_key  text PRIMARY KEY,               -- address.casefold()
    address      text NOT NULL,
    destinations text[] NOT NULL,
    keep_copy    boolean NOT NULL,
    created      bigint NOT NULL
);

-- The outbound relay queue with each message's octets.
CREATE TABLE relay_queue (
    id           bigserial PRIMARY KEY,
    sender       text NOT NULL,
    recipients   text[] NOT NULL,
    size         bigint NOT NULL,
    created      double precision NOT NULL,
    next_attempt double precision NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NOT NULL DEFAULT '',
    data         bytea NOT NULL
);
CREATE INDEX relay_queue_by_next ON relay_queue(next_attempt, id);

-- Looked up by the cookie's hash alone (the directory, like accounts).
CREATE TABLE web_sessions (
    id_hash    text PRIMARY KEY,
    account_id bigint NOT NULL,
    credential text NOT NULL,                    -- sha256 of the password hash it began with
    csrf_token text NOT NULL,
    created    bigint NOT NULL,
    last_seen  bigint NOT NULL,
    address    text NOT NULL
);
CREATE INDEX web_sessions_by_account ON web_sessions(account_id);

-- REST API bearer tokens, looked up by hash alone (the directory, like accounts).
CREATE TABLE api_tokens (
    id         bigserial PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    account_id bigint NOT NULL,
    label      text NOT NULL,
    created    bigint NOT NULL,
    expires    bigint
);
CREATE INDEX api_tokens_by_account ON api_tokens(account_id);

CREATE TABLE last_logins (
    account_id bigint NOT NULL,
    protocol   text NOT NULL,
    address    text NOT NULL,
    at         bigint NOT NULL,
    PRIMARY KEY (account_id, protocol, address)
);
"""

#: Messages by content, so the references to one content are counted without scanning every
#: account's messages: ``reconstruct`` checks the reference counts of the contents of each
#: account it reconstructs (storage/postgres/reconstruct.py). When sharded by account, the
#: count is a query on every shard, each using its part of this index.
_V3: Final = """
CREATE INDEX IF NOT EXISTS messages_by_sha256 ON messages(sha256);
"""

#: (version, DDL), in order. Never edit one that has shipped: append.
MIGRATIONS: Final[tuple[tuple[int, str], ...]] = ((1, _V1), (2, _V2), (3, _V3))

#: The indexes a migration adds to a table that may be large: version -> (index, table,
#: columns). :func:`upgrade` builds them ``CONCURRENTLY`` before that migration when the table
#: holds :data:`CONCURRENT_ROWS` rows or more.
CONCURRENT_INDEXES: Final[dict[int, tuple[str, str, str]]] = {
    3: ("messages_by_sha256", "messages", "sha256"),
}


async def current_version(conn: Any) -> int:
    """The newest version applied, 0 for an empty database (no ``schema_version`` table)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    version = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(version or 0)


async def upgrade(conn: Any, *, concurrent_rows: int = CONCURRENT_ROWS) -> list[int]:
    """Apply every missing migration; returns the versions applied (empty: up to date).

    Each migration commits on its own, under a transaction-level advisory lock, so two
    upgrades at once (or a server starting meanwhile) never see a half-applied version.
    Before a migration of :data:`CONCURRENT_INDEXES`, its index is built ``CONCURRENTLY``
    when the table holds ``concurrent_rows`` rows or more (see :func:`_build_concurrently`).
    ``conn`` must not be inside a transaction.
    """
    applied: list[int] = []
    for version, ddl in MIGRATIONS:
        if version in CONCURRENT_INDEXES and await current_version(conn) == version - 1:
            await _build_concurrently(conn, *CONCURRENT_INDEXES[version], concurrent_rows)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", UPGRADE_LOCK)
            if await current_version(conn) >= version:
                continue
            if version in CONCURRENT_INDEXES:
                await _drop_if_invalid(conn, CONCURRENT_INDEXES[version][0], concurrently=False)
            await conn.execute(ddl)
            await conn.execute("INSERT INTO schema_version(version) VALUES ($1)", version)
            applied.append(version)
    return applied


async def _index_valid(conn: Any, index: str) -> bool | None:
    """True for a usable index, False for one left invalid by a failed concurrent build,
    None when there is none (looked up in the ``search_path``)."""
    valid = await conn.fetchval(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)", index
    )
    return None if valid is None else bool(valid)


async def _drop_if_invalid(conn: Any, index: str, *, concurrently: bool) -> None:
    if await _index_valid(conn, index) is False:
        how = "CONCURRENTLY " if concurrently else ""
        await conn.execute(f"DROP INDEX {how}{_quoted(index)}")


def _quoted(name: str) -> str:
    if not name.isidentifier() or not name.isascii():
        raise ValueError(f"bad identifier {name!r}")
    return name


async def _build_concurrently(
    conn: Any, index: str, table: str, columns: str, threshold: int
) -> None:
    """Build ``index`` with ``CREATE INDEX CONCURRENTLY`` if ``table`` holds ``threshold``
    rows or more: writers go on during the build (a plain ``CREATE INDEX`` would block them
    until it ends). It runs outside any transaction, under a session-level advisory lock
    that others poll for (a session waiting inside a statement would hold a snapshot the
    build must wait for). An invalid index left by a build that failed is dropped and built
    again. Small tables are left to the migration's transaction."""
    big = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM {_quoted(table)} LIMIT $1) AS x",  # noqa: S608
        threshold,
    )
    if int(big) < threshold:
        return
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", INDEX_LOCK):
            break
        await asyncio.sleep(0.2)
    try:
        await _drop_if_invalid(conn, index, concurrently=True)
        await conn.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_quoted(index)} "
            f"ON {_quoted(table)}({_quoted(columns)})"
        )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", INDEX_LOCK)


async def check_schema(conn: Any) -> None:
    """Refuse a database older (or newer) than the code.

    Raises:
        StoreError: NOT_POSSIBLE naming ``msgstore db upgrade``, or for a newer schema.
    """
    version = await current_version(conn)
    if version < SCHEMA_VERSION:
        what = "is empty" if version == 0 else f"has schema version {version}"
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"The database {what}; this msgstore needs version {SCHEMA_VERSION}: {UPGRADE_HINT}",
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            ErrorKind.NOT_POSSIBLE,
            f"The database has schema version {version}, newer than this msgstore "
            f"({SCHEMA_VERSION}); upgrade msgstore",
        )
