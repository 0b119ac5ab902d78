"""``msgstore migrate`` into a PostgreSQL store keeps the source's UIDs and UIDVALIDITY, as it
does on the local backend (``SupportsUidImport`` on both)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from msgstore.core.ids import UidSet
from msgstore.core.names import INBOX
from msgstore.storage.base import Want
from msgstore.storage.postgres import PostgresBackend
from tests.storage.pg import schema_dsn


def _maildir(root: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    (root / "dovecot-uidlist").write_text(
        "3 V1234567 N20 Gabc\n5 :1700000000.a.host\n9 P0042 :1700000000.b.host\n"
    )
    (root / "cur" / "1700000000.a.host:2,S").write_bytes(b"Subject: a\n\na\n")
    (root / "cur" / "1700000000.b.host:2,RF").write_bytes(b"Subject: b\n\nb\n")
    (root / "new" / "1700000000.c.host").write_bytes(b"Subject: c\n\nc\n")


def test_migrate_maildir_into_postgres_keeps_uids(tmp_path: Path, pg_name: str) -> None:
    root = tmp_path / "Maildir"
    _maildir(root)
    config = tmp_path / "pg.toml"
    config.write_text(
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[storage]\nbackend = "postgres"\ndsn = "{schema_dsn(pg_name)}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    args = [sys.executable, "-m", "msgstore.cli", "--config", str(config), "migrate", "maildir"]
    for _ in range(2):  # safe to run twice: the second run adds nothing
        done = subprocess.run(
            [*args, str(root), "--account", "gina", "--create", "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    async def read() -> None:
        backend = await PostgresBackend.open(schema_dsn(pg_name), tmp_path / "data")
        try:
            gina = await backend.get_account("gina")
            box = await backend.get_mailbox(gina.id, INBOX)
            status = await backend.mailbox_status(gina.id, box.id)
            metas = await backend.fetch_meta(gina.id, box.id, UidSet.all(), Want.FLAGS)
        finally:
            await backend.close()
        assert status.uidvalidity == 1234567
        assert [m.uid for m in metas] == [5, 9, 20]  # kept, kept, after the source's UIDNEXT
        assert status.uidnext == 21
        assert metas[1].uidl == "0042"
        assert set(metas[1].flags) == {"\\Answered", "\\Flagged"}

    asyncio.run(read())
