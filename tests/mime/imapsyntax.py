"""A small, independent reader for the IMAP responses msgstore.mime precomputes (test side).

It reads the wire bytes into Python values (``None`` for NIL, ``bytes`` for quoted strings and
literals, ``int`` for numbers, ``list`` for parenthesised lists) and checks them against the
RFC 9051 §9 grammar for ``body`` and ``envelope``. Written from the RFC for the tests, so a
grammar slip in the code under test cannot hide behind the same slip here.
"""

from __future__ import annotations

from typing import TypeAlias

Value: TypeAlias = bytes | int | list["Value"] | None


class SyntaxProblemError(Exception):
    """The bytes are not a well-formed response item."""


def read(data: bytes) -> Value:
    """Read exactly one value from ``data`` (iterative; any nesting depth).

    Separators are checked too: exactly one SP between list items, none after "(" or
    before ")"; lists may follow each other directly (``1*body`` in body-type-mpart).
    """
    stack: list[list[Value]] = [[]]
    pos = 0
    size = len(data)
    expect_value = True
    just_opened = False
    after_close = False
    while pos < size:
        ch = data[pos : pos + 1]
        if ch in (b" ", b")"):
            if ch == b" " and (expect_value or len(stack) < 2):
                raise SyntaxProblemError(f"misplaced space at {pos}")
            if ch == b")" and (len(stack) < 2 or (expect_value and not just_opened)):
                raise SyntaxProblemError(f"misplaced ) at {pos}")
            if ch == b" ":
                expect_value = True
            else:
                done = stack.pop()
                stack[-1].append(done)
                expect_value = False
            after_close = ch == b")"
            just_opened = False
            pos += 1
            continue
        if not expect_value and not (after_close and ch == b"("):
            raise SyntaxProblemError(f"missing space before {pos}")
        after_close = False
        just_opened = False
        expect_value = False
        if ch == b"(":
            stack.append([])
            expect_value = just_opened = True
            pos += 1
        elif ch == b'"':
            out = bytearray()
            pos += 1
            while True:
                if pos >= size:
                    raise SyntaxProblemError("unterminated quoted string")
                c = data[pos]
                if c == 0x5C:
                    nxt = data[pos + 1 : pos + 2]
                    if nxt not in (b'"', b"\\"):
                        raise SyntaxProblemError(f"bad escape at {pos}")
                    out += nxt
                    pos += 2
                elif c == 0x22:
                    pos += 1
                    break
                elif c in (0, 10, 13) or c >= 0x80:
                    raise SyntaxProblemError(f"octet {c:#x} not allowed in a quoted string")
                else:
                    out.append(c)
                    pos += 1
            stack[-1].append(bytes(out))
        elif ch == b"{":
            close = data.find(b"}\r\n", pos)
            if close == -1:
                raise SyntaxProblemError("bad literal header")
            length = int(data[pos + 1 : close])
            start = close + 3
            literal = data[start : start + length]
            if len(literal) != length or b"\x00" in literal:
                raise SyntaxProblemError("bad literal")
            stack[-1].append(literal)
            pos = start + length
        else:
            end = pos
            while end < size and data[end : end + 1] not in (b" ", b"(", b")"):
                end += 1
            atom = data[pos:end]
            if atom == b"NIL":
                stack[-1].append(None)
            elif atom.isdigit():
                stack[-1].append(int(atom))
            else:
                raise SyntaxProblemError(f"unexpected atom {atom[:20]!r} at {pos}")
            pos = end
    if len(stack) != 1 or len(stack[0]) != 1:
        raise SyntaxProblemError("not exactly one value")
    return stack[0][0]


def _nstring(v: Value) -> None:
    if v is not None and not isinstance(v, bytes):
        raise SyntaxProblemError(f"nstring expected, got {v!r}")


def _string(v: Value) -> None:
    if not isinstance(v, bytes):
        raise SyntaxProblemError(f"string expected, got {v!r}")


def _number(v: Value) -> None:
    if not isinstance(v, int):
        raise SyntaxProblemError(f"number expected, got {v!r}")


def _params(v: Value) -> None:
    if v is None:
        return
    if not isinstance(v, list) or not v or len(v) % 2:
        raise SyntaxProblemError(f"body-fld-param expected, got {v!r}")
    for item in v:
        _string(item)


def _dsp(v: Value) -> None:
    if v is None:
        return
    if not isinstance(v, list) or len(v) != 2:
        raise SyntaxProblemError(f"body-fld-dsp expected, got {v!r}")
    _string(v[0])
    _params(v[1])


def _lang(v: Value) -> None:
    if isinstance(v, list):
        if not v:
            raise SyntaxProblemError("empty body-fld-lang list")
        for item in v:
            _string(item)
    else:
        _nstring(v)


def check_envelope(v: Value) -> None:
    """RFC 9051 envelope: 10 fields, six address lists."""
    if not isinstance(v, list) or len(v) != 10:
        raise SyntaxProblemError(f"envelope expected, got {v!r}")
    for i in (0, 1, 8, 9):
        _nstring(v[i])
    for field in v[2:8]:
        if field is None:
            continue
        if not isinstance(field, list) or not field:
            raise SyntaxProblemError(f"address list expected, got {field!r}")
        for address in field:
            if not isinstance(address, list) or len(address) != 4:
                raise SyntaxProblemError(f"address expected, got {address!r}")
            for part in address:
                _nstring(part)


def check_body(v: Value, *, extensible: bool) -> None:
    """RFC 9051 ``body`` (BODYSTRUCTURE when extensible, else BODY). Iterative."""
    todo: list[Value] = [v]
    while todo:
        item = todo.pop()
        if not isinstance(item, list) or not item:
            raise SyntaxProblemError(f"body expected, got {item!r}")
        if isinstance(item[0], list):
            i = 0
            while i < len(item) and isinstance(item[i], list):
                todo.append(item[i])
                i += 1
            if i >= len(item):
                raise SyntaxProblemError("multipart without subtype")
            _string(item[i])
            rest = item[i + 1 :]
            if extensible:
                if len(rest) != 4:
                    raise SyntaxProblemError(f"body-ext-mpart expected, got {rest!r}")
                _params(rest[0])
                _dsp(rest[1])
                _lang(rest[2])
                _nstring(rest[3])
            elif rest:
                raise SyntaxProblemError(f"BODY multipart with extension data {rest!r}")
            continue
        if len(item) < 7:
            raise SyntaxProblemError(f"body-type-1part too short: {item!r}")
        media_type, subtype = item[0], item[1]
        _string(media_type)
        _string(subtype)
        _params(item[2])
        _nstring(item[3])
        _nstring(item[4])
        _string(item[5])
        _number(item[6])
        assert isinstance(media_type, bytes)
        assert isinstance(subtype, bytes)
        rest = item[7:]
        kind = (media_type.lower(), subtype.lower())
        if kind in ((b"message", b"rfc822"), (b"message", b"global")):
            if len(rest) < 3:
                raise SyntaxProblemError("body-type-msg too short")
            check_envelope(rest[0])
            todo.append(rest[1])
            _number(rest[2])
            rest = rest[3:]
        elif kind[0] == b"text":
            if not rest:
                raise SyntaxProblemError("body-type-text without lines")
            _number(rest[0])
            rest = rest[1:]
        if extensible:
            if len(rest) != 4:
                raise SyntaxProblemError(f"body-ext-1part expected, got {rest!r}")
            _nstring(rest[0])
            _dsp(rest[1])
            _lang(rest[2])
            _nstring(rest[3])
        elif rest:
            raise SyntaxProblemError(f"BODY with extension data {rest!r}")
