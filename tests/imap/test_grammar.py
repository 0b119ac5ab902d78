"""Shared productions: numbers, strings, mailbox names, sequence sets, flags, dates."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.core.errors import StoreError
from msgstore.core.names import encode_mutf7, mailbox_name
from msgstore.imap.syntax.errors import BadCommandError, RefusedCommandError
from msgstore.imap.syntax.grammar import (
    STAR,
    ParseContext,
    SeqSet,
    astring,
    date,
    date_time,
    flag,
    flag_list,
    list_mailbox,
    mailbox,
    nstring,
    number,
    sequence_set,
)
from msgstore.imap.syntax.tokens import (
    AtomToken,
    ListToken,
    LiteralFileToken,
    LiteralToken,
    QuotedToken,
)
from msgstore.imap.syntax.unit import LiteralFile

A, Q = AtomToken, QuotedToken
REV1 = ParseContext()
UTF8 = ParseContext(utf8=True)
REV2 = ParseContext(rev2=True)


# --- sequence sets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"1", SeqSet.of((1, 1))),
        (b"1:4", SeqSet.of((1, 4))),
        (b"*", SeqSet.of((STAR, STAR))),
        (b"*:*", SeqSet.of((STAR, STAR))),
        (b"*:1", SeqSet.of((STAR, 1))),
        (b"1:*", SeqSet.of((1, STAR))),
        (b"4294967295", SeqSet.of((4294967295, 4294967295))),
        (b"2,4:7,9,12:*", SeqSet.of((2, 2), (4, 7), (9, 9), (12, STAR))),
        (b"$", SeqSet.of(saved=True)),
        (b"1,$", SeqSet.of((1, 1), saved=True)),
    ],
)
def test_sequence_sets(text: bytes, expected: SeqSet) -> None:
    """Sequence sets keep ``*`` and ``$`` symbolic."""
    assert sequence_set(A(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"0", "Invalid sequence set: 0 is not a valid number"),
        (b"1:0", "Invalid sequence set: 0 is not a valid number"),
        (b"4294967296", "Invalid sequence set: number out of range"),
        (b"1:4294967296", "Invalid sequence set: number out of range"),
        (b"9" * 5000, "Invalid sequence set: number out of range"),
        (b"", "Invalid sequence set"),
        (b"1,", "Invalid sequence set"),
        (b"1::2", "Invalid sequence set"),
        (b"-1", "Invalid sequence set"),
        (b"a", "Invalid sequence set"),
        (b"1:2:3", "Invalid sequence set"),
    ],
)
def test_invalid_sequence_sets(text: bytes, message: str) -> None:
    """Invalid sets are BAD with a precise text (RELIABILITY §7 case 10)."""
    with pytest.raises(BadCommandError) as info:
        sequence_set(A(text))
    assert info.value.text == message


def test_sequence_set_must_be_an_atom() -> None:
    with pytest.raises(BadCommandError):
        sequence_set(Q(b"1:2"))


def test_saved_result_can_be_forbidden() -> None:
    with pytest.raises(BadCommandError, match="not allowed"):
        sequence_set(A(b"$"), allow_saved=False)


def test_resolve_replaces_star_and_merges() -> None:
    """``*`` becomes the highest number; ``*:4`` is ``4:*``; overlaps merge."""
    s = sequence_set(A(b"*:4,2,3,10:12,11"))
    assert s.resolve(20) == ((2, 20),)
    assert sequence_set(A(b"1:*")).resolve(0) == ()  # empty mailbox: '*' matches nothing
    assert sequence_set(A(b"$,7")).resolve(9, saved=[(1, 2)]) == ((1, 2), (7, 7))


def test_hundred_thousand_ranges_parse_in_linear_time() -> None:
    """100,000 comma-separated ranges parse quickly (RELIABILITY §7 case 10); CPU time, as
    other test workers share the cores."""
    text = b",".join(b"%d:%d" % (i, i + 1) for i in range(1, 200_001, 2))
    start = time.process_time()
    s = sequence_set(A(text))
    assert len(s.ranges) == 100_000
    assert s.resolve(10**6) == ((1, 200_000),)
    assert time.process_time() - start < 2.0


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1)), min_size=1))
def test_sequence_set_round_trip(ranges: list[tuple[int, int]]) -> None:
    """Any list of valid ranges written out parses back to the same ranges."""
    text = b",".join(b"%d:%d" % r for r in ranges)
    assert sequence_set(A(text)).ranges == tuple(ranges)


# --- numbers and strings -----------------------------------------------------------------


def test_number_limits() -> None:
    assert number(A(b"4294967295"), "n") == 2**32 - 1
    for bad in (b"4294967296", b"9" * 5000, b"-1", b"1a", b""):
        with pytest.raises(BadCommandError):
            number(A(bad), "n")
    with pytest.raises(BadCommandError, match="Invalid size: expected a number"):
        number(Q(b"1"), "size")
    assert number(A(b"9223372036854775807"), "n", maximum=2**63 - 1) == 2**63 - 1


def test_astring_forms() -> None:
    """An astring is an atom, a quoted string or a literal."""
    assert astring(A(b"ab]c"), "x") == b"ab]c"
    assert astring(Q(b"a b"), "x") == b"a b"
    assert astring(LiteralToken(b"a\r\nb"), "x") == b"a\r\nb"
    for bad in (A(b"a%"), A(b"a*"), A(b"a\\b"), ListToken(())):
        with pytest.raises(BadCommandError):
            astring(bad, "x")
    with pytest.raises(BadCommandError, match="Binary literal not allowed for user name"):
        astring(LiteralToken(b"x", binary=True), "user name")
    with pytest.raises(BadCommandError, match="User name too long"):
        astring(LiteralFileToken(LiteralFile("/x", 10**6)), "user name")


def test_nstring() -> None:
    assert nstring(A(b"nil"), "x") is None
    assert nstring(Q(b"NIL"), "x") == b"NIL"
    with pytest.raises(BadCommandError):
        nstring(A(b"abc"), "x")


# --- mailbox names ----------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [b"INBOX", b"inbox", b"InBoX", b'"Inbox"'])
def test_inbox_is_case_insensitive(spelling: bytes) -> None:
    tok = Q(spelling.strip(b'"')) if spelling.startswith(b'"') else A(spelling)
    assert mailbox(tok, REV1) == "INBOX"


def test_inbox_children_are_canonical() -> None:
    assert mailbox(A(b"inbox/Sub"), REV1) == "INBOX/Sub"
    assert mailbox(A(b"Work/inbox"), REV1) == "Work/inbox"


def test_modified_utf7_is_decoded_for_rev1_clients() -> None:
    assert mailbox(A(b"&ZeVnLIqe-"), REV1) == "日本語"
    assert mailbox(A(b"A&-B"), REV1) == "A&B"
    assert mailbox(Q("日本語".encode()), UTF8) == "日本語"
    assert mailbox(Q("日本語".encode()), REV2) == "日本語"
    assert mailbox(A(b"&ZeVnLIqe-"), UTF8) == "&ZeVnLIqe-"  # no decoding in UTF-8 mode


@pytest.mark.parametrize(
    "raw", [b"&ZeVnLIqe", b"&AGE-", b"&Jjo!-", b"caf\xc3\xa9", b"&ZeVnLIqe-&ZeVnLIqe-", b"&U,BTF-"]
)
def test_invalid_modified_utf7_is_bad(raw: bytes) -> None:
    """Invalid or non-canonical modified UTF-7 gives BAD (CVE-2019-10691 class)."""
    with pytest.raises(BadCommandError):
        mailbox(Q(raw), REV1)


@pytest.mark.parametrize("raw", [b"\xc0\xaf", b"\xed\xa0\x80", b"\xe6\x97", b"\xff"])
def test_invalid_utf8_names_are_bad(raw: bytes) -> None:
    """Overlong, surrogate, truncated UTF-8 under UTF8=ACCEPT gives BAD."""
    with pytest.raises(BadCommandError, match="not valid UTF-8"):
        mailbox(Q(raw), UTF8)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1))
def test_mutf7_names_round_trip(name: str) -> None:
    """Any name encoded in modified UTF-7 parses to what the store's validation makes of it."""
    try:
        expected = mailbox_name(name)
    except StoreError:
        with pytest.raises(RefusedCommandError):
            mailbox(Q(encode_mutf7(name)), REV1)
        return
    assert mailbox(Q(encode_mutf7(name)), REV1) == expected


@pytest.mark.parametrize(
    "raw", [b"../x", b"/x", b"a//b", b"x/", b"a/./b", b"x" * 300, b"/".join([b"a"] * 40)]
)
def test_names_the_store_refuses_are_no_cannot(raw: bytes) -> None:
    """Well-formed but invalid names are NO [CANNOT], not BAD (RELIABILITY §7 case 14)."""
    with pytest.raises(RefusedCommandError) as info:
        mailbox(Q(raw), REV1)
    assert info.value.code == b"CANNOT"
    assert info.value.status == b"NO"


def test_list_patterns_keep_wildcards() -> None:
    assert list_mailbox(A(b"INBOX/%"), REV1) == "INBOX/%"
    assert list_mailbox(Q(b""), REV1) == ""
    assert list_mailbox(A(b"&ZeVnLIqe-/*"), REV1) == "日本語/*"


# --- flags and dates --------------------------------------------------------------------


def test_flags_are_canonical() -> None:
    assert flag(A(b"\\SEEN")) == "\\Seen"
    assert flag(A(b"$Junk")) == "$Junk"
    assert flag_list(ListToken((A(b"\\Seen"), A(b"\\deleted")))) == {"\\Seen", "\\Deleted"}
    assert flag_list(ListToken(())) == frozenset()


@pytest.mark.parametrize(
    ("tok", "text"),
    [
        (A(b"\\Recent"), "Flag \\Recent is set by the server and cannot be stored"),
        (A(b"\\Foo"), "Invalid flag"),
        (A(b"a]b"), "Invalid flag"),
        (A(b"\\"), "Invalid flag"),
        (Q(b"x"), "Invalid flag"),
    ],
)
def test_invalid_flags(tok: AtomToken | QuotedToken, text: str) -> None:
    with pytest.raises(BadCommandError) as info:
        flag(tok)
    assert info.value.text == text


def test_dates() -> None:
    assert date(A(b"1-Feb-2024")) == dt.date(2024, 2, 1)
    assert date(Q(b"29-feb-2024")) == dt.date(2024, 2, 29)
    for bad in (b"29-Feb-2023", b"1-Foo-2024", b"001-Feb-2024", b"1-Feb-24", b"1 Feb 2024"):
        with pytest.raises(BadCommandError):
            date(A(bad))


def test_date_times() -> None:
    got = date_time(Q(b" 7-Feb-1994 21:52:25 -0800"))
    assert got == dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert date_time(Q(b"17-Jul-1996 02:44:25 +0530")).utcoffset() == dt.timedelta(
        hours=5, minutes=30
    )
    for bad in (
        b"7-Feb-1994 21:52:25 -0800",
        b"17-Jul-1996 24:00:00 +0000",
        b"17-Jul-1996 02:44:25 +0060",
        b"17-Jul-1996 02:44:25 +2500",
        b"17-Jul-1996 02:44:25",
    ):
        with pytest.raises(BadCommandError):
            date_time(Q(bad))
    with pytest.raises(BadCommandError):
        date_time(A(b"17-Jul-1996"))
