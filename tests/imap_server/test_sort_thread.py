"""SORT and THREAD (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957) through imaplib.

Every expected order below is worked out by hand from the RFC rules in the comments, not
taken from the server's output.
"""

from __future__ import annotations

import imaplib
from collections.abc import Sequence

import pytest

from tests.conversations.harness import MsgstoreServer, User
from tests.imap_server.conftest import connect


def _msg(headers: dict[str, str], pad: int = 0) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n" + "x" * pad + "\r\n").encode()


def _fill(
    client: imaplib.IMAP4, mailbox: str, messages: Sequence[tuple[bytes, str | None]]
) -> None:
    assert client.create(mailbox)[0] == "OK"
    for data, internal in messages:
        date = f'"{internal}"' if internal else None
        assert client.append(mailbox, "", date, data)[0] == "OK"
    assert client.select(mailbox)[0] == "OK"


def _numbers(client: imaplib.IMAP4, typ: str, data: list[bytes | None]) -> list[int]:
    assert typ == "OK", data
    assert data
    assert data[0] is not None
    return [int(n) for n in data[0].split()]


SORT_MESSAGES = [
    (
        _msg(
            {
                "From": '"Zed" <bob@x.org>',
                "To": "carol@x.org",
                "Cc": "zoe@x.org",
                "Subject": "Re: beta",
                "Date": "Wed, 03 Jan 2024 10:00:00 +0000",
            },
            10,
        ),
        "01-Feb-2024 00:00:00 +0000",
    ),
    (
        _msg(
            {
                "From": "alice@x.org",
                "To": '"Yan" <yves@x.org>',
                "Subject": "alpha",
                "Date": "Fri, 05 Jan 2024 10:00:00 +0000",
            },
            3000,
        ),
        "01-Jan-2024 00:00:00 +0000",
    ),
    (
        _msg(
            {
                "From": '"Adam" <carl@x.org>',
                "To": "bert@x.org",
                "Cc": "anna@x.org",
                "Subject": "[list] Fwd: Beta (fwd)",
                "Date": "not a date",
            },
            1000,
        ),
        "04-Jan-2024 12:00:00 +0000",
    ),
    (
        _msg(
            {
                "From": "bob@x.org",
                "To": "amy@x.org",
                "Subject": "Gamma",
                "Date": "Thu, 04 Jan 2024 08:00:00 -0500",
            },
            2000,
        ),
        "03-Jan-2024 00:00:00 +0000",
    ),
]

#: criteria -> expected sequence numbers, derived from RFC 5256 §3 (ties: mailbox order).
SORT_CASES = {
    # internal dates: 2 (1 Jan) 4 (3 Jan) 3 (4 Jan) 1 (1 Feb)
    "(ARRIVAL)": [2, 4, 3, 1],
    # sent dates; message 3 has none that parses, so its internal date (4 Jan 12:00) counts;
    # message 4 is 4 Jan 13:00 UTC
    "(DATE)": [1, 3, 4, 2],
    "(REVERSE DATE)": [2, 4, 3, 1],
    # first From mailbox: alice, bob (1), bob (4), carl
    "(FROM)": [2, 1, 4, 3],
    # REVERSE does not reverse the mailbox-order tie break
    "(REVERSE FROM)": [3, 1, 4, 2],
    "(TO)": [4, 3, 1, 2],
    # no Cc sorts as the empty string, first
    "(CC)": [2, 4, 3, 1],
    # base subjects: beta, alpha, beta ("[list] Fwd: Beta (fwd)"), gamma
    "(SUBJECT)": [2, 1, 3, 4],
    "(SUBJECT REVERSE DATE)": [2, 3, 1, 4],
    "(SIZE)": [1, 3, 4, 2],
    "(REVERSE SIZE)": [2, 4, 3, 1],
    # display names, else addr-spec: zed, alice@x.org, adam, bob@x.org
    "(DISPLAYFROM)": [3, 2, 4, 1],
    # carol@x.org, yan, bert@x.org, amy@x.org
    "(DISPLAYTO)": [4, 3, 1, 2],
}


def test_sort_every_criterion(imap_server: MsgstoreServer, user: User) -> None:
    client = connect(imap_server, user)
    try:
        caps = client.capabilities
        for cap in ("SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"):
            assert cap in caps
        _fill(client, "Sorting", SORT_MESSAGES)
        for criteria, expected in SORT_CASES.items():
            typ, data = client.sort(criteria, "UTF-8", "ALL")
            assert _numbers(client, typ, data) == expected, criteria
        # the search program narrows the set first
        typ, data = client.sort("(ARRIVAL)", "US-ASCII", "NOT", "FROM", "alice")
        assert _numbers(client, typ, data) == [4, 3, 1]
        # UID SORT answers with UIDs
        typ, data = client.uid("FETCH", "1:*", "(UID)")
        assert typ == "OK"
        uids = [int(str(line).split("UID ")[1].rstrip(")'")) for line in data]
        typ, data = client.uid("SORT", "(SIZE)", "UTF-8", "ALL")
        assert _numbers(client, typ, data) == [uids[n - 1] for n in (1, 3, 4, 2)]
        # bad criteria and charsets
        with pytest.raises(imaplib.IMAP4.error, match="Unknown sort criterion"):
            client.sort("(NOSUCHKEY)", "UTF-8", "ALL")
        typ, data = client.sort("(DATE)", "KOI8-R", "ALL")
        assert typ == "NO"
        assert b"BADCHARSET" in data[0]
    finally:
        client.logout()


def test_sort_subject_uses_rfc5256_base_subject(imap_server: MsgstoreServer, user: User) -> None:
    """RFC 5256 §2.1: reply/forward leaders, [blobs], (fwd) trailers and [fwd: ...]
    wrappers are removed; every subject below but the first has base subject "test"."""
    subjects = [
        "testing",
        "Re: test",
        "RE: [foo] Re: test",
        "[fwd: test]",
        "test (fwd)",
        "Fwd: Re: test",
        "[list]  test",
        "re:test",
        "Re:   Test  ",
    ]
    client = connect(imap_server, user)
    try:
        _fill(client, "Subjects", [(_msg({"Subject": s}), None) for s in subjects])
        typ, data = client.sort("(SUBJECT)", "UTF-8", "ALL")
        assert _numbers(client, typ, data) == [2, 3, 4, 5, 6, 7, 8, 9, 1]
        # ORDEREDSUBJECT: one thread for "test" (first message parent, the rest its
        # children), one for "testing"; threads by their first message's date, which is
        # the same (no Date header: the internal date), then by sequence number
        typ, data = client.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
        assert typ == "OK"
        assert data[0] == b"(1)(2 (3)(4)(5)(6)(7)(8)(9))"
    finally:
        client.logout()


def _dated(day: int, **headers: str) -> tuple[bytes, str | None]:
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    fields["Date"] = f"{day:02d} Jan 2024 10:00:00 +0000"
    fields.setdefault("From", "a@x.org")
    return _msg(fields), None


def test_thread_orderedsubject(imap_server: MsgstoreServer, user: User) -> None:
    client = connect(imap_server, user)
    try:
        _fill(
            client,
            "Ordered",
            [
                _dated(2, Subject="Re: hello"),
                _dated(1, Subject="world"),
                _dated(3, Subject="hello"),
                _dated(4, Subject="Fwd: hello"),
                _dated(5, Subject="world"),
            ],
        )
        # hello: 1 (2 Jan), 3, 4 -> "(1 (3)(4))"; world: 2 (1 Jan), 5 -> "(2 5)";
        # the world thread starts earlier
        typ, data = client.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
        assert typ == "OK"
        assert data[0] == b"(2 5)(1 (3)(4))"
        typ, data = client.thread("ORDEREDSUBJECT", "UTF-8", "SUBJECT", "world")
        assert data[0] == b"(2 5)"
    finally:
        client.logout()


def test_thread_references(imap_server: MsgstoreServer, user: User) -> None:
    client = connect(imap_server, user)
    try:
        _fill(
            client,
            "Refs",
            [
                _dated(1, Message_ID="<a@x>", Subject="topic"),
                _dated(2, Message_ID="<b@x>", In_Reply_To="<a@x>", Subject="Re: topic"),
                _dated(4, Message_ID="<c@x>", References="<a@x> <b@x>", Subject="Re: topic"),
                _dated(3, Message_ID="<d@x>", References="<a@x>", Subject="Re: topic"),
                _dated(5, Message_ID="<e@x>", References="<gone@x>", Subject="other"),
                _dated(6, Message_ID="<f@x>", References="<gone@x>", Subject="Re: other"),
                _dated(7, Message_ID="<g@x>", Subject="Re: lonely"),
                _dated(8, Message_ID="<h@x>", Subject="lonely"),
                _dated(9, Message_ID="<i@x>", References="<i@x>", Subject="solo"),
            ],
        )
        # 1 is the root of 2 (In-Reply-To) and 4; 3 replies to 2 (last reference);
        # 5 and 6 share a missing parent: a dummy with two children stays at the root;
        # 7 ("Re: lonely") and 8 ("lonely") merge by subject, the reply below the
        # original (step 5.B); 9 references itself and is alone. Roots by date.
        expected = b"(1 (2 3)(4))((5)(6))(8 7)(9)"
        typ, data = client.thread("REFERENCES", "UTF-8", "ALL")
        assert typ == "OK"
        assert data[0] == expected
        # a fresh mailbox numbers UIDs from 1, so UID THREAD gives the same numbers here
        typ, fetched = client.uid("FETCH", "1:*", "(UID)")
        assert typ == "OK"
        assert [int(str(line).split("UID ")[1].rstrip(")'")) for line in fetched] == list(
            range(1, 10)
        )
        typ, data = client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
        assert (typ, data[0]) == ("OK", expected)
        # only the messages the search program selects are threaded: without 1 its
        # container is an empty dummy holding 2 and 4, and a root dummy with two children
        # stays (step 3)
        typ, data = client.thread("REFERENCES", "UTF-8", "NOT", "HEADER", "Message-ID", "a@x")
        assert (typ, data[0]) == ("OK", b"((2 3)(4))((5)(6))(8 7)(9)")
    finally:
        client.logout()
