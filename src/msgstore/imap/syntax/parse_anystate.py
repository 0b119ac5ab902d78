"""Parsers for commands valid in any state or before authentication.

CAPABILITY NOOP LOGOUT STARTTLS (no arguments), ID (RFC 2971), ENABLE (RFC 5161), COMPRESS
(RFC 4978), AUTHENTICATE with SASL-IR (RFC 4959) and LOGIN; also the SASL continuation lines
that follow AUTHENTICATE (:func:`parse_sasl_response`).
"""

from __future__ import annotations

import binascii
from typing import Final

from msgstore.imap.syntax.args import (
    AuthenticateArgs,
    CompressArgs,
    EnableArgs,
    IdArgs,
    LoginArgs,
    NoArgs,
)
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import (
    ParseContext,
    TokenReader,
    astring,
    atom,
    nstring,
    string,
    utf8_text,
)
from msgstore.imap.syntax.tokens import AtomToken, ListToken
from msgstore.imap.syntax.unit import CommandUnit

#: RFC 2971 §3.3: at most 30 pairs, field names up to 30 octets, values up to 1024.
ID_MAX_PAIRS: Final = 30
ID_MAX_FIELD_OCTETS: Final = 30
ID_MAX_VALUE_OCTETS: Final = 1024


def parse_no_args(reader: TokenReader, ctx: ParseContext) -> NoArgs:
    """Commands without arguments: anything after the name is ``Too many arguments``."""
    reader.end()
    return NoArgs()


def _base64(data: bytes, what: str) -> bytes:
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise BadCommandError(f"Invalid base64 in {what}") from None


def parse_authenticate(reader: TokenReader, ctx: ParseContext) -> AuthenticateArgs:
    """``AUTHENTICATE SP auth-type [SP (base64 / "=")]``."""
    mechanism = atom(reader.take("authentication mechanism"), "authentication mechanism")
    initial: bytes | None = None
    if not reader.at_end():
        tok = reader.take("initial response")
        if not isinstance(tok, AtomToken):
            raise BadCommandError("Invalid initial response")
        initial = b"" if tok.value == b"=" else _base64(tok.value, "initial response")
    reader.end()
    return AuthenticateArgs(mechanism.decode("ascii"), initial)


def parse_sasl_response(unit: CommandUnit) -> bytes | None:
    """A client line during AUTHENTICATE: decoded octets, or None if the client cancelled
    with ``*`` (RFC 9051 §6.2.2: the server then replies BAD)."""
    if len(unit.lines) != 1:
        raise BadCommandError("Invalid SASL response")
    line = unit.lines[0]
    if line == b"*":
        return None
    return _base64(line, "SASL response")


def parse_login(reader: TokenReader, ctx: ParseContext) -> LoginArgs:
    """``LOGIN SP userid SP password``."""
    user = astring(reader.take("user name"), "user name")
    password = astring(reader.take("password"), "password")
    reader.end()
    return LoginArgs(utf8_text(user, "user name"), password)


def parse_enable(reader: TokenReader, ctx: ParseContext) -> EnableArgs:
    """``ENABLE 1*(SP capability)``."""
    caps = [atom(reader.take("capability"), "capability")]
    while not reader.at_end():
        caps.append(atom(reader.take("capability"), "capability"))
    return EnableArgs(tuple(caps))


def parse_compress(reader: TokenReader, ctx: ParseContext) -> CompressArgs:
    """``COMPRESS SP algorithm``."""
    mech = atom(reader.take("compression mechanism"), "compression mechanism")
    reader.end()
    return CompressArgs(mech.decode("ascii"))


def parse_id(reader: TokenReader, ctx: ParseContext) -> IdArgs:
    """``ID SP ("(" string SP nstring *(SP string SP nstring) ")" / NIL)`` (RFC 2971)."""
    tok = reader.take("ID parameter list")
    reader.end()
    if isinstance(tok, AtomToken) and tok.value.upper() == b"NIL":
        return IdArgs(None)
    if not isinstance(tok, ListToken):
        raise BadCommandError("Invalid ID parameter list")
    items = tok.items
    if len(items) % 2:
        raise BadCommandError("ID parameter list must hold field/value pairs")
    if len(items) > 2 * ID_MAX_PAIRS:
        raise BadCommandError("Too many ID fields")
    pairs: list[tuple[str, str | None]] = []
    for i in range(0, len(items), 2):
        field = string(items[i], "ID field name")
        value = nstring(items[i + 1], "ID field value")
        if len(field) > ID_MAX_FIELD_OCTETS:
            raise BadCommandError("ID field name too long")
        if value is not None and len(value) > ID_MAX_VALUE_OCTETS:
            raise BadCommandError("ID field value too long")
        pairs.append(
            (
                utf8_text(field, "ID field name"),
                None if value is None else utf8_text(value, "ID field value"),
            )
        )
    return IdArgs(tuple(pairs))
