"""``account export`` / ``account restore`` on PostgreSQL, in the backend-neutral archive:
round trips on postgres, local -> postgres -> local through archives (and a local format-1
archive into postgres), hostile or inconsistent archives refused with the store unchanged,
and exports that stay consistent while a server delivers over LMTP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import smtplib
import sqlite3  # noqa: TID251 -- the test plants a trigger in an archive's index.db
import tarfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # noqa: TID251 -- the test reads the tables
import pytest

from msgstore.auth.passwords import hash_password
from msgstore.config import load_config
from msgstore.core.acl import Rights
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import DELETED, SEEN, FlagOp
from msgstore.core.ids import AccountId, UidSet
from msgstore.core.names import MailboxName
from msgstore.management.backup import AccountRestore
from msgstore.management.operation import ManagementContext, run_operation
from msgstore.storage.base import Backend, Want
from msgstore.storage.local import LocalBackend
from msgstore.storage.postgres import PostgresBackend
from tests.conversations.harness import MsgstoreServer, message
from tests.storage.pg import schema_dsn
from tests.storage.postgres.conftest import pg_settings
from tests.storage.support import append, inbox_of, new_account, read_body

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
BIG = message("big", "z" * 998 + "\r\n") + (b"y" * 998 + b"\r\n") * 600  # > 2 chunks


@contextlib.asynccontextmanager
async def pg(name: str, tmp_path: Path) -> AsyncIterator[PostgresBackend]:
    backend = await PostgresBackend.open(schema_dsn(name), tmp_path / "pgdata")
    try:
        yield backend
    finally:
        await backend.close()


async def fill(backend: Backend, name: str) -> AccountId:
    """An account with what an archive must keep: flags, keywords, dates, UIDLs, gaps in
    UIDs, nested mailboxes, special use, subscriptions, ACLs, a multi-chunk message."""
    other = await new_account(backend, f"{name}-friend")
    info = await new_account(backend, name)
    inbox = await inbox_of(backend, info.id)
    for i in range(5):
        await append(
            backend,
            info.id,
            inbox,
            message(f"m{i}", f"body {i}\r\n" * (i * 40 + 1)),
            flags=frozenset({SEEN, "$Label1"} if i % 2 else {"\\Flagged"}),
            internal_date=WHEN,
            uidl=f"uidl-{i}" if i == 1 else None,
        )
    await append(backend, info.id, inbox, BIG, internal_date=WHEN)
    await backend.store_flags(
        info.id, inbox, UidSet.from_uids([2]), FlagOp.ADD, frozenset({DELETED})
    )
    await backend.expunge(info.id, inbox)
    work = await backend.create_mailbox(info.id, MailboxName("Work/Projects"))
    await backend.copy(info.id, inbox, UidSet.from_uids([1, 3]), info.id, work.id)
    await backend.create_mailbox(info.id, MailboxName("Sent"), special_use="\\Sent")
    await backend.set_subscribed(info.id, MailboxName("Work/Projects"), True)
    await backend.set_acl(info.id, work.id, other.name, Rights.parse("lrs"))
    return info.id


async def account_state(backend: Backend, account: AccountId, *, ids: bool) -> dict[str, Any]:
    """What a client sees of one account (with UIDVALIDITY and modseqs when ``ids``)."""
    quota = await backend.get_quota(account)
    out: dict[str, Any] = {
        "usage": (quota.storage_used_octets, quota.messages_used),
        "subscriptions": sorted(await backend.list_subscriptions(account)),
    }
    for box in await backend.list_mailboxes(account):
        status = await backend.mailbox_status(account, box.id)
        metas = await backend.fetch_meta(account, box.id, UidSet.all(), Want.ALL)
        out[box.name] = {
            "status": (status.uidnext, status.messages, status.size_octets)
            + ((status.uidvalidity, status.highestmodseq) if ids else ()),
            "special": box.special_use,
            "acl": {k: str(v) for k, v in (await backend.get_acl(account, box.id)).items()},
            "messages": [
                (m.uid, m.flags, m.internal_date, m.sha256, m.size, m.envelope, m.bodystructure)
                + ((m.modseq, m.uidl) if ids else ())
                for m in metas
            ],
            "bodies": [
                hashlib.sha256(await read_body(backend, account, box.id, m.uid)).digest()
                for m in metas
            ],
        }
    return out


def context(backend: Backend, tmp_path: Path) -> ManagementContext:
    return ManagementContext(backend, load_config(data_dir=tmp_path / "cfg"), hash_password)


async def restore(
    backend: Backend, tmp_path: Path, name: str, archive: Path, *, keep: bool = True
) -> Any:
    return await run_operation(
        AccountRestore(name=name, input=str(archive), keep_uidvalidity=keep),
        context(backend, tmp_path),
    )


async def test_round_trip_on_postgres(tmp_path: Path, pg_name: str) -> None:
    async with pg(pg_name, tmp_path) as backend:
        alice = await fill(backend, "alice")
        before = await account_state(backend, alice, ids=True)
        seen: list[tuple[int, int]] = []
        summary = await backend.export_account(
            alice, tmp_path / "a.tar", progress=lambda *a: seen.append(a)
        )
        assert (summary.account, summary.messages, summary.mailboxes) == ("alice", 7, 2)
        assert seen[-1] == (7, 7)
        with tarfile.open(tmp_path / "a.tar") as tar:
            names = tar.getnames()
            manifest = json.loads(tar.extractfile("msgstore-export.json").read())  # type: ignore[union-attr]
        assert manifest["format"] == 2
        assert "index.db" not in names
        copy = await new_account(backend, "copy")
        report = await restore(backend, tmp_path, "copy", tmp_path / "a.tar")
        assert report.messages == 7
        assert report.reconstruct.clean, report.reconstruct.discrepancies
        assert await account_state(backend, copy.id, ids=True) == before
        # Without --keep-uidvalidity: the same messages under new UIDVALIDITYs.
        other = await new_account(backend, "other")
        report = await restore(backend, tmp_path, "other", tmp_path / "a.tar", keep=False)
        assert {d.code for d in report.reconstruct.discrepancies} == {"uidvalidity-changed"}
        after = await account_state(backend, other.id, ids=False)
        assert after == await account_state(backend, alice, ids=False)
        inbox = await inbox_of(backend, other.id)
        assert (await backend.mailbox_status(other.id, inbox)).uidvalidity != before["INBOX"][
            "status"
        ][3]
        # Into an account holding mail: refused, nothing changed.
        with pytest.raises(StoreError) as err:
            await backend.restore_account(alice, tmp_path / "a.tar")
        assert err.value.kind is ErrorKind.NOT_POSSIBLE
        assert await account_state(backend, alice, ids=True) == before


async def test_local_to_postgres_and_back(tmp_path: Path, pg_name: str) -> None:
    local = await LocalBackend.open(tmp_path / "local")
    try:
        alice = await fill(local, "alice")
        original = await account_state(local, alice, ids=True)
        await local.export_account(alice, tmp_path / "local.tar")
    finally:
        await local.close()
    async with pg(pg_name, tmp_path) as backend:
        target = await new_account(backend, "alice")
        await restore(backend, tmp_path, "alice", tmp_path / "local.tar")
        assert await account_state(backend, target.id, ids=True) == original
        await backend.export_account(target.id, tmp_path / "pg.tar")
        # A format-1 archive of the local backend (index.db and mail/ only) as well.
        legacy = await new_account(backend, "legacy")
        old = format_one(tmp_path / "local.tar", tmp_path / "old.tar")
        await restore(backend, tmp_path, "legacy", old)
        assert await account_state(backend, legacy.id, ids=True) == original
    back = await LocalBackend.open(tmp_path / "local2")
    try:
        again = await new_account(back, "alice")
        await restore(back, tmp_path, "alice", tmp_path / "pg.tar")
        state = await account_state(back, again.id, ids=True)
    finally:
        await back.close()
    assert state == original


def format_one(source: Path, target: Path) -> Path:
    with tarfile.open(source) as tar, tarfile.open(target, "w") as out:
        for member in tar.getmembers():
            if member.name in ("account.json", "messages.jsonl"):
                continue
            if member.name == "msgstore-export.json":
                data = json.dumps({"format": 1, "account": "alice"}).encode()
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
                continue
            out.addfile(member, tar.extractfile(member) if member.isreg() else None)
    return target


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def rewrite(source: Path, target: Path, change: Any) -> Path:
    """Copy an archive, ``change(name, data)`` deciding each member's new content (None:
    dropped), then extra members ``change.extra``."""
    with tarfile.open(source) as tar, tarfile.open(target, "w") as out:
        for member in tar.getmembers():
            if not member.isreg():
                out.addfile(member)
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            new = change(member.name, data)
            if new is None:
                continue
            member.size = len(new)
            out.addfile(member, io.BytesIO(new))
        for info, data in getattr(change, "extra", []):
            if data is not None:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            else:
                out.addfile(info)
    return target


class Extra:
    def __init__(
        self, extra: list[tuple[tarfile.TarInfo, bytes | None]], edit: Any = None
    ) -> None:
        self.extra = extra
        self.edit = edit

    def __call__(self, name: str, data: bytes) -> bytes | None:
        return data if self.edit is None else self.edit(name, data)


def _lines(edit: Any) -> Any:
    def change(name: str, data: bytes) -> bytes | None:
        if name != "messages.jsonl":
            return data
        return b"".join(edit([json.loads(x) for x in data.splitlines()]))

    return change


def _dump(items: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(i).encode() + b"\n" for i in items]


BAD: dict[str, tuple[Any, ErrorKind, str]] = {
    "dotdot": (Extra([(_info("mail/1/../../../../evil"), b"x")]), ErrorKind.PARAMS, "'..'"),
    "absolute": (Extra([(_info("/tmp/evil"), b"x")]), ErrorKind.PARAMS, "absolute path"),
    "symlink": (
        Extra([(_info("mail/9/1", tarfile.SYMTYPE, "/etc/passwd"), None)]),
        ErrorKind.PARAMS,
        "link to",
    ),
    "hardlink": (
        Extra([(_info("mail/9/1", tarfile.LNKTYPE, "../../../etc/passwd"), None)]),
        ErrorKind.PARAMS,
        "link to",
    ),
    "device": (Extra([(_info("mail/9/1", tarfile.CHRTYPE), None)]), ErrorKind.PARAMS, "device"),
    "stranger": (Extra([(_info("notes.txt"), b"x")]), ErrorKind.PARAMS, "not part of"),
    "no-records": (
        lambda n, d: None if n in ("messages.jsonl", "account.json") else d,
        ErrorKind.PARAMS,
        "not an export",
    ),
    "bad-json": (
        lambda n, d: b"{not json" if n == "account.json" else d,
        ErrorKind.PARAMS,
        "account.json is not JSON",
    ),
    "future-format": (
        lambda n, d: json.dumps({"format": 99}).encode() if n == "msgstore-export.json" else d,
        ErrorKind.PARAMS,
        "format 99",
    ),
    # The last record goes: its file has no record (found only after the others are in).
    "file-without-record": (
        _lines(lambda items: _dump(items[:-1])),
        ErrorKind.PARAMS,
        "without a record",
    ),
    "record-without-file": (
        _lines(lambda items: _dump([*items, {**items[-1], "uid": 4000}])),
        ErrorKind.PARAMS,
        "has no mail/",
    ),
    "twice": (_lines(lambda items: _dump([*items, items[-1]])), ErrorKind.PARAMS, ""),
    "content-changed": (
        lambda n, d: d + b"tampered\r\n" if n.startswith("mail/") and len(d) > 500_000 else d,
        ErrorKind.PARAMS,
        "differs from its record",
    ),
    "bad-flag": (
        _lines(lambda items: _dump([{**items[0], "flags": ["\\Recent"]}, *items[1:]])),
        ErrorKind.PARAMS,
        "bad flag",
    ),
    "bad-name": (
        lambda n, d: d.replace(b'"Work/Projects"', b'"Work//x"') if n == "account.json" else d,
        ErrorKind.PARAMS,
        "mailbox name",
    ),
}


async def blob_count(name: str) -> int:
    conn = await asyncpg.connect(schema_dsn(name))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM blobs"))
    finally:
        await conn.close()


@pytest.mark.parametrize("case", sorted(BAD))
async def test_hostile_or_inconsistent_archives_change_nothing(
    tmp_path: Path, pg_name: str, case: str
) -> None:
    change, kind, text = BAD[case]
    async with pg(pg_name, tmp_path) as backend:
        alice = await fill(backend, "alice")
        await backend.export_account(alice, tmp_path / "good.tar")
        bad = rewrite(tmp_path / "good.tar", tmp_path / f"{case}.tar", change)
        bob = await new_account(backend, "bob")
        await backend.create_mailbox(bob.id, MailboxName("Keep"))
        before = await account_state(backend, bob.id, ids=True)
        blobs = await blob_count(pg_name)
        with pytest.raises(StoreError) as err:
            await restore(backend, tmp_path, "bob", bad)
        assert err.value.kind is kind, err.value
        assert text in err.value.public
        assert "\n" not in err.value.public
        assert await account_state(backend, bob.id, ids=True) == before
        assert await blob_count(pg_name) == blobs
        assert not (tmp_path / "evil").exists()
        tmp_dir = tmp_path / "pgdata" / "tmp"
        assert not [p for p in tmp_dir.iterdir() if p.name.endswith(".restore")]


#: Checks of the records, which the local backend does on its own when it restores an archive
#: without index.db (one written by the postgres backend).
LOCAL_CASES = (
    "file-without-record",
    "record-without-file",
    "twice",
    "content-changed",
    "bad-flag",
)


@pytest.mark.parametrize("case", LOCAL_CASES)
async def test_inconsistent_postgres_archives_change_nothing_on_local(
    tmp_path: Path, pg_name: str, case: str
) -> None:
    change, kind, text = BAD[case]
    async with pg(pg_name, tmp_path) as backend:
        alice = await fill(backend, "alice")
        await backend.export_account(alice, tmp_path / "good.tar")
    bad = rewrite(tmp_path / "good.tar", tmp_path / f"{case}.tar", change)
    local = await LocalBackend.open(tmp_path / "local")
    try:
        bob = await new_account(local, "bob")
        await local.create_mailbox(bob.id, MailboxName("Keep"))
        before = await account_state(local, bob.id, ids=True)
        with pytest.raises(StoreError) as err:
            await restore(local, tmp_path, "bob", bad)
        assert err.value.kind is kind, err.value
        assert text in err.value.public
        assert await account_state(local, bob.id, ids=True) == before
        tmp_dir = tmp_path / "local" / "tmp"
        assert not [p for p in tmp_dir.iterdir() if p.name.endswith(".restore")]
    finally:
        await local.close()


def _lmtp_loop(port: int, rcpt: str, stop: threading.Event, sent: list[int]) -> None:
    n = 0
    with smtplib.LMTP("127.0.0.1", port, timeout=10) as client:
        while not stop.is_set():
            n += 1
            client.sendmail(
                "s@example.org", [rcpt], message(f"loop {n}", "x" * (n % 700) + "\r\n")
            )
            sent.append(n)


async def test_export_while_a_server_delivers_over_lmtp(tmp_path: Path, pg_name: str) -> None:
    srv = MsgstoreServer.start(tmp_path / "srv", services=("lmtp",), config=pg_settings(pg_name))
    stop = threading.Event()
    sent: list[int] = []
    try:
        user = srv.admin.add_user("busy")
        worker = threading.Thread(
            target=_lmtp_loop, args=(srv.port("lmtp.listen"), user.name, stop, sent)
        )
        worker.start()
        try:
            async with pg(pg_name, tmp_path) as backend:
                account = (await backend.get_account(user.name)).id
                counts = []
                for n in range(4):
                    while len(sent) < 5 * (n + 1):  # noqa: ASYNC110 (another thread's count)
                        await asyncio.sleep(0.05)
                    path = tmp_path / f"busy-{n}.tar"
                    summary = await backend.export_account(account, path)
                    counts.append(summary.messages)
                    with tarfile.open(path) as tar:
                        lines = tar.extractfile("messages.jsonl").read().splitlines()  # type: ignore[union-attr]
                        records = [json.loads(x) for x in lines]
                        header = json.loads(tar.extractfile("account.json").read())  # type: ignore[union-attr]
                        members = {
                            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                            for m in tar.getmembers()
                            if m.isreg() and m.name.startswith("mail/")
                        }
                    assert len(records) == summary.messages == len(members)
                    for r in records:
                        body = members[f"mail/{r['mailbox']}/{r['uid']}"]
                        assert hashlib.sha256(body).hexdigest() == r["sha256"]
                        assert len(body) == r["size"]
                    (uidnext,) = [
                        b["uidnext"] for b in header["mailboxes"] if b["name"] == "INBOX"
                    ]
                    assert max(r["uid"] for r in records) < uidnext
        finally:
            stop.set()
            worker.join(30)
    finally:
        srv.stop()
    assert len(set(counts)) > 1, counts  # mail really was arriving meanwhile


async def test_an_index_with_a_trigger_is_refused_by_both(tmp_path: Path, pg_name: str) -> None:
    """A local archive's index.db becomes the live index: SQL hidden in it (a trigger) would
    run on every later change, so it is refused (and never read by the postgres backend)."""
    local = await LocalBackend.open(tmp_path / "local")
    try:
        alice = await fill(local, "alice")
        await local.export_account(alice, tmp_path / "local.tar")

        def add_trigger(name: str, data: bytes) -> bytes | None:
            if name != "index.db":
                return data
            path = tmp_path / "index.db"
            path.write_bytes(data)
            conn = sqlite3.connect(path)
            conn.execute(
                "CREATE TRIGGER evil AFTER INSERT ON messages BEGIN DELETE FROM messages; END"
            )
            conn.commit()
            conn.close()
            return path.read_bytes()

        bad = rewrite(tmp_path / "local.tar", tmp_path / "trigger.tar", add_trigger)
        bob = await new_account(local, "bob")
        with pytest.raises(StoreError) as err:
            await restore(local, tmp_path, "bob", bad)
        assert "trigger" in err.value.public
        assert (await local.get_quota(bob.id)).messages_used == 0
    finally:
        await local.close()
    async with pg(pg_name, tmp_path) as backend:
        carol = await new_account(backend, "carol")
        old = format_one(bad, tmp_path / "trigger1.tar")
        with pytest.raises(StoreError) as err:
            await restore(backend, tmp_path, "carol", old)
        assert "trigger" in err.value.public
        assert (await backend.get_quota(carol.id)).messages_used == 0
