"""A client process for the crash and syscall-order tests: it writes to the store and says
``ACK`` only after the store said the write is durable.

Both modes open the store the way the servers do (``storage.open.open_backend`` with the
default configuration on DATA), so ``MSGSTORE_FAULTS`` applies. Run from the repository root
as ``python -m tests.storage.helpers.appender MODE ...``; every line it prints goes straight
to fd 1 with one ``os.write`` (no buffering, so nothing acknowledged is ever held back in a
buffer when the process is killed).

``serve DATA``
    A pre-loaded parent for the kill -9 loop. It imports the store once, prints ``READY``,
    then reads commands on stdin. ``RUN <account> <seed> <workload>`` forks a child that
    prints ``PID <pid>``, opens the store (which runs recovery), prints ``OPEN``, and then,
    for workload ``append``, appends self-checking messages to the account's INBOX in a loop,
    printing ``ACK <uid> <sha256-hex>`` after each ``append`` returns. Workload ``mixed`` also
    copies INBOX messages to ``Copies`` (``COPIED <uid> <dest-uid> <sha256-hex>`` after the
    copy returned) and expunges them (``EXPUNGING <uid>`` before, ``EXPUNGED <uid>`` after).
    When the child is gone the parent prints ``DONE <pid> <wait-status>``, always after
    everything the child printed. ``QUIT`` (or end of input) ends it. Forking a pre-imported
    parent instead of starting Python each time keeps an iteration at a few tens of
    milliseconds, so the test affords hundreds of kills.

``once DATA ACCOUNT OP``
    Prepares, prints ``BEGIN``, does one operation, prints ``ACK ...``; for ``strace`` (and
    for ``MSGSTORE_FAULTS``: a refused operation prints ``ERROR <kind>``, exit status 3).
    OP ``append``: stage and append one message (``ACK <uid> <sha256-hex>``);
    ``batch``: stage ``BATCH`` messages, then append them all at once (the index's group
    commit takes them together), printing ``ACK <uid> <sha256-hex>`` as each append returns;
    ``copy``/``move``: copy/move a message appended beforehand from INBOX to ``Copies``
    (``ACK <dest-uid> <source-uid>``); ``expunge``: expunge a message appended beforehand
    with \\Deleted (``ACK <uid>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from msgstore.config import load_config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, FlagOp
from msgstore.core.ids import AccountId, MailboxId, UidSet
from msgstore.core.names import MailboxName
from msgstore.delivery.pipeline import Accepted, DeliveryPipeline, Target
from msgstore.storage.base import Backend, StagedMessage, Want
from msgstore.storage.open import open_backend
from tests.storage.helpers.store import add_message, inbox_of, make_message

#: Exit status of ``once`` when the store refused the operation (it prints ``ERROR <kind>``).
REFUSED: Final = 3
WORKLOADS: Final = ("append", "mixed")
#: Shares of the operations in the ``mixed`` workload (the rest are expunges).
MIXED_APPEND_SHARE: Final = 0.6
MIXED_COPY_SHARE: Final = 0.2
#: A child stops by itself after this many operations if nobody kills it.
MAX_OPERATIONS_PER_CHILD: Final = 1000
COPY_TARGET: Final = MailboxName("Copies")
#: Messages appended at once by ``once DATA ACCOUNT batch``.
BATCH: Final = 6


async def open_store(data_dir: Path) -> Backend:
    """Open the store as the servers do: from the configuration, with the fault plan of
    ``MSGSTORE_FAULTS`` if that is set."""
    return await open_backend(load_config(data_dir=data_dir))


def say(line: str) -> None:
    data = (line + "\n").encode("ascii")
    written = os.write(1, data)
    assert written == len(data)


async def append_loop(data_dir: Path, account_name: str, seed: int, workload: str) -> None:
    """Append (``append``), or append, copy and expunge at random (``mixed``), for ever."""
    rng = random.Random(seed)
    backend = await open_store(data_dir)
    try:
        account = (await backend.get_account(account_name)).id
        inbox = await inbox_of(backend, account)
        copies = (await backend.get_mailbox(account, COPY_TARGET)).id if workload == "mixed" else 0
        uids = list((await backend.snapshot(account, inbox)).uids)
        say("OPEN")
        for i in range(MAX_OPERATIONS_PER_CHILD):
            r = rng.random() if workload == "mixed" and uids else 0.0
            if r < MIXED_APPEND_SHARE:
                data = make_message(rng, f"{seed}.{i}")
                result = await add_message(backend, account, inbox, data)
                uids.append(result.uid)
                say(f"ACK {result.uid} {hashlib.sha256(data).hexdigest()}")
            elif r < MIXED_APPEND_SHARE + MIXED_COPY_SHARE:
                source = rng.choice(uids)
                one = UidSet.from_uids([source])
                (meta,) = await backend.fetch_meta(account, inbox, one, Want.FLAGS)
                copied = await backend.copy(account, inbox, one, account, MailboxId(copies))
                say(f"COPIED {source} {copied.dest_uids[0]} {meta.sha256.hex()}")
            else:
                victim = uids.pop(rng.randrange(len(uids)))
                one = UidSet.from_uids([victim])
                say(f"EXPUNGING {victim}")
                await backend.store_flags(account, inbox, one, FlagOp.ADD, frozenset({DELETED}))
                gone = await backend.expunge(account, inbox, one)
                assert gone == [victim], gone
                say(f"EXPUNGED {victim}")
    finally:
        await backend.close()


def serve(data_dir: Path) -> None:
    say("READY")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "QUIT":
            return
        if words[0] != "RUN" or len(words) != 4 or words[3] not in WORKLOADS:
            raise SystemExit(f"appender: bad command {line!r}")
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                say(f"PID {os.getpid()}")
                asyncio.run(append_loop(data_dir, words[1], int(words[2]), words[3]))
            except BaseException as exc:
                say(f"ERROR {exc!a}")
                status = 1
            finally:
                os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        say(f"DONE {pid} {wait_status}")


async def once(data_dir: Path, account_name: str, op: str) -> None:
    rng = random.Random(op)
    backend = await open_store(data_dir)
    try:
        account = (await backend.get_account(account_name)).id
        inbox = await inbox_of(backend, account)
        data = make_message(rng, f"once-{op}")
        if op == "append":
            say("BEGIN")
            result = await add_message(backend, account, inbox, data)
            say(f"ACK {result.uid} {hashlib.sha256(data).hexdigest()}")
        elif op == "batch":
            await append_batch(backend, account, inbox, rng)
        elif op == "deliver":
            await deliver(backend, account_name, data)
        elif op in ("copy", "move"):
            try:
                target = (await backend.create_mailbox(account, COPY_TARGET)).id
            except StoreError as exc:
                if exc.kind is not ErrorKind.EXISTS:
                    raise
                target = (await backend.get_mailbox(account, COPY_TARGET)).id
            source = await add_message(backend, account, inbox, data)
            say("BEGIN")
            transfer = backend.copy if op == "copy" else backend.move
            done = await transfer(account, inbox, UidSet.from_uids([source.uid]), account, target)
            say(f"ACK {done.dest_uids[0]} {source.uid}")
        elif op == "expunge":
            source = await add_message(backend, account, inbox, data, flags=frozenset({DELETED}))
            say("BEGIN")
            gone = await backend.expunge(account, inbox, UidSet.from_uids([source.uid]))
            say(f"ACK {' '.join(str(u) for u in gone)}")
        else:
            raise SystemExit(f"appender: unknown operation {op!r}")
    finally:
        await backend.close()


async def deliver(backend: Backend, account_name: str, data: bytes) -> None:
    """Deliver through the delivery pipeline (the LMTP path) to one recipient whose index is
    already open: the local backend then writes, fsyncs and parses the message on its files
    thread and hands the append straight to the index thread (``finish_and_deliver``)."""
    pipeline = DeliveryPipeline(backend, max_message_octets=1 << 20)

    async def source(octets: bytes) -> AsyncIterator[bytes]:
        yield octets

    warm_up = await pipeline.deliver_message([account_name], source(data + b"warm-up\r\n"))
    assert isinstance(warm_up[0], Accepted), warm_up
    target = await pipeline.check(account_name)
    assert isinstance(target, Target), target
    say("BEGIN")
    (outcome,) = await pipeline.deliver([target], source(data))
    assert isinstance(outcome, Accepted), outcome
    say(f"ACK {outcome.uid} {hashlib.sha256(data).hexdigest()}")


async def append_batch(
    backend: Backend, account: AccountId, inbox: MailboxId, rng: random.Random
) -> None:
    """Stage ``BATCH`` messages first, then append them concurrently; each ``ACK`` is printed
    by its own task the moment its append returns."""
    datas = [make_message(rng, f"batch-{i}") for i in range(BATCH)]
    async with contextlib.AsyncExitStack() as stack:
        staged: list[StagedMessage] = []
        for data in datas:
            one = await stack.enter_async_context(backend.stage(max_octets=1 << 20))
            await one.write(data)
            await one.finish()
            staged.append(one)
        say("BEGIN")

        async def append_one(one: StagedMessage, data: bytes) -> None:
            result = await backend.append(account, inbox, one)
            say(f"ACK {result.uid} {hashlib.sha256(data).hexdigest()}")

        await asyncio.gather(*(append_one(o, d) for o, d in zip(staged, datas, strict=True)))


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "serve":
        serve(Path(argv[1]))
    elif len(argv) == 4 and argv[0] == "once":
        try:
            asyncio.run(once(Path(argv[1]), argv[2], argv[3]))
        except StoreError as exc:
            say(f"ERROR {exc.kind.name}")
            raise SystemExit(REFUSED) from exc
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
