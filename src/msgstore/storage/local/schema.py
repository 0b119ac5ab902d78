"""The SQL schemas of system.db and index.db, and their creation.

Both carry a ``meta`` table whose ``schema_version`` row says which layout the file has; a file
without it is not ours (or was truncated) and is reported as damaged, never silently
re-initialised: an empty index next to a tree of message files would make recovery delete them.
"""

from __future__ import annotations

import sqlite3
from typing import Final

SYSTEM_SCHEMA_VERSION: Final = 1
INDEX_SCHEMA_VERSION: Final = 1

#: Additions to system.db after version 1, applied in order at open, each once: a name and its
#: DDL. Named rather than numbered so that features added side by side never compete for a
#: version number; ``meta`` records ``migration:<name>`` for each one applied. Never edit or
#: reorder an entry that has shipped: append a new one.
SYSTEM_MIGRATIONS: Final[tuple[tuple[str, str], ...]] = (
    (
        "audit_log",
        """
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,                 -- epoch microseconds, UTC
    actor     TEXT NOT NULL,                    -- "os:<user>" or an account name
    origin    TEXT NOT NULL,
    operation TEXT NOT NULL,
    params    TEXT NOT NULL,                    -- JSON object, secrets redacted
    outcome   TEXT NOT NULL,                    -- "ok" or an error kind
    message   TEXT NOT NULL
);
CREATE INDEX audit_log_by_ts ON audit_log(ts);
""",
    ),
    (
        "forwarding_and_relay_queue",
        """
CREATE TABLE forwards (
    address_key  TEXT PRIMARY KEY,              -- address.casefold()
    address      TEXT NOT NULL,                 -- as given
    destinations TEXT NOT NULL,                 -- JSON list of strings, as given
    keep_copy    INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL               -- epoch seconds, UTC
) WITHOUT ROWID;
CREATE TABLE relay_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    file         TEXT NOT NULL,                 -- name of the message file in DATA/queue/
    sender       TEXT NOT NULL,                 -- "" for the null reverse-path
    recipients   TEXT NOT NULL,                 -- JSON list: still to be delivered
    size         INTEGER NOT NULL,
    created      REAL NOT NULL,                 -- epoch seconds, UTC
    next_attempt REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT ''
);
""",
    ),
    (
        "web_sessions_and_last_logins",
        """
CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,                -- sha256 hex of the cookie value
    account    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    credential TEXT NOT NULL,                   -- sha256 hex of the password hash at login
    csrf_token TEXT NOT NULL,
    created    INTEGER NOT NULL,                -- epoch seconds, UTC
    last_seen  INTEGER NOT NULL,
    address    TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_by_account ON web_sessions(account);
CREATE TABLE last_logins (
    account  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    protocol TEXT NOT NULL,                     -- "imap", "pop3", "web", ...
    address  TEXT NOT NULL,                     -- the client address
    at       INTEGER NOT NULL,                  -- epoch seconds, UTC
    PRIMARY KEY (account, protocol, address)
) WITHOUT ROWID;
""",
    ),
    (
        "api_tokens",
        """
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,            -- sha256 hex of the bearer token
    account    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    label      TEXT NOT NULL,
    created    INTEGER NOT NULL,                -- epoch seconds, UTC
    expires    INTEGER                          -- epoch seconds, UTC; NULL = never
);
CREATE INDEX api_tokens_by_account ON api_tokens(account);
""",
    ),
)

#: The same for every index.db (applied when an index is opened).
INDEX_MIGRATIONS: Final[tuple[tuple[str, str], ...]] = ()

SYSTEM_SCHEMA: Final = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: an account id is never reused, because it names a directory.
CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL UNIQUE,     -- name.casefold(): names are case-insensitive
    kind              TEXT NOT NULL,
    manager           INTEGER NOT NULL DEFAULT 0,
    login_disabled    INTEGER NOT NULL DEFAULT 0,
    receive_disabled  INTEGER NOT NULL DEFAULT 0,
    password_hash     TEXT NOT NULL,
    storage_limit_kib INTEGER,
    message_limit     INTEGER,
    created           INTEGER NOT NULL,          -- epoch seconds, UTC
    public            INTEGER NOT NULL DEFAULT 0 -- 1 for the public pseudo-account
);

-- The directory of shared mailboxes: which tree has an ACL entry for which identifier, so
-- "Other Users/" can be listed without opening every index. A superset of the real entries
-- (written before the index on grant, after it on revoke); the index ACL is the truth.
CREATE TABLE shares (
    owner          INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox_id     INTEGER NOT NULL,
    identifier_key TEXT NOT NULL,                -- identifier.casefold()
    PRIMARY KEY (owner, mailbox_id, identifier_key)
) WITHOUT ROWID;
CREATE INDEX shares_by_identifier ON shares(identifier_key);
"""

INDEX_SCHEMA: Final = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- AUTOINCREMENT: a mailbox id names the directory mail/<id>/, so it is never reused.
CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use   TEXT NOT NULL DEFAULT '',
    recent_uid    INTEGER NOT NULL DEFAULT 1    -- first UID not yet claimed as \\Recent
);

CREATE TABLE subscriptions (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

-- The hot row: everything SELECT, STORE and the change feed read. Small, so that a snapshot
-- of 100,000 messages is one short range scan of the primary key.
CREATE TABLE messages (
    mailbox_id    INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    sysflags      INTEGER NOT NULL,             -- core.flags.SYSTEM_BITS
    keywords      TEXT,                         -- sorted, space-separated; NULL for none
    internal_date INTEGER NOT NULL,             -- epoch seconds
    tz_offset     INTEGER NOT NULL,             -- minutes east of UTC
    size          INTEGER NOT NULL,             -- octets of the stored file (RFC822.SIZE)
    meta_id       INTEGER NOT NULL,             -- message_meta.id
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_by_modseq ON messages(mailbox_id, modseq);
-- Partial indexes make UNSEEN / first-unseen and the \\Deleted count cheap.
CREATE INDEX messages_unseen ON messages(mailbox_id, uid) WHERE sysflags & 1 = 0;
CREATE INDEX messages_deleted ON messages(mailbox_id, uid) WHERE sysflags & 8 != 0;

-- What was computed once at delivery (mime.parse), read by FETCH; blobs in a rowid table so
-- that they stay out of the hot row. Hot columns first: SQLite stops reading a record at the
-- last column a query needs.
CREATE TABLE message_meta (
    id            INTEGER PRIMARY KEY,
    envelope      BLOB,
    bodystructure BLOB,
    body          BLOB,
    partmap       BLOB,
    headers       TEXT,                         -- JSON object
    sha256        BLOB NOT NULL,
    uidl          TEXT NOT NULL,
    meta_version  INTEGER NOT NULL
);

-- Expunged UIDs with the modseq of their expunge (QRESYNC VANISHED, changes_since).
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_by_modseq ON expunged(mailbox_id, modseq);

-- Keywords ever set in a mailbox (the FLAGS / PERMANENTFLAGS list, as Dovecot keeps it).
CREATE TABLE mailbox_keywords (
    mailbox_id INTEGER NOT NULL,
    keyword    TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, keyword)
) WITHOUT ROWID;

CREATE TABLE acl (
    mailbox_id     INTEGER NOT NULL,
    identifier_key TEXT NOT NULL,               -- identifier.casefold()
    identifier     TEXT NOT NULL,               -- as given
    rights         TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, identifier_key)
) WITHOUT ROWID;

-- One row. The limits mirror system.db so that reservation is one conditional UPDATE in the
-- transaction that inserts the message.
CREATE TABLE quota (
    id                    INTEGER PRIMARY KEY CHECK (id = 1),
    storage_used_octets   INTEGER NOT NULL DEFAULT 0,
    messages_used         INTEGER NOT NULL DEFAULT 0,
    storage_limit_octets  INTEGER,
    message_limit         INTEGER
);
"""


def create_system_schema(conn: sqlite3.Connection) -> None:
    """Create system.db's tables in an empty database (inside the caller's transaction)."""
    for statement in _statements(SYSTEM_SCHEMA):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SYSTEM_SCHEMA_VERSION),)
    )
    apply_migrations(conn, list(SYSTEM_MIGRATIONS))


def create_index_schema(
    conn: sqlite3.Connection,
    *,
    account_id: int,
    account_name: str,
    storage_limit_octets: int | None,
    message_limit: int | None,
    first_uidvalidity: int,
) -> None:
    """Create index.db's tables in an empty database (inside the caller's transaction)."""
    for statement in _statements(INDEX_SCHEMA):
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [
            ("schema_version", str(INDEX_SCHEMA_VERSION)),
            ("account_id", str(account_id)),
            ("account_name", account_name),
            ("next_uidvalidity", str(first_uidvalidity)),
        ],
    )
    conn.execute(
        "INSERT INTO quota(id, storage_limit_octets, message_limit) VALUES (1, ?, ?)",
        (storage_limit_octets, message_limit),
    )
    apply_migrations(conn, list(INDEX_MIGRATIONS))


def pending_migrations(
    conn: sqlite3.Connection, migrations: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    """The entries of ``migrations`` not yet recorded in the file's ``meta`` table."""
    if not migrations:
        return []
    done = {
        str(row[0])
        for row in conn.execute("SELECT key FROM meta WHERE key LIKE 'migration:%'").fetchall()
    }
    return [(name, ddl) for name, ddl in migrations if f"migration:{name}" not in done]


def apply_migrations(conn: sqlite3.Connection, pending: list[tuple[str, str]]) -> None:
    """Run each pending migration and record it (inside the caller's write transaction)."""
    for name, ddl in pending:
        for statement in _statements(ddl):
            conn.execute(statement)
        conn.execute("INSERT INTO meta(key, value) VALUES (?, '1')", (f"migration:{name}",))


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version, or None if it has no meta table (not ours, or emptied)."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if has_meta is None:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        return None
    return int(row[0])


def _statements(script: str) -> list[str]:
    """Split a script into statements (comments removed first: they may contain ';')."""
    lines = [line.split("--", 1)[0].rstrip() for line in script.splitlines()]
    text = "\n".join(line for line in lines if line)
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]
