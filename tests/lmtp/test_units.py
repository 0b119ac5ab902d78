"""Pure parts of the delivery channel: the reply table, DATA decoding, command syntax."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstore.core.address import parse_address
from msgstore.core.errors import ErrorKind
from msgstore.delivery.pipeline import Deferred, Rejected
from msgstore.lmtp.data import DotDecoder, Problem
from msgstore.lmtp.envelope import Envelope, Peer, trace_fields
from msgstore.lmtp.errors import KIND_REPLY, kind_reply, outcome_reply
from msgstore.lmtp.protocol import (
    BodyType,
    MailArguments,
    Protocol,
    SyntaxProblem,
    UnknownParameter,
    clean_helo,
    parse_bdat,
    parse_command,
    parse_mail,
    parse_rcpt,
)


def test_every_error_kind_has_a_consistent_reply() -> None:
    assert set(KIND_REPLY) == set(ErrorKind)
    for kind, reply in KIND_REPLY.items():
        assert str(reply.code)[0] == reply.enhanced[0], kind
        assert reply.code // 100 in (4, 5), kind


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ErrorKind.NOT_FOUND, "550 5.1.1"),
        (ErrorKind.DISABLED, "550 5.2.1"),
        (ErrorKind.OVER_QUOTA, "552 5.2.2"),
        (ErrorKind.TOO_BIG, "552 5.3.4"),
        (ErrorKind.UNAVAILABLE, "451 4.3.0"),
        (ErrorKind.TEMP, "451 4.3.0"),
    ],
)
def test_the_replies_issue_4_names(kind: ErrorKind, expected: str) -> None:
    reply = kind_reply(kind)
    assert f"{reply.code} {reply.enhanced}" == expected


def test_outcome_replies() -> None:
    assert outcome_reply(Rejected("a", ErrorKind.OVER_QUOTA, "full")).startswith(b"552 5.2.2 <a>")
    assert outcome_reply(Deferred("a", ErrorKind.OVER_QUOTA, "full")).startswith(b"452 4.2.2 <a>")
    assert outcome_reply(Deferred("a", ErrorKind.TEMP, "x", True)).startswith(b"452 4.3.1 ")
    assert outcome_reply(Deferred("a", ErrorKind.TEMP, "x")).startswith(b"451 4.3.0 ")
    # Client-controlled text cannot add a line.
    assert outcome_reply(Rejected("a\r\nb", ErrorKind.NOT_FOUND, "x")).count(b"\n") == 1


def decode(data: bytes, *, step: int | None = None) -> tuple[bytes, bytes, DotDecoder]:
    decoder = DotDecoder()
    out = b""
    rest = b""
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        if decoder.done:
            rest += piece
            continue
        payload, after = decoder.feed(piece)
        out += payload
        rest += after
    return out, rest, decoder


WIRE = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7])
def test_dot_unstuffing_and_the_end_at_any_split(step: int | None) -> None:
    out, rest, decoder = decode(WIRE, step=step)
    assert out == b"Subject: x\r\n\r\n.leading dot\r\n"
    assert rest == b"QUIT\r\n"
    assert decoder.done
    assert decoder.problem is None


def test_an_empty_message_ends_at_once() -> None:
    out, rest, decoder = decode(b".\r\nNOOP\r\n")
    assert (out, rest, decoder.done) == (b"", b"NOOP\r\n", True)


@pytest.mark.parametrize(
    ("smuggled", "problem"),
    [
        (b"\n.\n", Problem.BARE_LF),
        (b"\r.\r", Problem.BARE_CR),
        (b"\n.\r\n", Problem.BARE_LF),
        (b"\r\n.\n", Problem.BARE_LF),
        (b"\r\n.\r", Problem.BARE_CR),
    ],
)
@pytest.mark.parametrize("step", [None, 1])
def test_smuggling_variants_do_not_end_the_data(
    smuggled: bytes, problem: Problem, step: int | None
) -> None:
    """Only CRLF.CRLF ends DATA (CVE-2023-51764/5/6, CVE-2024-27305); the others mark
    the message bad, and the smuggled command stays message content."""
    wire = b"Subject: x\r\n\r\nbody" + smuggled + b"MAIL FROM:<evil@x>\r\nmore\r\n.\r\nNOOP\r\n"
    out, rest, decoder = decode(wire, step=step)
    assert decoder.done
    assert rest == b"NOOP\r\n"
    assert b"MAIL FROM:<evil@x>" in out
    assert decoder.problem is problem


def test_nul_is_a_problem() -> None:
    _, _, decoder = decode(b"a\0b\r\n.\r\n")
    assert decoder.problem is Problem.NUL


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("FROM:<a@b.example>", MailArguments("<a@b.example>")),
        ("from:<>", MailArguments("<>")),
        ("FROM: <a@b.example> SIZE=10", MailArguments("<a@b.example>", 10)),
        (
            'FROM:<"x y"@b.example> BODY=8bitmime SMTPUTF8',
            MailArguments('<"x y"@b.example>', None, BodyType.EIGHT_BIT, True),
        ),
        ("FROM:<a@b> BODY=BINARYMIME", MailArguments("<a@b>", None, BodyType.BINARY)),
    ],
)
def test_parse_mail(argument: str, expected: MailArguments) -> None:
    assert parse_mail(argument, extended=True) == expected


@pytest.mark.parametrize(
    ("argument", "error"),
    [
        ("FROM:a@b", SyntaxProblem),
        ("TO:<a@b>", SyntaxProblem),
        ("FROM:<a@b", SyntaxProblem),
        ("FROM:<a@b>SIZE=1", SyntaxProblem),
        ("FROM:<a@b> SIZE=x", SyntaxProblem),
        ("FROM:<a@b> SIZE=1 SIZE=2", SyntaxProblem),
        ("FROM:<a@b> BODY=9BIT", UnknownParameter),
        ("FROM:<a@b> XFORWARD=1", UnknownParameter),
    ],
)
def test_parse_mail_errors(argument: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_mail(argument, extended=True)


def test_parameters_need_ehlo_and_size_has_no_digit_bomb() -> None:
    with pytest.raises(UnknownParameter):
        parse_mail("FROM:<a@b> SIZE=1", extended=False)
    assert (parse_mail("FROM:<a@b> SIZE=" + "9" * 5000, extended=True).size or 0) > 10**19
    with pytest.raises(UnknownParameter):
        parse_rcpt("TO:<a@b> NOTIFY=NEVER", extended=True)


def test_parse_bdat_and_commands() -> None:
    assert parse_bdat("100") == (100, False)
    assert parse_bdat("0 last") == (0, True)
    for bad in ("", "-1", "10 LASTX", "1 2 3", "9" * 30):
        with pytest.raises(SyntaxProblem):
            parse_bdat(bad)
    assert parse_command(b"rcpt TO:<a@b>").verb == "RCPT"
    for line in (b"NO\0OP", b"\xff\xfe", b"NOOP\x1b"):
        with pytest.raises(SyntaxProblem):
            parse_command(line)
    assert clean_helo("evil (x)\r\nReceived: y") == "evil"
    assert clean_helo("(((") == "unknown"


def test_trace_fields_are_fixed_per_transaction() -> None:
    envelope = Envelope(parse_address("s@example.org"), MailArguments("<s@example.org>"))
    peer = Peer("client.example", "127.0.0.1", True, False)
    when = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    text = trace_fields(
        envelope, protocol=Protocol.LMTP, peer=peer, hostname="mx", session_id="S1", now=when
    )
    assert text == (
        b"Return-Path: <s@example.org>\r\n"
        b"Received: from client.example ([127.0.0.1])\r\n"
        b"\tby mx (msgstore) with LMTP id S1;\r\n"
        b"\tMon, 02 Mar 2026 10:00:00 +0000\r\n"
    )
    null = Envelope(None, MailArguments("<>"))
    smtp = trace_fields(null, protocol=Protocol.SMTP, peer=peer, hostname="mx", session_id="S")
    assert smtp.startswith(b"Return-Path: <>\r\n")
    assert b"with ESMTP id" in smtp


def _split(data: bytes, steps: list[int]) -> list[bytes]:
    pieces: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = steps[len(pieces) % len(steps)]
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces


def _run(pieces: list[bytes], *, exact: bool) -> tuple[bytes, bytes, DotDecoder]:
    decoder = DotDecoder()
    out = rest = b""
    for piece in pieces:
        if decoder.done:
            rest += piece
            continue
        payload, after = decoder._feed_exact(piece) if exact else decoder.feed(piece)
        out += payload
        rest += after
    return out, rest, decoder


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b".", b"\0", b"a", b"\r\n", b".\r\n"]), max_size=40),
    st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40),
)
def test_bulk_decoding_matches_the_exact_state_machine(
    parts: list[bytes], steps: list[int]
) -> None:
    """The bulk path gives the octets, end, rest and first problem of the octet-exact state
    machine fed the same chunks (smuggling variants, bare CR/LF, NUL, stuffed dots), and
    neither depends on the split for the octets, the end or whether there is a problem."""
    data = b"".join(parts) + b"\r\n.\r\nNOOP\r\n"
    pieces = _split(data, steps)
    got_out, got_rest, got = _run(pieces, exact=False)
    want_out, want_rest, want = _run(pieces, exact=True)
    assert (got_out, got_rest) == (want_out, want_rest)
    assert (got.done, got.problem, got.octets) == (True, want.problem, want.octets)
    whole_out, whole_rest, whole = _run([data], exact=False)
    assert (whole_out, whole_rest) == (got_out, got_rest)
    assert (whole.problem is None) == (got.problem is None)


def test_bulk_decoding_of_a_large_clean_message() -> None:
    body = b"".join(
        b"line %d\r\n" % i + (b"..dot\r\n" if i % 7 == 0 else b"") for i in range(3000)
    )
    wire = body + b".\r\nQUIT\r\n"
    for step in (None, 1000, 4096, 65536):
        out, rest, decoder = decode(wire, step=step)
        assert out == body.replace(b"\r\n..", b"\r\n.")
        assert rest == b"QUIT\r\n"
        assert decoder.problem is None
        assert decoder.octets == len(out)
