"""Parsers for ACL (RFC 4314 §3) and QUOTA (RFC 9208 §4) commands.

SETACL DELETEACL GETACL LISTRIGHTS MYRIGHTS; GETQUOTA GETQUOTAROOT SETQUOTA. GETACL, MYRIGHTS
and GETQUOTAROOT take only a mailbox (``parse_mailboxes.parse_mailbox_only``).
"""

from __future__ import annotations

import re
from typing import Final

from msgstore.core.acl import Rights, validate_identifier
from msgstore.core.errors import StoreError
from msgstore.imap.syntax.args import AclIdentifierArgs, GetQuotaArgs, SetAclArgs, SetQuotaArgs
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import (
    MAX_NUMBER64,
    ParseContext,
    TokenReader,
    astring,
    mailbox,
    number,
    utf8_text,
)
from msgstore.imap.syntax.tokens import AtomToken, ListToken, Token

_RESOURCE: Final = re.compile(rb"[A-Za-z0-9-]{1,64}\Z")


def _identifier(tok: Token) -> str:
    text = utf8_text(astring(tok, "identifier"), "identifier")
    try:
        return validate_identifier(text)
    except StoreError as e:
        raise BadCommandError(e.public) from None


def parse_setacl(reader: TokenReader, ctx: ParseContext) -> SetAclArgs:
    """``SETACL SP mailbox SP identifier SP mod-rights``; an unknown right is BAD
    (RFC 4314 §3.1 forbids ignoring it)."""
    name = mailbox(reader.take("mailbox name"), ctx)
    ident = _identifier(reader.take("identifier"))
    rights = utf8_text(astring(reader.take("access rights"), "access rights"), "access rights")
    reader.end()
    letters = rights[1:] if rights[:1] in ("+", "-") else rights
    try:
        Rights.parse(letters)
    except StoreError as e:
        raise BadCommandError(e.public) from None
    return SetAclArgs(name, ident, rights)


def parse_acl_identifier(reader: TokenReader, ctx: ParseContext) -> AclIdentifierArgs:
    """``DELETEACL SP mailbox SP identifier`` and ``LISTRIGHTS SP mailbox SP identifier``."""
    name = mailbox(reader.take("mailbox name"), ctx)
    ident = _identifier(reader.take("identifier"))
    reader.end()
    return AclIdentifierArgs(name, ident)


def _quota_root(tok: Token) -> str:
    return utf8_text(astring(tok, "quota root"), "quota root")


def parse_getquota(reader: TokenReader, ctx: ParseContext) -> GetQuotaArgs:
    """``GETQUOTA SP quota-root``."""
    root = _quota_root(reader.take("quota root"))
    reader.end()
    return GetQuotaArgs(root)


def parse_setquota(reader: TokenReader, ctx: ParseContext) -> SetQuotaArgs:
    """``SETQUOTA SP quota-root SP "(" [resource-name SP resource-limit *(SP ...)] ")"``."""
    root = _quota_root(reader.take("quota root"))
    tok = reader.take("resource limit list")
    reader.end()
    if not isinstance(tok, ListToken) or len(tok.items) % 2:
        raise BadCommandError("Invalid resource limit list")
    limits: dict[str, int] = {}
    for i in range(0, len(tok.items), 2):
        res = tok.items[i]
        if not isinstance(res, AtomToken) or _RESOURCE.match(res.value) is None:
            raise BadCommandError("Invalid resource name")
        name = res.value.upper().decode("ascii")
        if name in limits:
            raise BadCommandError("Resource given twice")
        limits[name] = number(tok.items[i + 1], "resource limit", maximum=MAX_NUMBER64)
    return SetQuotaArgs(root, tuple(limits.items()))
