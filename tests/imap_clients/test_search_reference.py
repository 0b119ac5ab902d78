"""SEARCH checked against a brute-force reference evaluator (RFC 9051 §6.4.4).

A mailbox of 200 varied messages (dates in several time zones around midnight, sizes from
200 octets to 20 KB, system flags and keywords, RFC 2047 encoded subjects and names, optional
Cc/Bcc/List-Id/X-Tag headers, non-ASCII bodies) is APPENDed; some are expunged so sequence
numbers and UIDs differ, and half are \\Recent for the searching session. Hypothesis builds
random search programs (nested AND/OR/NOT over every key) and the server's ``UID SEARCH``
must equal the reference, which evaluates the program on the raw messages with Python's
email package -- the oracle, not the server's code.

The matching rules the reference encodes (RFC 9051): strings match as case-insensitive
substrings of the decoded header value or of the body; HEADER with an empty string matches
every message that has the field; SENT* and BEFORE/ON/SINCE compare the date as written,
disregarding time and time zone; TEXT matches the header (decoded) or the body.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conversations.harness import LineClient, MsgstoreServer, User
from tests.imap_clients.conftest import client, exchange, raw

WORDS: Final = [
    "alpha",
    "Beta",
    "gamma",
    "report",
    "invoice",
    "Meeting",
    "café",
    "Über",
    "naïve",
    "Ωmega",
    "señor",
    "zebra",
]
NAMES: Final = [
    ("Ann Smith", "ann@example.org"),
    ("José Núñez", "jose@example.es"),
    ("Zoë Ärger", "zoe@example.de"),
    ("", "bare@example.net"),
    ("Bob", "bob@lists.example.com"),
]
SYSTEM_FLAGS: Final = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]
KEYWORDS: Final = ["$Work", "$Junk", "Todo", "project-x"]
ZONES: Final = [-600, -300, 0, 60, 330, 720, 840]  # minutes east of UTC
DAY0: Final = dt.date(2023, 12, 28)
MONTHS: Final = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
]


def encode_word(text: str, rng: random.Random) -> str:
    if text.isascii() and rng.random() < 0.5:
        return text
    return email.header.Header(text, "utf-8").encode() if rng.random() < 0.5 else text


def when(rng: random.Random) -> dt.datetime:
    zone = dt.timezone(dt.timedelta(minutes=rng.choice(ZONES)))
    day = DAY0 + dt.timedelta(days=rng.randrange(8))
    hour = rng.choice([0, 0, 1, 12, 22, 23, 23])
    return dt.datetime(day.year, day.month, day.day, hour, rng.randrange(60), 0, tzinfo=zone)


def address(name: str, addr: str, rng: random.Random) -> str:
    if not name:
        return addr
    if name.isascii():
        return f"{name} <{addr}>"
    return f"{email.header.Header(name, 'utf-8').encode()} <{addr}>"


def build(index: int, rng: random.Random) -> tuple[bytes, dt.datetime]:
    sent = when(rng)
    subject_words = rng.sample(WORDS, rng.randrange(1, 4))
    subject = " ".join(subject_words)
    subject_field = (
        email.header.Header(subject, "utf-8").encode()
        if not subject.isascii() or rng.random() < 0.3
        else subject
    )
    lines = [
        f"From: {address(*rng.choice(NAMES), rng)}",
        f"To: {address(*rng.choice(NAMES), rng)}",
        f"Subject: {subject_field}",
        f"Date: {email.utils.format_datetime(sent)}",
        f"Message-ID: <m{index}.{rng.randrange(10**6)}@example.org>",
    ]
    if rng.random() < 0.4:
        lines.append(f"Cc: {address(*rng.choice(NAMES), rng)}")
    if rng.random() < 0.2:
        lines.append(f"Bcc: {address(*rng.choice(NAMES), rng)}")
    if rng.random() < 0.3:
        lines.append(f"List-Id: Python list <python.{rng.choice(['dev', 'users'])}.org>")
    if rng.random() < 0.3:
        lines.append(f"X-Tag: {rng.choice(WORDS)} {rng.randrange(100)}")
    body_words = [rng.choice(WORDS) for _ in range(rng.randrange(5, 30))]
    body = " ".join(body_words) + "\r\n"
    body += ("filler line " + "x" * 60 + "\r\n") * rng.choice([0, 0, 3, 50, 300])
    if not body.isascii():
        lines.append("MIME-Version: 1.0")
        lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append("Content-Transfer-Encoding: 8bit")
    raw_msg = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")
    return raw_msg, when(rng)


@dataclass(frozen=True)
class Ref:
    """What the oracle knows of one message."""

    uid: int
    seq: int
    raw: bytes
    internal: dt.date
    flags: frozenset[str]  # lower case, \Recent excluded
    recent: bool
    modseq: int

    def header_block(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]

    def body(self) -> str:
        return self.raw.split(b"\r\n\r\n", 1)[1].decode("utf-8", "replace").lower()

    def fields(self, name: str) -> list[str]:
        out = []
        for line in self.header_block().split(b"\r\n"):
            field, _, value = line.decode("utf-8", "replace").partition(":")
            if field.lower() == name.lower():
                out.append(decode(value.strip()).lower())
        return out

    def sent(self) -> dt.date | None:
        values = self.fields("date")
        parsed = email.utils.parsedate_tz(values[0]) if values else None
        return dt.date(*parsed[:3]) if parsed else None


def decode(value: str) -> str:
    return str(email.header.make_header(email.header.decode_header(value)))


# --- programs: (rendered IMAP, evaluator) built together ------------------------------------


def quote(text: str) -> bytes:
    data = text.encode("utf-8")
    if text.isascii():
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d+}\r\n" % len(data) + data


def imap_date(day: dt.date) -> bytes:
    return f"{day.day}-{MONTHS[day.month - 1]}-{day.year}".encode()


@dataclass(frozen=True)
class Key:
    text: bytes
    kind: str
    arg: object = None
    children: tuple[Key, ...] = ()

    def match(self, m: Ref, total: int, max_uid: int) -> bool:
        k, a = self.kind, self.arg
        if k == "ALL":
            return True
        if k == "FLAG":
            flag, present = cast(tuple[str, bool], a)
            return (flag.lower() in m.flags) == present
        if k == "RECENT":
            return m.recent
        if k == "OLD":
            return not m.recent
        if k == "NEW":
            return m.recent and "\\seen" not in m.flags
        if k == "FIELD":
            name, needle = cast(tuple[str, str], a)
            return any(needle.lower() in v for v in m.fields(name))
        if k == "BODY":
            return str(a).lower() in m.body()
        if k == "TEXT":
            needle = str(a).lower()
            headers = m.header_block().decode("utf-8", "replace")
            decoded = "\r\n".join(decode(h) for h in headers.split("\r\n")).lower()
            return needle in m.body() or needle in decoded or needle in headers.lower()
        if k in ("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"):
            day = m.internal if not k.startswith("SENT") else m.sent()
            want = a
            assert isinstance(want, dt.date)
            if day is None:
                return False
            op = k.removeprefix("SENT")
            return day < want if op == "BEFORE" else day == want if op == "ON" else day >= want
        if k == "LARGER":
            return len(m.raw) > int(str(a))
        if k == "SMALLER":
            return len(m.raw) < int(str(a))
        if k == "SEQ":
            lo, hi = cast(tuple[int, int], a)
            return min(lo, hi) <= m.seq <= max(lo, hi)
        if k == "UID":
            lo, hi = cast(tuple[int, int], a)
            return min(lo, hi) <= m.uid <= max(lo, hi)
        if k == "MODSEQ":
            return m.modseq >= int(str(a))
        if k == "NOT":
            return not self.children[0].match(m, total, max_uid)
        if k == "OR":
            return any(c.match(m, total, max_uid) for c in self.children)
        assert k == "AND"
        return all(c.match(m, total, max_uid) for c in self.children)


FLAG_KEYS: Final = {
    "\\Seen": (b"SEEN", b"UNSEEN"),
    "\\Answered": (b"ANSWERED", b"UNANSWERED"),
    "\\Flagged": (b"FLAGGED", b"UNFLAGGED"),
    "\\Deleted": (b"DELETED", b"UNDELETED"),
    "\\Draft": (b"DRAFT", b"UNDRAFT"),
}

needles = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: w.upper()),
    st.sampled_from(WORDS).map(lambda w: w[1:4]),
    st.sampled_from(["example", "ann", "josé", "núñez", "ärger", "python", "", "m1", "@"]),
)
days = st.integers(0, 9).map(lambda n: DAY0 + dt.timedelta(days=n - 1))


def _flag(flag: str, present: bool) -> Key:
    on, off = FLAG_KEYS[flag]
    return Key(on if present else off, "FLAG", (flag, present))


def _field(name: str, needle: str) -> Key:
    if name in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        return Key(name.encode() + b" " + quote(needle), "FIELD", (name, needle))
    return Key(b"HEADER " + name.encode() + b" " + quote(needle), "FIELD", (name, needle))


def _date(op: str, day: dt.date) -> Key:
    return Key(op.encode() + b" " + imap_date(day), op, day)


def _range(kind: str, lo: int, hi: int) -> Key:
    text = b"%d:%d" % (lo, hi) if lo != hi else b"%d" % lo
    return Key(text if kind == "SEQ" else b"UID " + text, kind, (lo, hi))


leaves = st.one_of(
    st.just(Key(b"ALL", "ALL")),
    st.builds(_flag, st.sampled_from(list(FLAG_KEYS)), st.booleans()),
    st.builds(
        lambda kw, present: Key(
            (b"KEYWORD " if present else b"UNKEYWORD ") + kw.encode(), "FLAG", (kw, present)
        ),
        st.sampled_from(KEYWORDS),
        st.booleans(),
    ),
    st.sampled_from([Key(b"RECENT", "RECENT"), Key(b"OLD", "OLD"), Key(b"NEW", "NEW")]),
    st.builds(
        _field,
        st.sampled_from(
            ["FROM", "TO", "CC", "BCC", "SUBJECT", "List-Id", "X-Tag", "Message-ID", "Reply-To"]
        ),
        needles,
    ),
    st.builds(lambda n: Key(b"BODY " + quote(n), "BODY", n), needles),
    st.builds(lambda n: Key(b"TEXT " + quote(n), "TEXT", n), needles),
    st.builds(
        _date,
        st.sampled_from(["BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"]),
        days,
    ),
    st.builds(
        lambda larger, n: Key(
            (b"LARGER %d" if larger else b"SMALLER %d") % n, "LARGER" if larger else "SMALLER", n
        ),
        st.booleans(),
        st.sampled_from([0, 300, 500, 1000, 4000, 20000]),
    ),
    st.builds(_range, st.just("SEQ"), st.integers(1, 190), st.integers(1, 190)),
    st.builds(_range, st.just("UID"), st.integers(1, 210), st.integers(1, 210)),
    st.builds(lambda n: Key(b"MODSEQ %d" % n, "MODSEQ", n), st.integers(1, 260)),
)


def _combine(children: st.SearchStrategy[Key]) -> st.SearchStrategy[Key]:
    return st.one_of(
        children.map(lambda c: Key(b"NOT " + c.text, "NOT", children=(c,))),
        st.tuples(children, children).map(
            lambda cs: Key(b"OR " + cs[0].text + b" " + cs[1].text, "OR", children=cs)
        ),
        st.lists(children, min_size=1, max_size=3).map(
            lambda cs: Key(b"(" + b" ".join(c.text for c in cs) + b")", "AND", children=tuple(cs))
        ),
    )


programs = st.lists(st.recursive(leaves, _combine, max_leaves=6), min_size=1, max_size=3)


# --- the mailbox ---------------------------------------------------------------------------


class Mailbox:
    """The searching session and the oracle's view of its selected mailbox (a plain class:
    hypothesis pretty-prints dataclass arguments field by field)."""

    def __init__(self, conn: LineClient, refs: list[Ref]) -> None:
        self.conn = conn
        self.refs = refs

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"<mailbox of {len(self.refs)} messages>"


APPENDERS: Final = 8


def _append_all(
    server: MsgstoreServer,
    user: User,
    messages: list[tuple[bytes, dt.datetime, list[str]]],
    appended: dict[int, tuple[bytes, dt.datetime]],
) -> None:
    """APPEND ``messages`` over several sessions at once (the store's group commit makes that
    several times faster than one after another); ``appended`` maps each UID (from
    APPENDUID) to its message and internal date."""

    def one_session(share: list[tuple[bytes, dt.datetime, list[str]]]) -> None:
        with client(server, user) as c:
            for raw_msg, internal, flags in share:
                reply = c.append(
                    "INBOX", raw_msg, flags=[f.encode() for f in flags], msg_time=internal
                )
                code = re.search(rb"APPENDUID \d+ (\d+)", reply)
                assert code is not None, reply
                appended[int(code[1])] = (raw_msg, internal)

    with ThreadPoolExecutor(APPENDERS) as pool:
        for done in [pool.submit(one_session, messages[i::APPENDERS]) for i in range(APPENDERS)]:
            done.result()


@pytest.fixture(scope="module")
def mailbox(clients_server: MsgstoreServer) -> Iterator[Mailbox]:
    user = clients_server.admin.add_user("searcher")
    rng = random.Random(20240101)
    built = []
    for n in range(200):
        raw_msg, internal = build(n, rng)
        chosen = [f for f in SYSTEM_FLAGS + KEYWORDS if rng.random() < 0.3]
        built.append((raw_msg, internal, chosen))
    appended: dict[int, tuple[bytes, dt.datetime]] = {}
    with client(clients_server, user) as c:
        _append_all(clients_server, user, built[:100], appended)
        c.select_folder("INBOX")  # the first hundred stop being \Recent for later sessions
        c.unselect_folder()
        _append_all(clients_server, user, built[100:], appended)
    assert len(appended) == 200
    with client(clients_server, user) as c:
        c.select_folder("INBOX", readonly=True)  # claims nothing
    conn = raw(clients_server, user)
    exchange(conn, b"e", b"ENABLE CONDSTORE")
    # Expunge a few through this session so sequence numbers and UIDs differ.
    exchange(conn, b"s0", b"SELECT INBOX")
    exchange(conn, b"x1", b"UID STORE 3,17,50:52,120,199 +FLAGS.SILENT (\\Deleted)")
    exchange(conn, b"x2", b"UID EXPUNGE 3,17,50:52,120,199")
    lines = exchange(conn, b"f", b"FETCH 1:* (UID FLAGS MODSEQ)")
    refs = []
    for line in lines[:-1]:
        assert line.startswith(b"* "), line
        assert b" FETCH " in line, line
        seq = int(line.split()[1])
        uid = int(line.split(b"UID ")[1].split()[0].rstrip(b")"))
        modseq = int(line.split(b"MODSEQ (")[1].split(b")")[0])
        flag_text = line.split(b"FLAGS (")[1].split(b")")[0].decode()
        flags = frozenset(f.lower() for f in flag_text.split())
        raw_msg, internal = appended[uid]
        refs.append(
            Ref(
                uid,
                seq,
                raw_msg,
                internal.date(),
                flags - {"\\recent"},
                "\\recent" in flags,
                modseq,
            )
        )
    assert len(refs) == 193
    assert 0 < sum(r.recent for r in refs) < 193
    try:
        yield Mailbox(conn, refs)
    finally:
        conn.close()


def server_search(conn: LineClient, program: bytes) -> list[int]:
    lines = exchange(conn, b"q", b"UID SEARCH CHARSET UTF-8 " + program)
    assert lines[-1].startswith(b"q OK"), lines[-1]
    found: list[int] = []
    for line in lines[:-1]:
        if line.startswith(b"* SEARCH"):
            numbers = line.split(b" (MODSEQ ")[0]  # RFC 7162 §3.1.5
            found.extend(int(x) for x in numbers.split()[2:])
    return sorted(found)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_search_equals_the_reference(mailbox: Mailbox, program: list[Key]) -> None:
    text = b" ".join(k.text for k in program)
    total, max_uid = len(mailbox.refs), mailbox.refs[-1].uid
    expected = sorted(
        m.uid for m in mailbox.refs if all(k.match(m, total, max_uid) for k in program)
    )
    assert server_search(mailbox.conn, text) == expected, text


EXAMPLES: Final = [
    Key(b"SENTON 1-Jan-2024", "SENTON", dt.date(2024, 1, 1)),
    Key(b"SENTBEFORE 1-Jan-2024", "SENTBEFORE", dt.date(2024, 1, 1)),
    Key(b"ON 1-Jan-2024", "ON", dt.date(2024, 1, 1)),
    Key(b"SINCE 2-Jan-2024", "SINCE", dt.date(2024, 1, 2)),
    Key(b"SUBJECT {5+}\r\ncaf\xc3\xa9", "FIELD", ("SUBJECT", "café")),
    Key(b"FROM {7+}\r\nn\xc3\xba\xc3\xb1ez", "FIELD", ("FROM", "núñez")),
    Key(b"BODY {5+}\r\n\xc3\xbcber", "BODY", "über"),
    Key(b"TEXT {5+}\r\n\xc3\xbcber", "TEXT", "über"),
    Key(b"TEXT {5+}\r\ncaf\xc3\xa9", "TEXT", "café"),
]


@pytest.mark.parametrize("key", EXAMPLES, ids=[k.text.decode("utf-8") for k in EXAMPLES])
def test_search_examples(mailbox: Mailbox, key: Key) -> None:
    """Fixed programs for the rules most likely to go wrong (dates as written, non-ASCII case
    folding, TEXT on decoded headers), so a failure shows without shrinking."""
    expected = sorted(m.uid for m in mailbox.refs if key.match(m, 0, 0))
    assert expected, "the example must match something"
    assert server_search(mailbox.conn, key.text) == expected
