"""An mbox written by Python's ``mailbox`` module (mboxo, as MTAs write /var/mail/USER), with
``From `` lines in bodies that the writer had to quote and some it did not, flags in
Status/X-Status, keywords in X-Keywords and dates in the From_ lines: migrated byte for byte
(minus the mbox bookkeeping fields), with flags and internal dates, and only once."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
from pathlib import Path

from msgstore.migrate.mbox import from_line_date
from msgstore.mime.normalize import normalize
from tests.migrate.conftest import expect, msgstore, read_store

BODIES = [
    b"Subject: one\nMessage-ID: <one@example.org>\n\nFrom the start of a line\n"
    b">From already quoted\nFrom\nFromage\n\nFrom after an empty line\n",
    b"Subject: two\nX-Keywords: Work $Label1\n\nplain body\n\n\n",
    b"Subject: three\nContent-Type: text/plain; charset=utf-8\n\ncaf\xc3\xa9\r\nmixed\r\nends\n",
    b"Subject: four\nReferences: <a@b>\n <c@d>\n\nFrom: not a header\n  From indented\n",
]
FLAGS = ["RO", "", "RAF", "OD"]
DATES = [
    (2023, 5, 6, 7, 8, 9),
    (2001, 1, 1, 0, 0, 0),
    (2026, 2, 28, 23, 59, 59),
    (1999, 12, 31, 12, 0, 1),
]
EXPECTED_FLAGS = [
    {"\\Seen"},
    {"Work", "$Label1"},
    {"\\Seen", "\\Answered", "\\Flagged"},
    {"\\Deleted"},
]


def write_mbox(path: Path) -> list[bytes]:
    """Write the mbox; returns each message's expected stored bytes."""
    box = mailbox.mbox(path)
    for body, flags, date in zip(BODIES, FLAGS, DATES, strict=True):
        message = mailbox.mboxMessage(body)
        if flags:
            message.set_flags(flags)
        message.set_from("sender@example.org", (*date, 0, 0, 0))
        box.add(message)
    box.flush()
    expected = []
    for key in box.keys():  # noqa: SIM118 -- iterating a mailbox yields messages
        raw = box.get_bytes(key)
        head, sep, rest = raw.partition(b"\n\n")
        head = re.sub(rb"(?m)^(Status|X-Status|X-Keywords):.*\n?", b"", head + b"\n")[:-1]
        expected.append(normalize(head + sep + rest))
    box.close()
    return expected


def test_mbox_written_by_python_mailbox(tmp_path: Path) -> None:
    spool = tmp_path / "carol"
    expected = write_mbox(spool)
    assert b"\n>From the start" in spool.read_bytes()  # the writer did quote
    data = tmp_path / "data"
    result = msgstore(data, "migrate", "mbox", str(spool), "--create", "--quiet")
    assert result.code == 0, result
    assert "copied 4 message(s)" in result.out, result.out
    box = read_store(data, "carol")["INBOX"]
    stored = [box.messages[uid] for uid in sorted(box.messages)]
    assert [m.data for m in stored] == expected
    assert [set(m.flags) for m in stored] == EXPECTED_FLAGS
    assert [m.internal_date for m in stored] == [dt.datetime(*d, tzinfo=dt.UTC) for d in DATES]
    again = msgstore(data, "migrate", "mbox", str(spool), "--quiet")
    expect(again, 0, "copied 0 message(s)", "4 already present")
    assert len(read_store(data, "carol")["INBOX"].messages) == 4


def test_mboxrd_unquotes_one_level(tmp_path: Path) -> None:
    spool = tmp_path / "dave"
    spool.write_bytes(
        b"From x@y Sat Jan  1 00:00:00 2000\nSubject: rd\n\n>From one\n>>From two\n>Fromage\n"
    )
    data = tmp_path / "data"
    pipe = "|/usr/bin/msgstore deliver --to {user}"
    result = msgstore(
        data, "migrate", "mbox", str(spool), "--create", "--format", "mboxrd", "--quiet",
        "--forward-to", pipe,
    )  # fmt: skip
    # No home directory known: the postmaster gets the /etc/aliases line.
    expect(result, 0, 'dave: "|/usr/bin/msgstore deliver --to dave"')
    (message,) = read_store(data, "dave")["INBOX"].messages.values()
    assert message.data == b"Subject: rd\r\n\r\nFrom one\r\n>From two\r\n>Fromage\r\n"


def test_from_line_dates() -> None:
    assert from_line_date(b"From a@b Thu Nov 29 08:35:32 2026") == dt.datetime(
        2026, 11, 29, 8, 35, 32, tzinfo=dt.UTC
    )
    with_zone = from_line_date(b"From a@b Thu Nov 29 08:35:32 2026 +0100")
    assert with_zone is not None
    assert with_zone.utcoffset() == dt.timedelta(hours=1)
    assert from_line_date(b"From a@b Thu Nov  1 08:35 2026") == dt.datetime(
        2026, 11, 1, 8, 35, tzinfo=dt.UTC
    )
    assert from_line_date(b"From a@b whenever") is None
