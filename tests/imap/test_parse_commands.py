"""Per-command parsers: wire input -> typed args, and failures with their exact BAD text."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from msgstore.core.flags import FlagOp
from msgstore.core.names import MailboxName as N
from msgstore.imap.syntax.args import (
    AclIdentifierArgs,
    AppendArgs,
    AppendMessage,
    AuthenticateArgs,
    Command,
    CompressArgs,
    CopyArgs,
    CreateArgs,
    EnableArgs,
    FetchArgs,
    GetQuotaArgs,
    IdArgs,
    ListArgs,
    ListReturn,
    ListSelect,
    LoginArgs,
    LsubArgs,
    MailboxArgs,
    NoArgs,
    QresyncParams,
    RenameArgs,
    SearchReturn,
    SelectArgs,
    SetAclArgs,
    SetQuotaArgs,
    SortArgs,
    SortCriterion,
    SortKey,
    StatusArgs,
    StatusItem,
    StoreArgs,
    ThreadAlgorithm,
    ThreadArgs,
    UidExpungeArgs,
)
from msgstore.imap.syntax.command import PARSERS, is_idle_done, parse_command
from msgstore.imap.syntax.errors import (
    BadCommandError,
    InvalidTagError,
    RefusedCommandError,
    UnknownCommandError,
)
from msgstore.imap.syntax.fetchatt import FetchAttr
from msgstore.imap.syntax.grammar import STAR, SeqSet
from msgstore.imap.syntax.parse_anystate import parse_sasl_response
from msgstore.imap.syntax.search import SearchAll, SearchFlag
from msgstore.imap.syntax.unit import CommandUnit
from tests.imap.wire import CTX, UTF8, args, error, parse

SEEN = SearchFlag("\\Seen")


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        # any state / not authenticated
        (b"a CAPABILITY", NoArgs()),
        (b"a noop", NoArgs()),
        (b"a LOGOUT", NoArgs()),
        (b"a STARTTLS", NoArgs()),
        (b"a AUTHENTICATE PLAIN", AuthenticateArgs("PLAIN")),
        (b"a AUTHENTICATE plain =", AuthenticateArgs("PLAIN", b"")),
        (b"a AUTHENTICATE PLAIN AGFsaWNlAHB3", AuthenticateArgs("PLAIN", b"\0alice\0pw")),
        (b"a AUTHENTICATE SCRAM-SHA-256", AuthenticateArgs("SCRAM-SHA-256")),
        (b"a LOGIN alice secret", LoginArgs("alice", b"secret")),
        (b'a LOGIN "alice@example.org" "p w\\"x"', LoginArgs("alice@example.org", b'p w"x')),
        (b'a LOGIN "j\xc3\xb6rg" pw', LoginArgs("jörg", b"pw")),
        (b"a ENABLE CONDSTORE utf8=accept", EnableArgs((b"CONDSTORE", b"UTF8=ACCEPT"))),
        (b"a ID NIL", IdArgs(None)),
        (
            b'a ID ("name" "Thunderbird" "version" NIL)',
            IdArgs((("name", "Thunderbird"), ("version", None))),
        ),
        (b"a ID ()", IdArgs(())),
        (b"a COMPRESS deflate", CompressArgs("DEFLATE")),
        # authenticated state
        (b"a SELECT INBOX", SelectArgs(N("INBOX"))),
        (b"a EXAMINE Sent", SelectArgs(N("Sent"))),
        (b"a SELECT INBOX (CONDSTORE)", SelectArgs(N("INBOX"), condstore=True)),
        (
            b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))",
            SelectArgs(
                N("INBOX"),
                qresync=QresyncParams(
                    67890007, 90060115194045000, SeqSet.of((41, 211), (214, 541))
                ),
            ),
        ),
        (
            b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000 "
            b"15000,22500,27000)))",
            SelectArgs(
                N("INBOX"),
                qresync=QresyncParams(
                    67890007,
                    90060115194045000,
                    SeqSet.of((1, 29997)),
                    (
                        SeqSet.of((5000, 5000), (7500, 7500), (9000, 9000)),
                        SeqSet.of((15000, 15000), (22500, 22500), (27000, 27000)),
                    ),
                ),
            ),
        ),
        (b"a SELECT INBOX (QRESYNC (1 0))", SelectArgs(N("INBOX"), qresync=QresyncParams(1, 0))),
        (b"a CREATE Work/Projects", CreateArgs(N("Work/Projects"))),
        (b"a CREATE Work/", CreateArgs(N("Work"))),
        (
            b"a CREATE Archive (USE (\\archive \\Foo))",
            CreateArgs(N("Archive"), ("\\Archive", "\\Foo")),
        ),
        (b"a DELETE Trash", MailboxArgs(N("Trash"))),
        (b"a SUBSCRIBE inbox", MailboxArgs(N("INBOX"))),
        (b"a UNSUBSCRIBE x", MailboxArgs(N("x"))),
        (b"a RENAME a b", RenameArgs(N("a"), N("b"))),
        (b'a LIST "" *', ListArgs("", ("*",))),
        (b'a LIST "" ""', ListArgs("", ("",))),
        (b"a LIST Work/ %", ListArgs("Work/", ("%",))),
        (b'a LIST "" "&ZeVnLIqe-/%"', ListArgs("", ("日本語/%",))),
        (
            b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX %) RETURN (CHILDREN SPECIAL-USE)',
            ListArgs(
                "",
                ("INBOX", "%"),
                frozenset({ListSelect.SUBSCRIBED, ListSelect.RECURSIVEMATCH}),
                ListReturn(children=True, special_use=True),
            ),
        ),
        (
            b'a LIST "" % RETURN (SUBSCRIBED STATUS (MESSAGES UIDNEXT))',
            ListArgs(
                "",
                ("%",),
                returns=ListReturn(
                    subscribed=True, status=(StatusItem.MESSAGES, StatusItem.UIDNEXT)
                ),
            ),
        ),
        (b'a LIST () "" %', ListArgs("", ("%",))),
        (
            b'a LIST (SPECIAL-USE REMOTE) "" *',
            ListArgs("", ("*",), frozenset({ListSelect.SPECIAL_USE, ListSelect.REMOTE})),
        ),
        (b'a LSUB "" *', LsubArgs("", "*")),
        (b"a NAMESPACE", NoArgs()),
        (
            b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE "
            b"HIGHESTMODSEQ APPENDLIMIT messages)",
            StatusArgs(N("INBOX"), tuple(StatusItem)),
        ),
        (b"a IDLE", NoArgs()),
        # selected state
        (b"a CHECK", NoArgs()),
        (b"a CLOSE", NoArgs()),
        (b"a UNSELECT", NoArgs()),
        (b"a EXPUNGE", NoArgs()),
        (b"a UID EXPUNGE 3000:3002", UidExpungeArgs(SeqSet.of((3000, 3002)))),
        (
            b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
            FetchArgs(SeqSet.of((1, STAR)), (FetchAttr.FLAGS,), 12345),
        ),
        (
            b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
            FetchArgs(SeqSet.of((300, 500)), (FetchAttr.FLAGS,), 12345, True),
        ),
        (
            b"a STORE 1 FLAGS (\\Seen)",
            StoreArgs(SeqSet.of((1, 1)), FlagOp.REPLACE, frozenset({"\\Seen"})),
        ),
        (
            b"a STORE 1:3 +FLAGS.SILENT \\Deleted $Junk",
            StoreArgs(SeqSet.of((1, 3)), FlagOp.ADD, frozenset({"\\Deleted", "$Junk"}), True),
        ),
        (
            b"a UID STORE 5 (UNCHANGEDSINCE 320162338) -FLAGS ()",
            StoreArgs(SeqSet.of((5, 5)), FlagOp.REMOVE, frozenset(), False, 320162338),
        ),
        (b"a COPY 2:4 Archive", CopyArgs(SeqSet.of((2, 4)), N("Archive"))),
        (b"a UID COPY $ Archive", CopyArgs(SeqSet.of(saved=True), N("Archive"))),
        (b"a MOVE 1 Trash", CopyArgs(SeqSet.of((1, 1)), N("Trash"))),
        (b"a UID MOVE 1:* Trash", CopyArgs(SeqSet.of((1, STAR)), N("Trash"))),
        (
            b"a SORT (REVERSE DATE SUBJECT) UTF-8 SEEN",
            SortArgs(
                (SortCriterion(SortKey.DATE, True), SortCriterion(SortKey.SUBJECT)),
                "UTF-8",
                SEEN,
            ),
        ),
        (
            b"a UID SORT RETURN (COUNT) (ARRIVAL) US-ASCII ALL",
            SortArgs(
                (SortCriterion(SortKey.ARRIVAL),),
                "US-ASCII",
                SearchAll(),
                frozenset({SearchReturn.COUNT}),
            ),
        ),
        (
            b"a THREAD REFERENCES UTF-8 ALL",
            ThreadArgs(ThreadAlgorithm.REFERENCES, "UTF-8", SearchAll()),
        ),
        (
            b"a UID THREAD orderedsubject utf-8 SEEN",
            ThreadArgs(ThreadAlgorithm.ORDEREDSUBJECT, "UTF-8", SEEN),
        ),
        # ACL and QUOTA
        (b"a SETACL INBOX bob +lrs", SetAclArgs(N("INBOX"), "bob", "+lrs")),
        (b"a SETACL Shared -anyone lrswipkxte", SetAclArgs(N("Shared"), "-anyone", "lrswipkxte")),
        (b'a SETACL x Anyone ""', SetAclArgs(N("x"), "anyone", "")),
        (b"a DELETEACL INBOX bob", AclIdentifierArgs(N("INBOX"), "bob")),
        (b"a GETACL INBOX", MailboxArgs(N("INBOX"))),
        (b"a LISTRIGHTS INBOX bob", AclIdentifierArgs(N("INBOX"), "bob")),
        (b"a MYRIGHTS INBOX", MailboxArgs(N("INBOX"))),
        (b'a GETQUOTA ""', GetQuotaArgs("")),
        (b"a GETQUOTAROOT INBOX", MailboxArgs(N("INBOX"))),
        (
            b'a SETQUOTA "alice" (STORAGE 512 message 1000)',
            SetQuotaArgs("alice", (("STORAGE", 512), ("MESSAGE", 1000))),
        ),
        (b"a SETQUOTA alice ()", SetQuotaArgs("alice", ())),
    ],
)
def test_commands(wire: bytes, expected: object) -> None:
    """Each command parses to its typed arguments."""
    assert args(wire) == expected


def test_command_names_and_uid_prefix() -> None:
    """The command carries its tag and its upper-case name, UID forms with the prefix."""
    cmd = parse(b"A001 uid fetch 1 UID")
    assert cmd == Command(b"A001", b"UID FETCH", FetchArgs(SeqSet.of((1, 1)), (FetchAttr.UID,)))
    assert cmd.uid
    assert not parse(b"A002 FETCH 1 UID").uid


# Stalwart's rename test: plain, quoted, literal and LITERAL+ spellings give the same args.
_RENAME_SPELLINGS = [
    b"t RENAME Work Play\r\n",
    b't RENAME "Work" "Play"\r\n',
    b"t RENAME {4}\r\nWork {4}\r\nPlay\r\n",
    b"t RENAME {4+}\r\nWork {4+}\r\nPlay\r\n",
    b't RENAME "Work" {4+}\r\nPlay\r\n',
]


@pytest.mark.parametrize("wire", _RENAME_SPELLINGS)
def test_rename_spellings_are_equal(wire: bytes) -> None:
    assert args(wire) == RenameArgs(N("Work"), N("Play"))


@pytest.mark.parametrize(
    "wire",
    [
        b"t LOGIN alice {6}\r\nsecret\r\n",
        b't LOGIN "alice" "secret"\r\n',
        b"t LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
        b"t LOGIN alice secret\r\n",
    ],
)
def test_login_spellings_are_equal(wire: bytes) -> None:
    assert args(wire) == LoginArgs("alice", b"secret")


def test_utf8_mailbox_names_in_utf8_mode() -> None:
    assert args('t SELECT "Données"'.encode(), UTF8) == SelectArgs(N("Données"))
    assert args(b"t RENAME &AOk- x", CTX) == RenameArgs(N("é"), N("x"))


# --- APPEND -----------------------------------------------------------------------------


def test_append_forms() -> None:
    """APPEND with flags, date-time, literal, literal8, UTF8 and MULTIAPPEND."""
    when = dt.datetime(1994, 2, 7, 21, 52, 25, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert args(b"t APPEND INBOX {5}\r\nhello\r\n") == AppendArgs(
        N("INBOX"), (AppendMessage(b"hello"),)
    )
    assert args(b't APPEND Sent (\\Seen $Sent) " 7-Feb-1994 21:52:25 -0800" {2+}\r\nhi\r\n') == (
        AppendArgs(N("Sent"), (AppendMessage(b"hi", frozenset({"\\Seen", "$Sent"}), when),))
    )
    assert args(b"t APPEND INBOX () ~{3}\r\na\0b\r\n") == AppendArgs(
        N("INBOX"), (AppendMessage(b"a\0b", binary=True),)
    )
    assert args(b"t APPEND INBOX UTF8 (~{2}\r\nhi)\r\n") == AppendArgs(
        N("INBOX"), (AppendMessage(b"hi", binary=True, utf8=True),)
    )
    multi = args(
        b't APPEND INBOX (\\Seen) {1}\r\na {1}\r\nb " 1-Jan-2024 00:00:00 +0000" {1}\r\nc\r\n'
    )
    assert isinstance(multi, AppendArgs)
    assert [m.data for m in multi.messages] == [b"a", b"b", b"c"]
    assert multi.messages[0].flags == {"\\Seen"}
    assert multi.messages[1].flags == frozenset()
    assert multi.messages[2].internal_date is not None


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"t APPEND", "Missing mailbox name"),
        (b"t APPEND INBOX", "Missing message literal"),
        (b't APPEND INBOX "hello"', "Invalid internal date"),
        (b"t APPEND INBOX hello", "Message must be sent as a literal"),
        (b"t APPEND INBOX (\\Seen)", "Missing message literal"),
        (
            b"t APPEND INBOX (\\Recent) {1}\r\nx",
            "Flag \\Recent is set by the server and cannot be stored",
        ),
        (b"t APPEND INBOX UTF8 ({1}\r\nx)", "UTF8 message data must be a parenthesised literal8"),
        (b"t APPEND INBOX {1}\r\nx junk", "Message must be sent as a literal"),
    ],
)
def test_append_errors(wire: bytes, text: str) -> None:
    assert error(wire).text == text


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"t NOOP extra", "Too many arguments"),
        (b"t CAPABILITY x", "Too many arguments"),
        (b"t LOGIN", "Missing user name"),
        (b"t LOGIN alice", "Missing password"),
        (b"t LOGIN alice pw more", "Too many arguments"),
        (b"t LOGIN a%b pw", "Invalid characters in user name"),
        (b't LOGIN "\xff" pw', "Invalid UTF-8 in user name"),
        (b"t LOGIN (a) pw", "Invalid user name"),
        (b"t AUTHENTICATE", "Missing authentication mechanism"),
        (b"t AUTHENTICATE PLAIN !!!", "Invalid base64 in initial response"),
        (b't AUTHENTICATE PLAIN "AA=="', "Invalid initial response"),
        (b"t ENABLE", "Missing capability"),
        (b"t SELECT", "Missing mailbox name"),
        (b"t SELECT INBOX ()", "Invalid select parameters"),
        (b"t SELECT INBOX (FOO)", "Unknown or repeated select parameter"),
        (b"t SELECT INBOX (CONDSTORE CONDSTORE)", "Unknown or repeated select parameter"),
        (b"t SELECT INBOX (QRESYNC)", "Missing QRESYNC parameters"),
        (b"t SELECT INBOX (QRESYNC (0 1))", "Invalid UIDVALIDITY: number out of range"),
        (b"t SELECT INBOX (QRESYNC (1 1 1:*))", "Invalid known UIDs: '*' is not allowed"),
        (b"t SELECT INBOX (QRESYNC (1 1 1:5 (1)))", "Invalid QRESYNC sequence match data"),
        (b"t SELECT INBOX x", "Invalid select parameters"),
        (b"t CREATE a (USE)", "Invalid create parameters"),
        (b"t CREATE a (FOO (\\Sent))", "Unknown create parameter"),
        (b"t CREATE a (USE (Sent))", "Invalid special-use attribute"),
        (b"t RENAME a", "Missing new mailbox name"),
        (b"t RENAME a b c", "Too many arguments"),
        (b"t LIST", "Missing reference name"),
        (b't LIST ""', "Missing mailbox pattern"),
        (b't LIST "" ()', "Empty mailbox pattern list"),
        (b't LIST (FOO) "" *', "Unknown LIST selection option"),
        (b't LIST (RECURSIVEMATCH) "" *', "RECURSIVEMATCH needs another selection option"),
        (b't LIST "" * RETURN (FOO)', "Unknown LIST return option"),
        (b't LIST "" * RETURN (STATUS)', "Missing status item list"),
        (b't LIST "" * x', "Too many arguments"),
        (b"t STATUS INBOX", "Missing status item list"),
        (b"t STATUS INBOX ()", "Invalid status item list"),
        (b"t STATUS INBOX (FOO)", "Unknown status item"),
        (b"t STATUS INBOX MESSAGES", "Invalid status item list"),
        (b"t FETCH", "Missing sequence set"),
        (b"t FETCH 1 FLAGS ()", "Invalid fetch modifiers"),
        (b"t FETCH 1 FLAGS (FOO 1)", "Unknown or repeated fetch modifier"),
        (b"t FETCH 1 FLAGS (CHANGEDSINCE)", "Missing mod-sequence after CHANGEDSINCE"),
        (b"t FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "VANISHED is only allowed in UID FETCH"),
        (b"t UID FETCH 1 FLAGS (VANISHED)", "VANISHED requires CHANGEDSINCE"),
        (b"t FETCH 1 FLAGS (CHANGEDSINCE 1) x", "Too many arguments"),
        (b"t STORE 1", "Missing store item"),
        (b"t STORE 1 FLAGZ (\\Seen)", "Invalid store item"),
        (b"t STORE 1 FLAGS", "Missing flag list"),
        (b"t STORE 1 FLAGS (\\Seen) x", "Too many arguments"),
        (b"t STORE 1 (UNCHANGEDSINCE) FLAGS x", "Invalid store modifiers"),
        (b"t STORE 1 +FLAGS \\Recent", "Flag \\Recent is set by the server and cannot be stored"),
        (b"t COPY 1", "Missing mailbox name"),
        (b"t MOVE 0 x", "Invalid sequence set: 0 is not a valid number"),
        (b"t UID EXPUNGE", "Missing UID set"),
        (b"t SORT", "Missing sort criteria"),
        (b"t SORT () UTF-8 ALL", "Invalid sort criteria"),
        (b"t SORT (FOO) UTF-8 ALL", "Unknown sort criterion"),
        (b"t SORT (REVERSE) UTF-8 ALL", "Missing sort key after REVERSE"),
        (b"t SORT (DATE)", "Missing charset"),
        (b"t SORT (DATE) UTF-8", "Missing search criteria"),
        (b"t THREAD FOO UTF-8 ALL", "Unknown threading algorithm"),
        (b"t ID", "Missing ID parameter list"),
        (b't ID ("a")', "ID parameter list must hold field/value pairs"),
        (b't ID (a "b")', "Invalid ID field name: expected a string"),
        (b't ID ("' + b"x" * 31 + b'" NIL)', "ID field name too long"),
        (b"t ID (" + b'"a" NIL ' * 31 + b")", "Too many ID fields"),
        (b"t SETACL INBOX bob", "Missing access rights"),
        (
            b"t SETACL INBOX bob +lz",
            "Unknown access right 'z' (the rights are l r s w i p k x t e a)",
        ),
        (b"t SETACL INBOX --bob l", "ACL identifier may start with only one '-'"),
        (b"t DELETEACL INBOX", "Missing identifier"),
        (b"t SETQUOTA x (STORAGE)", "Invalid resource limit list"),
        (b"t SETQUOTA x (STORAGE x)", "Invalid resource limit: expected a number"),
        (b"t SETQUOTA x (STORAGE 1 storage 2)", "Resource given twice"),
        (b"t SETQUOTA x (\\x 1)", "Invalid resource name"),
        (b"t GETQUOTA", "Missing quota root"),
        (b"t COMPRESS", "Missing compression mechanism"),
        (b"t UID", "Missing command after UID"),
    ],
)
def test_bad_arguments(wire: bytes, text: str) -> None:
    """Bad arguments give a tagged BAD with a precise text."""
    e = error(wire)
    assert isinstance(e, BadCommandError)
    assert (e.text, e.tag, e.status) == (text, b"t", b"BAD")


def test_invalid_names_are_refused_with_no() -> None:
    e = error(b"t CREATE a//b")
    assert isinstance(e, RefusedCommandError)
    assert (e.status, e.code, e.tag) == (b"NO", b"CANNOT", b"t")


@pytest.mark.parametrize(
    "wire", [b"t FOO", b"t UID FOO 1", b"t UID NOOP", b"t LOGIN(x)", b"t X-Y"]
)
def test_unknown_commands_are_distinct_from_bad_arguments(wire: bytes) -> None:
    e = error(wire)
    assert isinstance(e, UnknownCommandError)
    assert (e.text, e.tag) == ("Unknown command", b"t")


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"", "Missing tag"),
        (b" NOOP", "Missing tag"),
        (b"* NOOP", "Invalid tag"),
        (b"+ NOOP", "Invalid tag"),
        (b"a+ NOOP", "Invalid tag"),
        (b"a{ NOOP", "Invalid tag"),
        (b"a( NOOP", "Invalid tag"),
        (b"a% NOOP", "Invalid tag"),
        (b'a" NOOP', "Invalid tag"),
        (b"a\\ NOOP", "Invalid tag"),
        (b"x" * 65 + b" NOOP", "Invalid tag"),
        (b"<script>alert(1)</script> NOOP", "Invalid tag"),
    ],
)
def test_invalid_tags_get_an_untagged_bad_without_echo(wire: bytes, text: str) -> None:
    """Invalid tags: untagged BAD, and the text never contains the client's input."""
    with pytest.raises(InvalidTagError) as info:
        parse_command(CommandUnit.of_line(wire), CTX)
    assert (info.value.text, info.value.tag) == (text, None)


@pytest.mark.parametrize("wire", [b"t", b"t ", b"t  NOOP"])
def test_missing_command(wire: bytes) -> None:
    with pytest.raises(BadCommandError) as info:
        parse_command(CommandUnit.of_line(wire), CTX)
    assert (info.value.text, info.value.tag) == ("Missing command", b"t")


def test_every_table_entry_is_reachable() -> None:
    """Every name in the command table dispatches (no dead rows)."""
    for name in PARSERS:
        with contextlib.suppress(BadCommandError, RefusedCommandError):
            parse_command(CommandUnit.of_line(b"t " + name), CTX)


def test_idle_done_and_sasl_lines() -> None:
    assert is_idle_done(CommandUnit.of_line(b"done"))
    assert not is_idle_done(CommandUnit.of_line(b"a DONE"))
    assert parse_sasl_response(CommandUnit.of_line(b"AGFsaWNlAHB3")) == b"\0alice\0pw"
    assert parse_sasl_response(CommandUnit.of_line(b"")) == b""
    assert parse_sasl_response(CommandUnit.of_line(b"*")) is None
    with pytest.raises(BadCommandError, match="Invalid base64 in SASL response"):
        parse_sasl_response(CommandUnit.of_line(b"AGF=sa"))
