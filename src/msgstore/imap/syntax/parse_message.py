"""Parsers for the selected-state message commands and their UID forms.

FETCH (RFC 9051 §6.4.5; CHANGEDSINCE and VANISHED, RFC 7162 §3.1.4, §3.2.6), STORE (§6.4.6;
UNCHANGEDSINCE, RFC 7162 §3.1.3), COPY and MOVE (§6.4.7-8, RFC 6851) and UID EXPUNGE (§6.4.9).
"""

from __future__ import annotations

from typing import Final

from msgstore.core.flags import FlagOp
from msgstore.imap.syntax.args import CopyArgs, FetchArgs, StoreArgs, UidExpungeArgs
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.fetchatt import fetch_attributes
from msgstore.imap.syntax.grammar import (
    MAX_NUMBER64,
    ParseContext,
    TokenReader,
    flag,
    flag_list,
    mailbox,
    number,
    sequence_set,
)
from msgstore.imap.syntax.tokens import AtomToken, ListToken

_STORE_OPS: Final = {
    b"FLAGS": (FlagOp.REPLACE, False),
    b"FLAGS.SILENT": (FlagOp.REPLACE, True),
    b"+FLAGS": (FlagOp.ADD, False),
    b"+FLAGS.SILENT": (FlagOp.ADD, True),
    b"-FLAGS": (FlagOp.REMOVE, False),
    b"-FLAGS.SILENT": (FlagOp.REMOVE, True),
}


def _fetch(reader: TokenReader, ctx: ParseContext, *, uid: bool) -> FetchArgs:
    seqs = sequence_set(reader.take("sequence set"))
    items = fetch_attributes(reader.take("fetch attributes"))
    changed_since: int | None = None
    vanished = False
    if not reader.at_end():
        mods = reader.take("fetch modifiers")
        if not isinstance(mods, ListToken) or not mods.items:
            raise BadCommandError("Invalid fetch modifiers")
        it = iter(mods.items)
        for tok in it:
            key = tok.value.upper() if isinstance(tok, AtomToken) else b""
            if key == b"CHANGEDSINCE" and changed_since is None:
                value = next(it, None)
                if value is None:
                    raise BadCommandError("Missing mod-sequence after CHANGEDSINCE")
                changed_since = number(value, "mod-sequence", maximum=MAX_NUMBER64)
            elif key == b"VANISHED" and not vanished:
                vanished = True
            else:
                raise BadCommandError("Unknown or repeated fetch modifier")
        if vanished and not uid:
            raise BadCommandError("VANISHED is only allowed in UID FETCH")
        if vanished and changed_since is None:
            raise BadCommandError("VANISHED requires CHANGEDSINCE")
    reader.end()
    return FetchArgs(seqs, items, changed_since, vanished)


def parse_fetch(reader: TokenReader, ctx: ParseContext) -> FetchArgs:
    """``FETCH SP sequence-set SP fetch-atts [SP "(" fetch-modifier *(SP ...) ")"]``."""
    return _fetch(reader, ctx, uid=False)


def parse_uid_fetch(reader: TokenReader, ctx: ParseContext) -> FetchArgs:
    """UID FETCH: as FETCH, and VANISHED is allowed."""
    return _fetch(reader, ctx, uid=True)


def parse_store(reader: TokenReader, ctx: ParseContext) -> StoreArgs:
    """``STORE SP sequence-set [SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")"]
    SP ["+" / "-"] "FLAGS" [".SILENT"] SP (flag-list / (flag *(SP flag)))``."""
    seqs = sequence_set(reader.take("sequence set"))
    unchanged: int | None = None
    tok = reader.take("store item")
    if isinstance(tok, ListToken):
        items = tok.items
        if (
            len(items) != 2
            or not isinstance(items[0], AtomToken)
            or items[0].value.upper() != b"UNCHANGEDSINCE"
        ):
            raise BadCommandError("Invalid store modifiers")
        unchanged = number(items[1], "mod-sequence", maximum=MAX_NUMBER64)
        tok = reader.take("store item")
    op = _STORE_OPS.get(tok.value.upper()) if isinstance(tok, AtomToken) else None
    if op is None:
        raise BadCommandError("Invalid store item")
    first = reader.take("flag list")
    if isinstance(first, ListToken):
        reader.end()
        flags = flag_list(first)
    else:
        flags = frozenset([flag(first), *(flag(t) for t in reader.rest())])
    return StoreArgs(seqs, op[0], flags, op[1], unchanged)


def parse_copy(reader: TokenReader, ctx: ParseContext) -> CopyArgs:
    """``COPY SP sequence-set SP mailbox`` (also MOVE and the UID forms)."""
    seqs = sequence_set(reader.take("sequence set"))
    name = mailbox(reader.take("mailbox name"), ctx)
    reader.end()
    return CopyArgs(seqs, name)


def parse_uid_expunge(reader: TokenReader, ctx: ParseContext) -> UidExpungeArgs:
    """``UID EXPUNGE SP sequence-set``."""
    uids = sequence_set(reader.take("UID set"))
    reader.end()
    return UidExpungeArgs(uids)
