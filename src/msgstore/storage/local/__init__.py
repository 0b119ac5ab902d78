"""The embedded default backend: SQLite databases and one file per message under DATA.

Layout (ids, never names, reach the file system; renaming an account or a mailbox moves
nothing)::

    DATA/system.db                      accounts (name unique case-insensitively, kind, manager,
                                        login/receive disabled, password hash, quota limits,
                                        created) and the directory of shared mailboxes
    DATA/users/<aa>/<account-id>/       one account's tree; aa = id % 256 as two hex digits
        index.db                        mailboxes, subscriptions, messages, expunged UIDs,
                                        keywords, ACL, quota usage (+ mirrored limits), meta
        mail/<mailbox-id>/<uid>         one immutable CRLF file per message, ready to send
    DATA/public/                        the same tree for the public pseudo-account "#public"
    DATA/tmp/                           staging: <pid>-<start>-<n>-<random>.msg (same file
                                        system as the trees, so link and rename work)
    DATA/run/notify/<pid>-<random>.sock notification sockets of processes that watch

Modules
-------
``backend``  :class:`LocalBackend`, the ``storage.base.Backend`` implementation (async; every
             blocking call goes to a thread)
``db``       one thread per SQLite file (``Worker``), connection settings, transactions,
             mapping of SQLite/OS errors to ``StoreError`` (CORRUPTED / TEMP)
``system``   system.db on its thread: accounts and the shares directory
``index``    one account's index.db on its thread: every mailbox and message operation
``staging``  receiving a message: CRLF-normalised, size-capped, fsynced, parsed once
``files``    every file operation (each a fault-injection point), the durable placement with
             its crash points, staging names, recovery helpers
``notify``   cross-process notification over unix datagram sockets
``faults``   ``FaultPlan``: the N-th write/fsync/rename/link/mkdir/unlink/commit fails

Threads and SQLite
------------------
stdlib ``sqlite3``, ``isolation_level=None`` with explicit ``BEGIN IMMEDIATE``/``COMMIT``,
WAL, ``synchronous=FULL``, ``busy_timeout`` 10 s, ``foreign_keys``. Each open index.db lives on
its own single-thread executor (an LRU of at most 256 open indexes; idle ones beyond that are
closed); system.db has its own thread; staging and message reads use a small file pool. No
SQLite call runs on the event loop. Several processes (server workers, the CLI) may open the
same DATA: SQLite's locks serialise writers per index, and every write is one transaction.

The durable write
-----------------
Stage (temp file, fsync, parse once, SHA-256), then per recipient, inside ``BEGIN IMMEDIATE``
on the recipient's index: reserve quota with one conditional UPDATE, take ``uid = uidnext``,
hard-link the staged file to ``mail/<mailbox-id>/<uid>`` (creating and syncing the directory
on demand), fsync the directory, insert the row, bump uidnext/highestmodseq, COMMIT; then
notify; only then return. Appends to one index that arrive together share that transaction
(group commit: one directory fsync and one commit for the batch, each message in its own
savepoint). Staging takes an empty file created ahead of need (``files.TempPool``).
Fan-out to N accounts is one file linked N times. The crash points
and the state each leaves are listed in ``files.place_messages``.

COPY hard-links the source file and copies its row (no re-parse), charging the destination's
quota in the same transaction. MOVE inside one account is a single transaction; across accounts
it is a copy followed by an expunge of the sources (a crash in between leaves a duplicate,
never a loss). EXPUNGE deletes rows, records the UIDs in ``expunged`` with a new modseq,
releases quota, commits, and only then unlinks the files (a crash leaves an orphan file, never
a row without a file); the unlinks and the pruning of the expunge log run on the index thread
after the caller has its answer.

Recovery
--------
When the store opens: staging files whose creating process is dead are removed, and trees of
accounts that do not exist (a crash inside account creation or deletion). When an index opens
(under its write lock): files at or above UIDNEXT without a row (a crash between link and
commit) and files of expunged UIDs or deleted mailboxes. Anything else unexplained is logged
and kept for ``msgstore reconstruct``; a damaged or missing index.db is never re-created
(an empty index would make every file look orphaned).

Damage
------
An index.db SQLite cannot read makes that account's operations raise CORRUPTED ("mailbox
index damaged; run msgstore reconstruct"); other accounts are unaffected. A message file that
is missing or does not have the recorded size makes ``open_body`` raise CORRUPTED for that
message only; no read ever returns bytes beyond, or short of, the recorded size.

Notifications
-------------
In-process: ``storage.notify.ChangeHub``. Across processes: ``notify.NotifyChannel`` (a
datagram to every socket in ``DATA/run/notify`` after each commit). A watcher wakes within
milliseconds of a change made by any process.

Fault injection
---------------
``LocalBackend.open(data_dir, fault_plan=FaultPlan.parse("fsync:2:EIO"))``, or the environment
variable ``MSGSTORE_FAULTS`` read by ``storage.open.open_backend``. Any ``OSError`` on a write
path becomes ``StoreError(TEMP)`` and leaves the store as it was.
"""

from msgstore.storage.local.backend import LocalBackend
from msgstore.storage.local.faults import Fault, FaultPlan

__all__ = ["Fault", "FaultPlan", "LocalBackend"]
