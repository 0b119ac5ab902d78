"""SEARCH keys and FETCH attributes as typed trees, through the whole command parser."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from msgstore.imap.syntax.args import SearchArgs, SearchReturn
from msgstore.imap.syntax.fetchatt import (
    FetchAttr,
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    Partial,
    Section,
    SectionText,
)
from msgstore.imap.syntax.grammar import STAR, ParseContext, SeqSet
from msgstore.imap.syntax.search import (
    DateField,
    DateOp,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchRecent,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
)
from tests.imap.wire import args, error


def key_of(wire: bytes) -> SearchKey:
    a = args(b"t SEARCH " + wire)
    assert isinstance(a, SearchArgs)
    return a.key


@pytest.mark.parametrize(
    ("wire", "key"),
    [
        (b"ALL", SearchAll()),
        (b"answered", SearchFlag("\\Answered")),
        (b"UNANSWERED", SearchFlag("\\Answered", False)),
        (b"DELETED", SearchFlag("\\Deleted")),
        (b"UNDELETED", SearchFlag("\\Deleted", False)),
        (b"DRAFT", SearchFlag("\\Draft")),
        (b"UNDRAFT", SearchFlag("\\Draft", False)),
        (b"FLAGGED", SearchFlag("\\Flagged")),
        (b"UNFLAGGED", SearchFlag("\\Flagged", False)),
        (b"SEEN", SearchFlag("\\Seen")),
        (b"UNSEEN", SearchFlag("\\Seen", False)),
        (b"KEYWORD $Junk", SearchFlag("$Junk")),
        (b"UNKEYWORD foo", SearchFlag("foo", False)),
        (b"RECENT", SearchRecent()),
        (b"OLD", SearchRecent(False)),
        (b"NEW", SearchAnd((SearchRecent(), SearchFlag("\\Seen", False)))),
        (b"BCC a", SearchHeader("bcc", "a")),
        (b"CC a", SearchHeader("cc", "a")),
        (b'FROM "J Smith"', SearchHeader("from", "J Smith")),
        (b"TO {3}\r\nx y", SearchHeader("to", "x y")),
        (
            b"SUBJECT caf\xc3\xa9".replace(b"caf\xc3\xa9", b'"caf\xc3\xa9"'),
            SearchHeader("subject", "café"),
        ),
        (b"HEADER Message-ID <x@y>", SearchHeader("message-id", "<x@y>")),
        (b'HEADER X-Spam ""', SearchHeader("x-spam", "")),
        (b"BODY hello", SearchBody("hello")),
        (b"TEXT hello", SearchText("hello")),
        (b"BEFORE 1-Feb-2024", SearchDate(DateField.INTERNAL, DateOp.BEFORE, dt.date(2024, 2, 1))),
        (b"ON 1-Feb-2024", SearchDate(DateField.INTERNAL, DateOp.ON, dt.date(2024, 2, 1))),
        (b'SINCE "1-Feb-2024"', SearchDate(DateField.INTERNAL, DateOp.SINCE, dt.date(2024, 2, 1))),
        (b"SENTBEFORE 1-Feb-2024", SearchDate(DateField.SENT, DateOp.BEFORE, dt.date(2024, 2, 1))),
        (b"SENTON 1-Feb-2024", SearchDate(DateField.SENT, DateOp.ON, dt.date(2024, 2, 1))),
        (b"SENTSINCE 1-Feb-2024", SearchDate(DateField.SENT, DateOp.SINCE, dt.date(2024, 2, 1))),
        (b"LARGER 100", SearchSize(True, 100)),
        (b"SMALLER 9223372036854775807", SearchSize(False, 2**63 - 1)),
        (b"UID 1:*", SearchUid(SeqSet.of((1, STAR)))),
        (b"2:4,7", SearchSeq(SeqSet.of((2, 4), (7, 7)))),
        (b"$", SearchSeq(SeqSet.of(saved=True))),
        (b"*", SearchSeq(SeqSet.of((STAR, STAR)))),
        (b"MODSEQ 620162338", SearchModSeq(620162338)),
        (
            b'MODSEQ "/flags/\\\\draft" all 620162338',
            SearchModSeq(620162338, "/flags/\\draft", "all"),
        ),
        (b"NOT SEEN", SearchNot(SearchFlag("\\Seen"))),
        (b"NOT NOT SEEN", SearchNot(SearchNot(SearchFlag("\\Seen")))),
        (b"OR SEEN FLAGGED", SearchOr((SearchFlag("\\Seen"), SearchFlag("\\Flagged")))),
        (
            b"OR OR SEEN FLAGGED DRAFT",
            SearchOr((SearchFlag("\\Seen"), SearchFlag("\\Flagged"), SearchFlag("\\Draft"))),
        ),
        (
            b"OR SEEN OR FLAGGED DRAFT",
            SearchOr((SearchFlag("\\Seen"), SearchFlag("\\Flagged"), SearchFlag("\\Draft"))),
        ),
        (b"(SEEN)", SearchFlag("\\Seen")),
        (b"((SEEN))", SearchFlag("\\Seen")),
        (
            b"SEEN (FLAGGED DRAFT) ALL",
            SearchAnd(
                (SearchFlag("\\Seen"), SearchFlag("\\Flagged"), SearchFlag("\\Draft"), SearchAll())
            ),
        ),
        (
            b"OR (SEEN FLAGGED) NOT DRAFT",
            SearchOr(
                (
                    SearchAnd((SearchFlag("\\Seen"), SearchFlag("\\Flagged"))),
                    SearchNot(SearchFlag("\\Draft")),
                )
            ),
        ),
    ],
)
def test_search_keys(wire: bytes, key: SearchKey) -> None:
    """Every RFC 9051/3501 search key parses to its typed form."""
    assert key_of(wire) == key


def test_search_charset_and_return_options() -> None:
    a = args(b"t UID SEARCH RETURN (MIN MAX COUNT ALL SAVE) CHARSET utf-8 SEEN")
    assert a == SearchArgs(SearchFlag("\\Seen"), "UTF-8", frozenset(SearchReturn))
    assert args(b"t SEARCH RETURN () ALL") == SearchArgs(SearchAll(), None, frozenset())
    assert args(b"t SEARCH CHARSET US-ASCII ALL") == SearchArgs(SearchAll(), "US-ASCII")


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"", "Missing search criteria"),
        (b"FOO", "Unknown search key"),
        (b"NOT", "Missing search key after NOT"),
        (b"OR SEEN", "Missing search key after OR"),
        (b"()", "Empty search key group"),
        (b"BEFORE", "Missing date after BEFORE"),
        (b"BEFORE 31-Feb-2024", "Invalid date"),
        (b"FROM", "Missing string after FROM"),
        (b"HEADER Subject", "Missing string after HEADER"),
        (b"LARGER x", "Invalid size: expected a number"),
        (b"UID 0", "Invalid sequence set: 0 is not a valid number"),
        (b"KEYWORD \\Seen", "Invalid keyword"),
        (b'TEXT "\xff"', "Invalid UTF-8 in string after TEXT"),
        (b'"SEEN"', "Invalid search key"),
        (b"RETURN (FOO) ALL", "Unknown search return option"),
        (b'MODSEQ "/x" all 1', "Invalid MODSEQ entry name"),
        (b'MODSEQ "/flags/\\\\seen" any 1', "Invalid MODSEQ entry type"),
    ],
)
def test_search_errors(wire: bytes, text: str) -> None:
    e = error(b"t SEARCH " + wire)
    assert (e.status, e.text) == (b"BAD", text)


def test_unknown_charset_is_no_badcharset() -> None:
    """An unsupported CHARSET is NO [BADCHARSET (US-ASCII UTF-8)] (RFC 9051 §6.4.4)."""
    e = error(b"t SEARCH CHARSET KOI8-R ALL")
    assert (e.status, e.code, e.tag) == (b"NO", b"BADCHARSET (US-ASCII UTF-8)", b"t")


def test_not_chain_hits_the_depth_limit() -> None:
    """A long NOT chain is BAD at the depth limit, not a RecursionError."""
    e = error(b"t SEARCH " + b"NOT " * 5000 + b"ALL")
    assert e.text == "Search keys nested too deeply"
    assert key_of(b"NOT " * 63 + b"ALL")  # depth 64 is fine


def test_long_or_chain_is_flat() -> None:
    """``OR OR OR ... a b c ...`` becomes one flat OR, so client-built filters stay shallow."""
    key = key_of(b"OR " * 999 + b"SEEN " * 1000)
    assert isinstance(key, SearchOr)
    assert len(key.keys) == 1000


def test_nested_groups_hit_the_depth_limit() -> None:
    """10,000 nested parentheses in SEARCH give BAD (RELIABILITY §7 case 6)."""
    e = error(b"t SEARCH " + b"(" * 10_000 + b"ALL" + b")" * 10_000)
    assert e.text == "Lists nested too deeply"


def test_search_depth_is_configurable() -> None:
    ctx = ParseContext(max_search_depth=3)
    assert args(b"t SEARCH NOT NOT ALL", ctx)
    assert error(b"t SEARCH NOT NOT NOT ALL", ctx).text == "Search keys nested too deeply"


def test_pathological_search_is_linear() -> None:
    """A 54 KB search of alternating OR/NOT/groups parses fast (CPU time: other test workers
    share the cores)."""
    wire = b"t SEARCH " + b"OR NOT (SEEN) " * 3000 + b"ALL " * 3001
    start = time.process_time()
    args(wire.rstrip())
    assert time.process_time() - start < 2.0


# --- FETCH attributes -------------------------------------------------------------------


def items_of(wire: bytes) -> tuple[object, ...]:
    a = args(b"t FETCH 1 " + wire)
    return a.items  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("wire", "items"),
    [
        (b"FAST", (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE)),
        (
            b"all",
            (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE, FetchAttr.ENVELOPE),
        ),
        (
            b"FULL",
            (
                FetchAttr.FLAGS,
                FetchAttr.INTERNALDATE,
                FetchAttr.RFC822_SIZE,
                FetchAttr.ENVELOPE,
                FetchAttr.BODY,
            ),
        ),
        (b"UID", (FetchAttr.UID,)),
        (
            b"(ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT BODY"
            b" BODYSTRUCTURE UID MODSEQ)",
            tuple(FetchAttr),
        ),
        (b"BODY[]", (FetchBody(Section()),)),
        (b"BODY.PEEK[]<0.1024>", (FetchBody(Section(), True, Partial(0, 1024)),)),
        (b"BODY[HEADER]", (FetchBody(Section((), SectionText.HEADER)),)),
        (b"body[text]", (FetchBody(Section((), SectionText.TEXT)),)),
        (b"BODY[1.2.3]", (FetchBody(Section((1, 2, 3))),)),
        (b"BODY[1.MIME]", (FetchBody(Section((1,), SectionText.MIME)),)),
        (b"BODY[2.HEADER]", (FetchBody(Section((2,), SectionText.HEADER)),)),
        (
            b'BODY.PEEK[HEADER.FIELDS (From "Subject" {2}\r\nTo)]',
            (FetchBody(Section((), SectionText.HEADER_FIELDS, ("From", "Subject", "To")), True),),
        ),
        (
            b"BODY[1.HEADER.FIELDS.NOT (Received)]<10.5>",
            (
                FetchBody(
                    Section((1,), SectionText.HEADER_FIELDS_NOT, ("Received",)),
                    False,
                    Partial(10, 5),
                ),
            ),
        ),
        (b"BINARY[1]", (FetchBinary((1,)),)),
        (b"BINARY.PEEK[]<0.10>", (FetchBinary((), True, Partial(0, 10)),)),
        (b"BINARY.SIZE[1.2]", (FetchBinarySize((1, 2)),)),
    ],
)
def test_fetch_attributes(wire: bytes, items: tuple[object, ...]) -> None:
    assert items_of(wire) == items


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"", "Missing fetch attributes"),
        (b"FOO", "Unknown fetch attribute"),
        (b"()", "Empty fetch attribute list"),
        (b"(FAST)", "Unknown fetch attribute"),
        (b"BODY[MIME]", "MIME section requires a part number"),
        (b"BODY[0]", "Invalid section part number"),
        (b"BODY[1.0.TEXT]", "Invalid section part number"),
        (b"BODY[FOO]", "Invalid section text"),
        (b"BODY[HEADER.FIELDS]", "Missing header field list"),
        (b"BODY[HEADER.FIELDS ()]", "Missing header field list"),
        (b"BODY[HEADER.FIELDS (a:b)]", "Invalid header field name"),
        (b"BODY[TEXT (x)]", "Invalid section"),
        (b"BODY[]<0.0>", "Invalid partial range"),
        (b"BODY[]<5>", "Invalid partial range"),
        (b"BODY[]<" + b"9" * 30 + b".1>", "Invalid partial range"),
        (b"BINARY[TEXT]", "Invalid section part number"),
        (b"BINARY.SIZE[1]<0.5>", "BINARY.SIZE takes no partial range"),
        (b'"FLAGS"', "Invalid fetch attribute"),
    ],
)
def test_fetch_errors(wire: bytes, text: str) -> None:
    e = error(b"t FETCH 1 " + wire)
    assert (e.status, e.text, e.tag) == (b"BAD", text, b"t")
