"""The web pages' small parts, without a browser: token comparison, units, static lookup,
cookie policy, forms built from operations, and the login recorder's batching."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from msgstore.auth.sasl import LoginRecorder
from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.ids import AccountId
from msgstore.management import load_operations
from msgstore.management.accounts import AccountAdd, AccountModify
from msgstore.management.operation import Limit, Secret
from msgstore.web.ui import csrf
from msgstore.web.ui.dates import format_utc, language_tag, negotiate
from msgstore.web.ui.forms import FormError, build_operation, fields_of
from msgstore.web.ui.mailview import decode, html_to_text, part_of
from msgstore.web.ui.render import cell, human_size, when
from msgstore.web.ui.sessions import secure_cookie
from msgstore.web.ui.static import find_static
from tests.storage.support import StoreSpec, new_account
from tests.web_ui.conftest import eml


def _run_apart(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on a loop of its own thread: the browser tests' sync Playwright keeps
    a loop running in the main thread."""
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


def test_an_empty_token_never_matches() -> None:
    """RELIABILITY.md §4 item 9: compare_digest("", "") is True; tokens_match is not."""
    assert not csrf.tokens_match("", "")
    assert not csrf.tokens_match(None, None)
    assert not csrf.tokens_match("", None)
    assert not csrf.tokens_match(None, "")
    assert not csrf.tokens_match("abc", "")
    assert not csrf.tokens_match("", "abc")
    assert not csrf.tokens_match("abc", "abd")
    assert not csrf.tokens_match("a" * 300, "a" * 300)
    assert csrf.tokens_match("abc", "abc")


def _request(headers: dict[str, str], scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": scheme,
            "path": "/",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("127.0.0.1", 8080),
        }
    )


@pytest.mark.parametrize(
    ("headers", "same"),
    [
        ({"host": "mail.example.org"}, True),
        ({"host": "mail.example.org", "sec-fetch-site": "same-origin"}, True),
        ({"host": "mail.example.org", "sec-fetch-site": "none"}, True),
        ({"host": "mail.example.org", "sec-fetch-site": "same-site"}, False),
        ({"host": "mail.example.org", "sec-fetch-site": "cross-site"}, False),
        ({"host": "mail.example.org", "origin": "https://mail.example.org"}, True),
        ({"host": "mail.example.org", "origin": "https://evil.example"}, False),
        ({"host": "mail.example.org", "origin": "null"}, False),
        ({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8081"}, False),
    ],
)
def test_same_origin(headers: dict[str, str], same: bool) -> None:
    assert csrf.same_origin(_request(headers)) is same


@pytest.mark.parametrize(
    ("host", "policy", "secure"),
    [
        ("127.0.0.1:8080", "auto", False),
        ("localhost:8080", "auto", False),
        ("[::1]:8080", "auto", False),
        ("mail.example.org", "auto", True),
        ("192.0.2.7:8080", "auto", True),
        ("127.0.0.1:8080", "always", True),
        ("mail.example.org", "never", False),
    ],
)
def test_secure_cookie_policy(host: str, policy: str, secure: bool) -> None:
    assert secure_cookie(_request({"host": host}), policy) is secure


def test_human_units_and_dates() -> None:
    assert human_size(0) == "0 bytes"
    assert human_size(999) == "999 bytes"
    assert human_size(1536) == "1.5 KB"
    assert human_size(1_048_576) == "1.0 MB"
    assert human_size(10 * 1024**2) == "10.0 MB"
    assert human_size(250 * 1024**2) == "250 MB"
    assert human_size(3 * 1024**4) == "3.0 TB"
    assert human_size(None) == "unlimited"
    stamp = dt.datetime(2026, 11, 29, 10, 5, 7, tzinfo=dt.UTC)
    german = negotiate("de-DE,de;q=0.9,en;q=0.8")
    assert str(when(stamp, german)) == (
        '<time datetime="2026-11-29T10:05:07Z">29.11.2026, 10:05 UTC</time>'
    )
    assert str(cell(stamp, "created", german)) == str(when(stamp, german))
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert "29.11.2026, 09:05 UTC" in str(
        when(dt.datetime(2026, 11, 29, 10, 5, tzinfo=plus_one), german)
    )
    assert str(cell("<b>x</b>")) == "&lt;b&gt;x&lt;/b&gt;"
    assert str(cell(2048, "size_octets")) == "2.0 KB"
    assert str(cell(None, "storage_limit_kib")) == "unlimited"
    assert str(cell({"anyone": "lr"})) == "anyone: lr"
    assert str(cell({"<a>": ["<b>", 1]})) == "&lt;a&gt;: &lt;b&gt;, 1"


@pytest.mark.parametrize(
    ("header", "tag", "text"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de-DE", "29.11.2026, 10:05 UTC"),
        ("en-US,en;q=0.9", "en-US", "Nov 29, 2026, 10:05\u202fAM UTC"),
        ("en-GB", "en-GB", "29 Nov 2026, 10:05 UTC"),
        ("fr;q=0.5, ja;q=0.8", "ja", "2026/11/29 10:05 UTC"),  # by weight, not order
        ("xx-YY, *, en-GB;q=0", "en", "Nov 29, 2026, 10:05\u202fAM UTC"),  # nothing usable
        ("de;q=abc, <script>, en-GB;q=0.1", "en-GB", "29 Nov 2026, 10:05 UTC"),
        (None, "en", "Nov 29, 2026, 10:05\u202fAM UTC"),
        ("x" * 5000, "en", "Nov 29, 2026, 10:05\u202fAM UTC"),
    ],
)
def test_the_locale_comes_from_accept_language(header: str | None, tag: str, text: str) -> None:
    locale = negotiate(header)
    assert language_tag(locale) == tag
    assert format_utc(dt.datetime(2026, 11, 29, 10, 5, tzinfo=dt.UTC), locale) == text


def test_messages_decode_for_the_page() -> None:
    """mailview.py on the test messages and on broken ones (the browser test shows them)."""
    decoded = decode(eml("alternative-qp-utf8-attachment"))
    assert decoded.subject == "Grüße aus Köln ✓"
    assert dict(decoded.fields)["To"] == "Zoë <zoe@example.net>"
    assert decoded.date == dt.datetime(2026, 11, 29, 9, 5, 7, tzinfo=dt.UTC)
    assert decoded.text == "Schöne Grüße, € 5 und mehr."
    assert [(a.filename, a.content_type, a.size) for a in decoded.attachments] == [
        ("Bericht März.pdf", "application/pdf", 1400)
    ]
    index = decoded.attachments[0].index
    assert part_of(eml("alternative-qp-utf8-attachment"), index) == (
        "Bericht März.pdf",
        b"%PDF-1.4 fake " * 100,
    )
    assert part_of(eml("alternative-qp-utf8-attachment"), 99) is None
    html_only = decode(eml("html-only-script"))
    assert html_only.from_html
    assert html_only.text == "Visible & bold\n\n• one\n• two"
    assert html_only.date is None
    # Broken input still gives a page: unknown charset, bad base64, a broken address field,
    # no end boundary, names that try to leave the download directory.
    broken = (
        b"From: =?x-unknown?Q?abc?= <<<@@\r\nSubject: =?utf-8?B?!!!?=\r\n"
        b"Date: yesterday\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@aGVsbG8=\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nx\r\n'
    )
    decoded = decode(broken)
    assert decoded.date is None
    assert "hello" in decoded.text
    assert [a.filename for a in decoded.attachments] == ["_.._etc_passwd"]
    deep = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"".join(
        f"--{'a' * n}\r\nContent-Type: multipart/mixed; boundary={'a' * (n + 1)}\r\n\r\n".encode()
        for n in range(1, 60)
    )
    assert decode(deep).attachments  # nesting stops at MAX_DEPTH, the rest is one part
    assert html_to_text("<p>a<script>b</script>c</p><style>d</style>&lt;e&gt;") == "ac\n\n<e>"


def test_static_lookup_stays_inside_its_directories(tmp_path: Path) -> None:
    site, builtin = tmp_path / "site", tmp_path / "builtin"
    site.mkdir()
    builtin.mkdir()
    (site / "style.css").write_text("site")
    (builtin / "style.css").write_text("builtin")
    (builtin / "app.js").write_text("js")
    (tmp_path / "secret").write_text("no")
    (site / "link").symlink_to(tmp_path / "secret")
    dirs = [site, builtin]
    assert find_static(dirs, "style.css") == (site / "style.css").resolve()
    assert find_static(dirs, "app.js") == (builtin / "app.js").resolve()
    for bad in ("../secret", "link", ".hidden", "", "a//b", "x\\y", "/etc/passwd"):
        assert find_static(dirs, bad) is None, bad


def test_forms_come_from_the_operations_declaration() -> None:
    spec = load_operations()["account add"]
    fields = {f.name: f for f in fields_of(spec)}
    assert fields["password"].widget == "password"
    assert fields["manager"].widget == "checkbox"
    assert fields["kind"].widget == "select"
    op = build_operation(
        spec, {"name": "bob", "password": "Pw-123456", "quota": "10M", "manager": "on"}
    )
    assert isinstance(op, AccountAdd)
    assert op.quota == Limit(10 * 1024 * 1024)
    assert op.password == Secret("Pw-123456")
    assert op.manager is True
    with pytest.raises(FormError) as exc:
        build_operation(spec, {"name": "bad name", "password": "", "quota": "lots"})
    assert set(exc.value.fields) == {"name", "password", "quota"}
    modify = load_operations()["account modify"]
    op = build_operation(modify, {"login_disabled": "off"}, {"name": "bob"})
    assert isinstance(op, AccountModify)
    assert op.login_disabled is False
    assert op.manager is None


def test_logins_are_written_in_one_batch(tmp_path: Path) -> None:
    """Many logins cost one write, when flushed; one row per protocol and address."""

    async def scenario() -> None:
        backend = await StoreSpec("local", tmp_path / "data").open()
        try:
            alice = await new_account(backend, "alice")
            recorder = LoginRecorder(backend, "imap", flush_s=0.2)
            for _ in range(100):
                recorder.note(alice, "192.0.2.1")
            recorder.note(alice, "192.0.2.2")
            assert await backend.last_logins(alice.id) == []
            await recorder.flush()
            logins = await backend.last_logins(alice.id)
            assert sorted(r.address for r in logins) == ["192.0.2.1", "192.0.2.2"]
            assert {r.protocol for r in logins} == {"imap"}
            ghost = AccountInfo(
                AccountId(999_999), "ghost", AccountKind.IMAP, False, False, False, None, None,
                dt.datetime.now(dt.UTC),
            )  # fmt: skip
            recorder.note(ghost, "192.0.2.3")  # a deleted account is skipped, no error
            await recorder.flush()
            recorder.note(alice, "192.0.2.4")
            # The timer writes it without a flush: after 0.2 s, then the write, which a loaded
            # machine can stretch to seconds.
            deadline = asyncio.get_running_loop().time() + 15
            while len(await backend.last_logins(alice.id)) < 3:
                assert asyncio.get_running_loop().time() < deadline, "the timer wrote nothing"
                await asyncio.sleep(0.05)
            assert len(await backend.last_logins(alice.id)) == 3
            recorder.close()
        finally:
            await backend.close()

    _run_apart(scenario())
