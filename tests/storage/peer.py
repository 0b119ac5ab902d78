"""Another process using the same store, for the contract suite's cross-process tests.

Run from the repository root as ``python -m tests.storage.peer BACKEND DATA COMMAND ...``;
it opens the store the way a second server worker or the CLI would and prints one line per
durable result (``UID <n>``), flushed at once.

``append ACCOUNT MAILBOX COUNT TAG``   append COUNT messages to the named mailbox
``flag ACCOUNT MAILBOX UID``           add \\Seen to one message
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from msgstore.core.flags import SEEN, FlagOp
from msgstore.core.ids import Uid, UidSet
from msgstore.core.names import MailboxName
from tests.storage.support import StoreSpec, append, message


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(spec: StoreSpec, command: str, args: list[str]) -> None:
    backend = await spec.open()
    try:
        account = (await backend.get_account(args[0])).id
        mailbox = (await backend.get_mailbox(account, MailboxName(args[1]))).id
        if command == "append":
            for i in range(int(args[2])):
                result = await append(backend, account, mailbox, message(f"{args[3]}-{i}"))
                say(f"UID {result.uid}")
        elif command == "flag":
            uids = UidSet.from_uids([Uid(int(args[2]))])
            await backend.store_flags(account, mailbox, uids, FlagOp.ADD, frozenset({SEEN}))
            say("FLAGGED")
        else:
            raise SystemExit(f"peer: unknown command {command!r}")
    finally:
        await backend.close()


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    spec = StoreSpec(name=argv[0], data_dir=Path(argv[1]))
    asyncio.run(run(spec, argv[2], argv[3:]))


if __name__ == "__main__":
    main(sys.argv[1:])
