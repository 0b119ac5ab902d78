"""Real ``msgstore serve`` processes on the postgres backend.

IMAP and LMTP through a server on PostgreSQL; a server refusing an old schema until ``msgstore
db upgrade``; two servers on different ports over one database: a delivery to one reaches an
IDLE session on the other within a second, and sessions on both flagging and expunging the
same mailbox at once end in the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- an old schema is set up by hand
import pytest
from imapclient import IMAPClient  # type: ignore[import-untyped]

from msgstore.storage.postgres import schema
from tests.conversations.harness import MsgstoreServer, message
from tests.storage.pg import schema_dsn
from tests.storage.postgres.conftest import pg_settings

BOUND_S = 1.0
CLI = (sys.executable, "-m", "msgstore.cli")
Response = tuple[Any, ...]


@contextlib.contextmanager
def server(root: Path, name: str) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(root, services=("imap", "lmtp"), config=pg_settings(name))
    try:
        yield srv
    finally:
        srv.stop()


def imap(srv: MsgstoreServer, user: Any) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=srv.port("imap.listen"), ssl=False, timeout=10)
    client.login(user.name, user.password)
    return client


def lmtp_deliver(srv: MsgstoreServer, rcpt: str, body: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", srv.port("lmtp.listen"), timeout=10) as client:
        client.sendmail("sender@example.org", [rcpt], body)


def wait_for(idler: IMAPClient, wanted: Callable[[Response], bool], since: float) -> float:
    seen: list[Response] = []
    deadline = since + 10.0
    while time.monotonic() < deadline:
        for response in idler.idle_check(timeout=max(0.05, deadline - time.monotonic())):
            seen.append(response)
            if wanted(response):
                return time.monotonic() - since
    raise AssertionError(f"not seen within 10 s; got {seen}")


def test_imap_and_lmtp_through_a_server_on_postgres(tmp_path: Path, pg_name: str) -> None:
    with server(tmp_path / "a", pg_name) as srv:
        user = srv.admin.add_user("pg")
        lmtp_deliver(srv, user.name, message("by lmtp", "Delivered over LMTP.\r\n"))
        client = imap(srv, user)
        try:
            big = message("appended", "x" * 70 + "\r\n") * 1
            big = big + (b"y" * 998 + b"\r\n") * 700  # > one 256 KiB chunk... and then some
            client.append("INBOX", big, flags=[b"\\Seen"])
            client.select_folder("INBOX")
            fetched = client.fetch([1, 2], ["RFC822", "FLAGS", "ENVELOPE", "RFC822.SIZE"])
            assert b"Delivered over LMTP." in fetched[1][b"RFC822"]
            assert fetched[1][b"ENVELOPE"].subject == b"by lmtp"
            assert fetched[2][b"RFC822"] == big
            assert fetched[2][b"RFC822.SIZE"] == len(big)
            assert b"\\Seen" in fetched[2][b"FLAGS"]
            partial = client.fetch([2], ["BODY.PEEK[]<262100.200>"])
            assert partial[2][b"BODY[]<262100>"] == big[262100:262300]
            client.copy([1, 2], "Trash")
            assert client.select_folder("Trash")[b"EXISTS"] == 2
        finally:
            client.logout()


async def apply_first_migration(name: str) -> None:
    """The database as the first released msgstore left it: schema version 1 only."""
    conn = await asyncpg.connect(schema_dsn(name))
    try:
        version, ddl = schema.MIGRATIONS[0]
        await conn.execute(ddl)
        await conn.execute("INSERT INTO schema_version(version) VALUES ($1)", version)
    finally:
        await conn.close()


def test_serve_refuses_an_old_schema_until_db_upgrade(tmp_path: Path, pg_empty: str) -> None:
    with pytest.raises(RuntimeError) as refused:
        MsgstoreServer.start(tmp_path / "a", services=("imap",), config=pg_settings(pg_empty))
    assert "The database is empty" in str(refused.value)
    assert "msgstore db upgrade" in str(refused.value)
    asyncio.run(apply_first_migration(pg_empty))
    with pytest.raises(RuntimeError) as refused:
        MsgstoreServer.start(tmp_path / "old", services=("imap",), config=pg_settings(pg_empty))
    assert "schema version 1" in str(refused.value)
    assert "msgstore db upgrade" in str(refused.value)
    config = tmp_path / "a" / "msgstore.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    done = subprocess.run(
        [*CLI, "--config", str(config), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"schema upgraded to version {schema.SCHEMA_VERSION}" in done.stdout
    again = subprocess.run(
        [*CLI, "--config", str(config), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again
    assert "up to date" in again.stdout
    with server(tmp_path / "b", pg_empty) as srv:
        assert srv.admin.add_user("after-upgrade").name


def test_two_servers_over_one_database(tmp_path: Path, pg_name: str) -> None:
    with server(tmp_path / "a", pg_name) as one, server(tmp_path / "b", pg_name) as two:
        user = one.admin.add_user("shared")
        for i in range(6):
            lmtp_deliver(one, user.name, message(f"before {i}"))
        idler = imap(two, user)
        a, b = imap(one, user), imap(two, user)
        try:
            idler.select_folder("INBOX")
            idler.idle()
            lmtp_deliver(one, user.name, message("delivered to the other server"))
            took = wait_for(idler, lambda r: r[1:] == (b"EXISTS",) and r[0] == 7, time.monotonic())
            assert took < BOUND_S, f"EXISTS on the other server after {took:.2f} s"

            a.select_folder("INBOX")
            a.add_flags([1], [b"\\Flagged"])
            took = wait_for(
                idler,
                lambda r: len(r) > 2 and r[1] == b"FETCH" and b"\\Flagged" in str(r[2]).encode(),
                time.monotonic(),
            )
            assert took < BOUND_S, f"FETCH FLAGS on the other server after {took:.2f} s"
            idler.idle_done()

            # Both servers flag and expunge the same mailbox at once.
            b.select_folder("INBOX")
            errors: list[BaseException] = []

            def work(client: IMAPClient, flag: bytes, delete: list[int]) -> None:
                try:
                    for _ in range(5):
                        client.add_flags([1, 2, 3, 4, 5, 6, 7], [flag])
                        client.remove_flags([1, 2, 3, 4, 5, 6, 7], [flag])
                    client.add_flags(delete, [b"\\Deleted"])
                    client.expunge()
                    client.add_flags(client.search("ALL"), [flag])
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [
                threading.Thread(target=work, args=(a, b"$FromA", [2, 3])),
                threading.Thread(target=work, args=(b, b"$FromB", [4])),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            a.noop()
            b.noop()
            state_a = a.fetch(a.search("ALL"), ["FLAGS"])
            state_b = b.fetch(b.search("ALL"), ["FLAGS"])
            strip = {k: {f: v for f, v in d.items() if f != b"SEQ"} for k, d in state_a.items()}
            assert strip == {
                k: {f: v for f, v in d.items() if f != b"SEQ"} for k, d in state_b.items()
            }
            uids = sorted(state_a)
            assert len(uids) == 4, uids
            for values in state_a.values():
                assert b"$FromA" in values[b"FLAGS"]
                assert b"$FromB" in values[b"FLAGS"]
        finally:
            for client in (idler, a, b):
                with contextlib.suppress(Exception):
                    client.logout()
