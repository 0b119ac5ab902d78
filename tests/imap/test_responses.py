"""Typed responses and the pure string/name encoders."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.imap.syntax.command import parse_command
from msgstore.imap.syntax.grammar import ParseContext
from msgstore.imap.syntax.responses import (
    CapabilityData,
    Code,
    Continuation,
    EnabledData,
    ESearchData,
    Exists,
    Expunge,
    FlagsData,
    ListData,
    ResponseCode,
    SearchData,
    Status,
    StatusData,
    StatusResponse,
    Vanished,
    appenduid,
    badcharset,
    copyuid,
    encode_astring,
    encode_mailbox,
    encode_nstring,
    encode_string,
    modified,
    permanentflags,
    uidnext,
)
from msgstore.imap.syntax.unit import CommandUnit


def test_code_spellings_are_the_rfc_ones() -> None:
    assert Code.READ_ONLY.value == b"READ-ONLY"
    assert Code.UNKNOWN_CTE.value == b"UNKNOWN-CTE"
    brief = (
        b"ALERT BADCHARSET CAPABILITY PARSE PERMANENTFLAGS READ-ONLY READ-WRITE TRYCREATE "
        b"UIDNEXT UIDVALIDITY UNSEEN CLOSED HIGHESTMODSEQ NOMODSEQ MODIFIED APPENDUID COPYUID "
        b"UIDNOTSTICKY NOPERM OVERQUOTA TOOBIG LIMIT NONEXISTENT ALREADYEXISTS CANNOT INUSE "
        b"EXPUNGEISSUED CORRUPTION SERVERBUG UNAVAILABLE AUTHENTICATIONFAILED "
        b"AUTHORIZATIONFAILED EXPIRED PRIVACYREQUIRED CONTACTADMIN CLIENTBUG HASCHILDREN "
        b"NOTSAVED UNKNOWN-CTE"
    )
    assert set(brief.split()) <= {c.value for c in Code}


def test_status_responses() -> None:
    ok = StatusResponse(Status.OK, "SELECT completed", ResponseCode(Code.READ_WRITE), b"a1")
    assert ok.encode() == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    assert StatusResponse(Status.BAD, "Invalid tag").encode() == b"* BAD Invalid tag\r\n"
    assert StatusResponse(Status.NO, "x\r\nb OK y", tag=b"a").encode() == b"a NO x  b OK y\r\n"
    assert Continuation().encode() == b"+ Ready\r\n"


def test_codes_with_data() -> None:
    assert uidnext(4392).encode() == b"[UIDNEXT 4392]"
    assert appenduid(38505, [(3955, 3955)]).encode() == b"[APPENDUID 38505 3955]"
    assert copyuid(38505, [(304, 304), (319, 320)], [(3956, 3958)]).encode() == (
        b"[COPYUID 38505 304,319:320 3956:3958]"
    )
    assert modified([(7, 7), (9, 9)]).encode() == b"[MODIFIED 7,9]"
    assert permanentflags(["\\Seen", "\\Deleted"], new_keywords=True).encode() == (
        b"[PERMANENTFLAGS (\\Deleted \\Seen \\*)]"
    )
    assert badcharset([b"US-ASCII", b"UTF-8"]).encode() == b"[BADCHARSET (US-ASCII UTF-8)]"


def test_untagged_data() -> None:
    assert Exists(23).encode() == b"* 23 EXISTS\r\n"
    assert Expunge(3).encode() == b"* 3 EXPUNGE\r\n"
    assert Vanished(((41, 41), (43, 116)), earlier=True).encode() == (
        b"* VANISHED (EARLIER) 41,43:116\r\n"
    )
    assert FlagsData(("\\Seen", "$Junk")).encode() == b"* FLAGS (\\Seen $Junk)\r\n"
    assert CapabilityData((b"IMAP4rev2", b"IDLE")).encode() == b"* CAPABILITY IMAP4rev2 IDLE\r\n"
    assert EnabledData(()).encode() == b"* ENABLED\r\n"
    assert SearchData((2, 3), modseq=917162500).encode() == b"* SEARCH 2 3 (MODSEQ 917162500)\r\n"
    assert SearchData(()).encode() == b"* SEARCH\r\n"
    assert ESearchData(b"a", uid=True, min=1, all=((1, 3), (5, 5)), count=4).encode() == (
        b'* ESEARCH (TAG "a") UID MIN 1 ALL 1:3,5 COUNT 4\r\n'
    )
    assert StatusData("日本語", ((b"MESSAGES", 2),)).encode() == (
        b"* STATUS &ZeVnLIqe- (MESSAGES 2)\r\n"
    )
    assert ListData("Sent Items", (b"\\Sent",)).encode(utf8=True) == (
        b'* LIST (\\Sent) "/" "Sent Items"\r\n'
    )


@pytest.mark.parametrize(
    ("value", "utf8", "wire"),
    [
        (b"abc", False, b"abc"),
        (b"NIL", False, b'"NIL"'),
        (b"", False, b'""'),
        (b"a b", False, b'"a b"'),
        (b'a"b\\', False, b'"a\\"b\\\\"'),
        (b"a\r\nb", False, b"{4}\r\na\r\nb"),
        ("é".encode(), False, b"{2}\r\n\xc3\xa9"),
        ("é".encode(), True, b'"\xc3\xa9"'),
        (b"x " * 1000, False, b"{2000}\r\n" + b"x " * 1000),
        (b"x" * 2000, False, b"x" * 2000),
    ],
)
def test_astring_encoding(value: bytes, utf8: bool, wire: bytes) -> None:
    assert encode_astring(value, utf8=utf8) == wire


def test_nstring_and_string() -> None:
    assert encode_nstring(None) == b"NIL"
    assert encode_string(b"abc") == b'"abc"'


def test_mailbox_names_by_session_mode() -> None:
    """Modified UTF-7 for IMAP4rev1 clients, UTF-8 after UTF8=ACCEPT/IMAP4rev2."""
    assert encode_mailbox("日本語/x", utf8=False) == b"&ZeVnLIqe-/x"
    assert encode_mailbox("日本語/x", utf8=True) == '"日本語/x"'.encode()
    assert encode_mailbox("INBOX", utf8=False) == b"INBOX"
    assert encode_mailbox("A&B", utf8=False) == b"A&-B"
    assert encode_mailbox("a%b", utf8=False) == b'"a%b"'


_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
    min_size=1,
    max_size=40,
)


@given(_names, st.booleans())
def test_encoded_names_parse_back(name: str, utf8: bool) -> None:
    """What the encoder writes, the parser reads back to the same name (when valid)."""
    from msgstore.core.errors import StoreError
    from msgstore.core.names import mailbox_name

    try:
        expected = mailbox_name(name)
    except StoreError:
        return
    wire = encode_mailbox(expected, utf8=utf8)
    lines = wire.split(b"\r\n")
    if len(lines) == 2:  # a literal
        unit = CommandUnit((b"a SELECT " + lines[0], b""), (lines[1],))
    else:
        unit = CommandUnit.of_line(b"a SELECT " + wire)
    cmd = parse_command(unit, ParseContext(utf8=utf8))
    assert cmd.args.mailbox == expected  # type: ignore[union-attr]
