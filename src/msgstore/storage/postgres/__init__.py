"""The scale-out backend: accounts, mailboxes, messages and their contents in PostgreSQL.

Any number of stateless front-end processes (IMAP, POP3, LMTP, web), on any number of
machines, share one database. See docs/storage-postgres.md for operation and sharding.

Modules
-------
``schema``     versioned migrations (``msgstore db upgrade``), the startup version check
``db``         the asyncpg pool, one transaction per operation with deadlock retry, errors as
               ``StoreError`` (connection lost -> UNAVAILABLE, pool exhausted -> TEMP)
``backend``    :class:`PostgresBackend`: opening, closing, watching; the methods come from
``accounts``   accounts, ACLs, quota
``mailboxes``  the mailbox tree, subscriptions, special use, STATUS
``messages``   staging, append, snapshot, metadata, bodies (:class:`messages.PgBodyReader`)
``updates``    STORE, COPY, MOVE, EXPUNGE, the change feed, UID import (migration)
``extras``     audit log, forwarding, relay queue, web sessions, last logins, API tokens
``queries``    SQL helpers shared by those (the lock order lives here)
``mixin``      the state and plumbing they share
``staging``    receiving a message: CRLF-normalised, size-capped, hashed, parsed once
``notify``     LISTEN/NOTIFY: coalesced NOTIFY after commits, one LISTEN connection per process
``admin``      ``msgstore db upgrade`` and ``msgstore store copy``
``backup``     per-account export and restore (the backend-neutral ``storage/archive.py``)
``reconstruct`` ``msgstore reconstruct``: check and repair what can drift in the rows

Contents
--------
A message's bytes are stored once per SHA-256 (``blobs`` with a reference count, and
``blob_chunks`` of 256 KiB so that FETCH streams); the metadata parsed at delivery
(ENVELOPE, BODYSTRUCTURE, part map, header index: ``mime.parse``, as the local backend) lives
with the content. Fan-out delivery and COPY add references; EXPUNGE drops them, and the last
one removes the content, in the same transaction.
"""

from msgstore.storage.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
