"""Header-level pieces, table-driven: RFC 5322 address lists for ENVELOPE, RFC 2047 words,
RFC 2045/2231 parameters, IMAP string encoding, RFC 5256 sort keys and the search index."""

from __future__ import annotations

import pytest

from msgstore.mime import normalize, parse_message
from msgstore.mime.address import Address, parse_address_list
from msgstore.mime.headers import decode_words, parse_parameters
from msgstore.mime.sortkeys import base_subject, sent_date
from msgstore.mime.wire import nstring, string


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a@b.example", [(None, None, b"a", b"b.example")]),
        (b"Joe <j@x.example>", [(b"Joe", None, b"j", b"x.example")]),
        (b'"Doe, J." <j@x>', [(b"Doe, J.", None, b"j", b"x")]),
        (b'"a \\" b" <j@x>', [(b'a " b', None, b"j", b"x")]),
        (b"j@x (Joe (the) Man)", [(b"Joe (the) Man", None, b"j", b"x")]),
        (b"(before) j@x", [(None, None, b"j", b"x")]),
        (b"john . doe @ x . example", [(None, None, b"john.doe", b"x.example")]),
        (b'"john doe"@x', [(None, None, b"john doe", b"x")]),
        (b"<@r1,@r2:u@h>", [(None, b"@r1,@r2", b"u", b"h")]),
        (b"u@[192.0.2.1]", [(None, None, b"u", b"[192.0.2.1]")]),
        (b"<>", [(None, None, b"", b"")]),
        (b"user", [(None, None, b"user", b"")]),
        (b'"" <e@x>', [(None, None, b"e", b"x")]),
        (
            b"G: a@x, B <b@y>;",
            [
                (None, None, b"G", None),
                (None, None, b"a", b"x"),
                (b"B", None, b"b", b"y"),
                (None, None, None, None),
            ],
        ),
        (b"empty:;", [(None, None, b"empty", None), (None, None, None, None)]),
        (
            b"G: a@x",
            [(None, None, b"G", None), (None, None, b"a", b"x"), (None, None, None, None)],
        ),
        (b"a@x,, ,b@y", [(None, None, b"a", b"x"), (None, None, b"b", b"y")]),
        (b"A <a@x> junk, b@y", [(b"A", None, b"a", b"x"), (None, None, b"b", b"y")]),
        (b"<a@x, b@y", [(None, None, b"a", b"x"), (None, None, b"b", b"y")]),
        (b"=?utf-8?q?J=C3=B6rg?= <j@x>", [(b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x")]),
        (b"J\xc3\xb6rg <j@x>", [(b"J\xc3\xb6rg", None, b"j", b"x")]),
    ],
)
def test_address_lists(value: bytes, expected: list[Address]) -> None:
    """RFC 5322 §3.4 address lists become IMAP address structures (RFC 3501 §7.4.2)."""
    addresses, _ = parse_address_list(value)
    assert addresses == expected


def test_address_defects() -> None:
    """Unclosed groups and stray semicolons are reported, not raised."""
    assert parse_address_list(b"G: a@x")[1] == ["address-group-not-closed"]
    assert parse_address_list(b"a@x; b@y")[1] == ["address-stray-semicolon"]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"plain", "plain"),
        (b"=?utf-8?q?caf=C3=A9?=", "café"),
        (b"=?UTF-8?B?Y2Fmw6k=?=", "café"),
        (b"=?utf-8?b?Y2Fmw6k?=", "café"),  # missing padding is tolerated
        (b"=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=", "ab"),  # RFC 2047 §8: space dropped
        (b"=?iso-8859-1?q?a?=  \r\n  =?iso-8859-1?q?b?=", "ab"),
        (b"=?iso-8859-1?q?a?= x =?iso-8859-1?q?b?=", "a x b"),
        (b"=?iso-8859-1?q?a_b?=", "a b"),
        (b"=?utf-8?b?4oI=?==?utf-8?b?rA==?=", "€"),  # a character split across two words
        (b"=?iso-8859-1?q?=E9?= =?iso-8859-2?q?=B1?=", "éą"),
        (b"=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 §5 language suffix
        (b"=?x-unknown?q?abc?= ok", "=?x-unknown?q?abc?= ok"),
        (b"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
        (b"raw \xc3\xa9", "raw é"),
        (b"latin \xe9", "latin é"),
    ],
)
def test_encoded_words(raw: bytes, text: str) -> None:
    """RFC 2047 decoding for the search index; bad words stay as written."""
    assert decode_words(raw) == text


@pytest.mark.parametrize(
    ("value", "main", "params"),
    [
        (b"text/plain", b"text/plain", []),
        (b"Text/HTML; Charset=UTF-8", b"text/html", [(b"charset", b"UTF-8")]),
        (b'a/b; x="q\\"uoted; semi"; y=2', b"a/b", [(b"x", b'q"uoted; semi'), (b"y", b"2")]),
        (b"a/b; x=1; x=2", b"a/b", [(b"x", b"1")]),
        (b"a/b;;; x=1;", b"a/b", [(b"x", b"1")]),
        (b"a/b; n*=utf-8''%E2%82%AC", b"a/b", [(b"n", "€".encode())]),
        (b"a/b; n*=iso-8859-1'fr'%E9t%E9", b"a/b", [(b"n", "été".encode())]),
        (b"a/b; n*1=b; n*0=a; n*2*=%63", b"a/b", [(b"n", b"abc")]),
        (b"a/b; n*0*=utf-8''%C3; n*1*=%A9", b"a/b", [(b"n", "é".encode())]),
        (b"a/b; n=\"plain\"; n*=utf-8''ext", b"a/b", [(b"n", b"ext")]),
        (b"a/b; n*0=a; n*2=c", b"a/b", [(b"n", b"a")]),
        (b"multipart/mixed (comment); boundary=x", b"multipart/mixed", [(b"boundary", b"x")]),
    ],
)
def test_parameters(value: bytes, main: bytes, params: list[tuple[bytes, bytes]]) -> None:
    """RFC 2045 §5.1 parameters with RFC 2231 continuations and charsets."""
    got_main, got_params, _ = parse_parameters(value)
    assert (got_main, got_params) == (main, params)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"plain", b'"plain"'),
        (b"", b'""'),
        (b'say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
        (b"two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        (b"nul\x00", b"{6}\r\nnul\xef\xbf\xbd"),
    ],
)
def test_imap_strings(value: bytes, wire: bytes) -> None:
    """Quoted when every octet is a TEXT-CHAR, literal otherwise; NUL never reaches the wire."""
    assert string(value) == wire
    assert nstring(None) == b"NIL"


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("Hello", "hello"),
        ("Re: Hello", "hello"),
        ("RE:  re: Fwd: Hello", "hello"),
        ("Fw: Hello", "hello"),
        ("Re [2]: Hello", "hello"),
        ("[list] Re: Hello", "hello"),
        ("Re: [list] Hello", "hello"),
        ("Hello (fwd)", "hello"),
        ("Hello (fwd) (FWD)  ", "hello"),
        ("[fwd: Re: Hello]", "hello"),
        ("[list]", "[list]"),
        ("Re:", ""),
        ("  spaced \t out  ", "spaced out"),
        ("Réponse: café", "réponse: café"),
    ],
)
def test_base_subject(subject: str, base: str) -> None:
    """RFC 5256 §2.1 base subject extraction."""
    assert base_subject(subject) == base


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("Mon, 1 Jan 2024 10:00:00 +0100", "2024-01-01T09:00:00Z"),
        ("1 Jan 2024 23:30:00 -0200", "2024-01-02T01:30:00Z"),
        ("Tue, 02 Jan 24 10:00:00 GMT", "2024-01-02T10:00:00Z"),
        ("Mon, 1 Jan 2024 10:00:00", "2024-01-01T10:00:00Z"),
        ("garbage", ""),
        ("Mon, 31 Feb 2024 10:00:00 +0000", ""),
        ("", ""),
        ("Mon, 1 Jan 99999999999999999999 10:00:00 +0000", ""),
    ],
)
def test_sent_date(raw: str, iso: str) -> None:
    """The Date header as UTC ISO 8601, or "" when it cannot be parsed (RFC 5256 §2.2)."""
    assert sent_date(raw) == iso


def test_search_index() -> None:
    """The header index: decoded, unfolded, lower-cased; sort keys; absent headers absent."""
    data = normalize(
        b"From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.COM>\n"
        b"To: Team: Ann <ANN@x.example>, bob@y.example;\n"
        b"Cc: (nobody) \n"
        b"Subject: Re: [List] =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
        b"  folded\n"
        b"Date: Tue, 02 Jan 2024 10:00:00 +0200\n"
        b"Message-ID: <ID@Example.com>\n"
        b"References: <a@x>\n  <b@y>\n"
        b"List-Id: Dev List <dev.list.example>\n"
        b"\n"
        b"body\n"
    )
    headers = parse_message(data).headers
    assert headers == {
        "from": "jörg <joerg@example.com>",
        "sort-from": "joerg",
        "to": "team: ann <ann@x.example>, bob@y.example;",
        "sort-to": "ann",
        "cc": "(nobody)",
        "sort-cc": "",
        "subject": "re: [list] grüße  folded",
        "sort-subject": "grüße folded",
        "date": "tue, 02 jan 2024 10:00:00 +0200",
        "sent-date": "2024-01-02T08:00:00Z",
        "message-id": "<id@example.com>",
        "references": "<a@x>  <b@y>",
        "list-id": "dev list <dev.list.example>",
    }
