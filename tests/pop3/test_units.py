"""Pure pieces of POP3 and its plumbing: line framing, command parsing, byte-stuffing, the
throttle's arithmetic, SASL message decoding, the error table (STYLE.md §14.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.auth.sasl import ScramSecret, decode_base64, parse_plain
from msgstore.auth.throttle import LoginThrottle, ThrottlePolicy
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.net.linereader import TOO_LONG, LineReader
from msgstore.pop3.errors import error_line, resp_code
from msgstore.pop3.replies import DotStuffer
from msgstore.pop3.syntax import SyntaxProblem, arity, number, parse_line


def frame(reader: LineReader, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (item := reader.next_line()) is not None:
            out.append(item)
    return out


def test_lines_byte_at_a_time_with_crlf_and_bare_lf() -> None:
    assert frame(LineReader(255), b"USER a\r\nPASS b c\nQUIT\r\nNO") == [
        b"USER a",
        b"PASS b c",
        b"QUIT",
    ]


def test_limit_counts_the_terminator_and_skips_the_rest() -> None:
    reader = LineReader(8)
    assert frame(reader, b"123456\r\n") == [b"123456"]
    out = frame(reader, b"1234567\r\nok\r\n")
    assert out == [TOO_LONG, b"ok"]
    assert frame(LineReader(8), b"x" * 100_000 + b"\r\nnext\r\n") == [TOO_LONG, b"next"]


def test_buffer_stays_bounded_without_lf() -> None:
    reader = LineReader(255)
    events = []
    for _ in range(1000):
        reader.feed(b"y" * 1000)
        events.append(reader.next_line())
        assert reader.pending() < 255 + 1000
    assert events.count(TOO_LONG) == 1


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=10), st.data())
def test_any_split_frames_the_same(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    reader = LineReader(255)
    got: list[object] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[a:b])
        while (item := reader.next_line()) is not None:
            got.append(item)
    assert got == lines  # only the CRLF terminator is removed; a CR inside is data


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        (b"stat", b"STAT", ()),
        (b"Retr 1", b"RETR", (b"1",)),
        (b"TOP 1 99999999", b"TOP", (b"1", b"99999999")),
        (b"PASS with spaces  inside", b"PASS", (b"with spaces  inside",)),
        (b"AUTH PLAIN AGEAYg==", b"AUTH", (b"PLAIN AGEAYg==",)),
    ],
)
def test_parse_line(line: bytes, name: bytes, args: tuple[bytes, ...]) -> None:
    cmd = parse_line(line)
    assert (cmd.name, cmd.args) == (name, args)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "Empty command"),
        (b"XY", "Unknown command"),
        (b"RETRIEVE 1", "Unknown command"),
        (b"R3TR 1", "Unknown command"),
        (b"LIST  1", "Arguments must be separated by single spaces"),
        (b"LIST 1 ", "Arguments must be separated by single spaces"),
        (b"USER " + b"u" * 41, "Argument longer than 40 characters"),
        (b"USER a\0b", "NUL octet in command"),
    ],
)
def test_parse_line_errors(line: bytes, reason: str) -> None:
    with pytest.raises(SyntaxProblem, match=reason):
        parse_line(line)


@pytest.mark.parametrize(
    ("arg", "reason"),
    [(b"-1", "Invalid"), (b"1a", "Invalid"), (b"\xd9\xa1", "Invalid"), (b"9" * 11, "too large")],
)
def test_number_errors(arg: bytes, reason: str) -> None:
    with pytest.raises(SyntaxProblem, match=reason):
        number(arg)


def test_arity() -> None:
    assert arity(parse_line(b"LIST"), 0, 1) == ()
    with pytest.raises(SyntaxProblem, match="Missing argument"):
        arity(parse_line(b"TOP 1"), 2)
    with pytest.raises(SyntaxProblem, match="Too many arguments"):
        arity(parse_line(b"DELE 1 2"), 1)


def unstuff(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines[:-2])


@given(
    st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b".\r\n", b"x."]), max_size=30),
    st.data(),
)
def test_dot_stuffing_round_trips_over_any_chunking(
    parts: list[bytes], data: st.DataObject
) -> None:
    text = b"".join(parts)
    if text and not text.endswith(b"\r\n"):
        text += b"\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=4)))
    stuffer = DotStuffer()
    out = b"".join(
        stuffer.stuff(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)
    )
    out += stuffer.end()
    if not text:
        assert out == b".\r\n"
    else:
        assert unstuff(out) == text.removesuffix(b"\r\n")


def test_throttle_delays_double_and_cap() -> None:
    policy = ThrottlePolicy(base_delay_s=2, max_delay_s=15)
    assert [policy.delay_after(n) for n in range(7)] == [0, 2, 4, 8, 15, 15, 15]
    assert policy.delay_after(10_000) == 15


def test_throttle_counts_sources_and_accounts() -> None:
    now = [0.0]
    throttle = LoginThrottle(ThrottlePolicy(1, 8, ipv6_prefix=56), clock=lambda: now[0])
    throttle.failed("Alice", "2001:db8::1", "pw1")
    throttle.failed("bob", "2001:db8:0:ff::2", "pw2")  # same /56
    assert throttle.delay("carol", "2001:db8::7") == 2
    assert throttle.delay("ALICE", "192.0.2.1") == 1
    throttle.succeeded("alice", "192.0.2.1")
    assert throttle.delay("alice", "192.0.2.9") == 0
    now[0] += 3600
    assert throttle.delay("carol", "2001:db8::7") == 0


def test_sasl_decoding() -> None:
    assert decode_base64(b"=") == b""
    with pytest.raises(StoreError, match="Invalid base64"):
        decode_base64(b"AB=C")
    creds = parse_plain(b"\0user\0pass word")
    assert (creds.authzid, creds.authcid, creds.password) == ("", "user", "pass word")
    for bad in (b"user\0pass", b"\0\0pw", b"\0u\0", b"\0u\xff\0pw", b"a\0b\0c\0d"):
        with pytest.raises(StoreError):
            parse_plain(bad)


def test_scram_secret_round_trip_and_verify() -> None:
    secret = ScramSecret.make("pencil", iterations=4096)
    parsed = ScramSecret.parse(secret.format())
    assert parsed == secret
    assert parsed.verify("pencil")
    assert not parsed.verify("Pencil")
    assert ScramSecret.parse("{SCRAM-SHA-256}4096,bad") is None
    assert ScramSecret.parse("{ARGON2ID}$argon2id$...") is None


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_error_kind_has_a_pop3_reply(kind: ErrorKind) -> None:
    line = error_line(StoreError(kind, "Something"))
    code = resp_code(kind)
    assert line == (f"-ERR [{code}] Something\r\n" if code else "-ERR Something\r\n").encode()
