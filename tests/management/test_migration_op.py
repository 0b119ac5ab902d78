"""Migration runs through the Python API: the operation runs the engine it is given, reports
what it did, stops at a time limit with TEMP (audited; a second run resumes), and never
writes the IMAP source password to the audit log."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from msgstore.api import Store
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.migration import MigrationReport
from msgstore.management.operation import ParamError


def _mbox(path: Path, count: int) -> Path:
    lines = []
    for n in range(count):
        lines.append(f"From s@example.org Sat Jan  1 00:00:00 2000\nSubject: {n}\n\nbody {n}\n\n")
    path.write_text("".join(lines))
    return path


async def test_an_mbox_run_then_a_rerun(store: Store, tmp_path: Path) -> None:
    spool = _mbox(tmp_path / "old", 7)
    seen: list[tuple[str, int, int]] = []
    report = await store.with_progress(lambda *a: seen.append(a)).migrate.mbox(
        spool, account="bob", create=True
    )
    assert isinstance(report, MigrationReport)
    assert (report.failed, report.accounts, report.messages) == (False, 1, 7)
    assert seen[-1] == ("bob: INBOX", 7, 7)
    assert (await store.mailboxes.status("bob", "INBOX")).messages == 7
    again = await store.migrate.mbox(spool, account="bob")
    assert (again.messages, again.duplicates) == (0, 7)
    assert report.lines()[0].startswith("1 account(s), 1 folder(s): copied 7 message(s)")


async def test_a_time_limit_stops_the_run_with_temp_and_a_rerun_finishes(
    store: Store, tmp_path: Path
) -> None:
    spool = _mbox(tmp_path / "big", 400)
    with pytest.raises(StoreError) as err:
        await store.with_time_limit(0.05).migrate.mbox(spool, account="carl", create=True)
    assert err.value.kind is ErrorKind.TEMP
    assert "run it again to resume" in err.value.public
    records = await store.audit.list(operation="migrate mbox")
    assert records[0].outcome == "temp"
    report = await store.migrate.mbox(spool, account="carl", create=True)
    assert report.messages + report.duplicates == 400
    assert (await store.mailboxes.status("carl", "INBOX")).messages == 400


async def test_without_an_engine_it_is_not_possible(store: Store, tmp_path: Path) -> None:
    bare = Store(dataclasses.replace(store._ctx, migrator=None))
    with pytest.raises(StoreError) as err:
        await bare.migrate.mbox(_mbox(tmp_path / "m", 1), account="dora", create=True)
    assert err.value.kind is ErrorKind.NOT_POSSIBLE


async def test_bad_parameters_name_their_field(store: Store) -> None:
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: store.migrate.mbox(), "path"),
        (lambda: store.migrate.mbox("x", all_from_passwd="/etc/passwd"), "path"),
        (lambda: store.migrate.maildir("x", "anyone"), "account"),
        (lambda: store.migrate.imap("bad host", "u", "pw"), "host"),
        (lambda: store.migrate.imap("h", "u", "pw", port=70000), "port"),
        (lambda: store.migrate.pop(), "accounts"),
        (lambda: store.migrate.pop("a", "b", old_address="x@example.org"), "old_address"),
    ]
    for call, field in cases:
        with pytest.raises(ParamError) as err:
            await call()
        assert field in err.value.fields, (field, err.value)


async def test_the_source_password_is_never_audited(store: Store) -> None:
    await store.accounts.add("erin", password="pw")
    secret = "Source-Secret-9876"
    report = await store.migrate.imap("127.0.0.1", "erin", secret, port=1, security="plain")
    assert report.failed  # nothing listens on port 1
    records = await store.audit.list(operation="migrate imap")
    assert records[0].params["password"] == "<redacted>"
    assert secret not in json.dumps([r.params for r in records])
    assert secret not in repr(report)
