"""Run by ``test_fanout_phases.py`` under strace: one message to every account named on the
command line through ``deliver_many`` (their indexes not open: the fan-out phases). Prints
``BEGIN`` once the message is staged, then ``ACK <account-id> <uid>`` per stored copy.

    python -m tests.storage.local.fanout_trace DATA_DIR NAME...
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from msgstore.storage.base import AppendResult
from msgstore.storage.local import LocalBackend


async def main(data_dir: Path, names: list[str]) -> int:
    backend = await LocalBackend.open(data_dir)
    try:
        accounts = [await backend.get_account(name) for name in names]
        async with backend.stage(max_octets=1 << 20) as staged:
            await staged.write(b"Subject: traced\r\n\r\nfan-out\r\n")
            await staged.finish()
            os.write(1, b"BEGIN\n")
            results = await backend.deliver_many(staged, [(a, None) for a in accounts])
        for account, result in zip(accounts, results, strict=True):
            if not isinstance(result, AppendResult):
                print(f"FAILED {account.id} {result!r}", file=sys.stderr)
                return 1
            os.write(1, f"ACK {account.id} {result.uid}\n".encode())
    finally:
        await backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), sys.argv[2:])))
