"""Parsers for the mailbox commands of the authenticated state.

SELECT EXAMINE (CONDSTORE, QRESYNC: RFC 7162 §3.1.8, §3.2.5), CREATE (USE: RFC 6154 §3),
DELETE RENAME SUBSCRIBE UNSUBSCRIBE, LIST (LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
LIST-STATUS RFC 5819), LSUB and STATUS (RFC 9051 §6.3).
"""

from __future__ import annotations

from typing import Final

from msgstore.imap.syntax.args import (
    CreateArgs,
    ListArgs,
    ListReturn,
    ListSelect,
    LsubArgs,
    MailboxArgs,
    QresyncParams,
    RenameArgs,
    SelectArgs,
    StatusArgs,
    StatusItem,
)
from msgstore.imap.syntax.errors import BadCommandError
from msgstore.imap.syntax.grammar import (
    MAX_NUMBER64,
    STAR,
    ParseContext,
    SeqSet,
    TokenReader,
    list_mailbox,
    mailbox,
    number,
    reference_name,
    sequence_set,
)
from msgstore.imap.syntax.tokens import AtomToken, ListToken, Token

#: RFC 6154 §2 special-use attributes, plus \Important (RFC 8457), in canonical spelling.
SPECIAL_USES: Final = {
    u.lower(): u
    for u in (
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
        "\\Important",
    )
}
_STATUS_ITEMS: Final = {i.value: i for i in StatusItem}
_LIST_SELECT: Final = {s.value: s for s in ListSelect}


def parse_mailbox_only(reader: TokenReader, ctx: ParseContext) -> MailboxArgs:
    """DELETE SUBSCRIBE UNSUBSCRIBE GETACL MYRIGHTS GETQUOTAROOT: ``SP mailbox``."""
    name = mailbox(reader.take("mailbox name"), ctx)
    reader.end()
    return MailboxArgs(name)


def parse_select(reader: TokenReader, ctx: ParseContext) -> SelectArgs:
    """``SELECT SP mailbox [SP "(" select-param *(SP select-param) ")"]`` (also EXAMINE)."""
    name = mailbox(reader.take("mailbox name"), ctx)
    if reader.at_end():
        return SelectArgs(name)
    params = reader.take("select parameters")
    reader.end()
    if not isinstance(params, ListToken) or not params.items:
        raise BadCommandError("Invalid select parameters")
    condstore = False
    qresync: QresyncParams | None = None
    items = params.items
    i = 0
    while i < len(items):
        tok = items[i]
        i += 1
        key = tok.value.upper() if isinstance(tok, AtomToken) else b""
        if key == b"CONDSTORE" and not condstore:
            condstore = True
        elif key == b"QRESYNC" and qresync is None:
            if i >= len(items):
                raise BadCommandError("Missing QRESYNC parameters")
            qresync = _qresync(items[i])
            i += 1
        else:
            raise BadCommandError("Unknown or repeated select parameter")
    return SelectArgs(name, condstore, qresync)


def _known_set(tok: Token, what: str) -> SeqSet:
    seqs = sequence_set(tok, allow_saved=False)
    if any(a == STAR or b == STAR for a, b in seqs.ranges):
        raise BadCommandError(f"Invalid {what}: '*' is not allowed")
    return seqs


def _qresync(tok: Token) -> QresyncParams:
    """``"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"``."""
    if not isinstance(tok, ListToken) or len(tok.items) < 2:
        raise BadCommandError("Invalid QRESYNC parameters")
    items = tok.items
    uidvalidity = number(items[0], "UIDVALIDITY", minimum=1)
    modseq = number(items[1], "mod-sequence", maximum=MAX_NUMBER64)
    known: SeqSet | None = None
    match: tuple[SeqSet, SeqSet] | None = None
    rest = list(items[2:])
    if rest and isinstance(rest[0], AtomToken):
        known = _known_set(rest.pop(0), "known UIDs")
    if rest and isinstance(rest[0], ListToken):
        pair = rest.pop(0)
        assert isinstance(pair, ListToken)
        if len(pair.items) != 2:
            raise BadCommandError("Invalid QRESYNC sequence match data")
        match = (
            _known_set(pair.items[0], "known sequence set"),
            _known_set(pair.items[1], "known UID set"),
        )
    if rest:
        raise BadCommandError("Invalid QRESYNC parameters")
    return QresyncParams(uidvalidity, modseq, known, match)


def parse_create(reader: TokenReader, ctx: ParseContext) -> CreateArgs:
    """``CREATE SP mailbox [SP "(" "USE" SP "(" use-attr *(SP use-attr) ")" ")"]``."""
    name = mailbox(reader.take("mailbox name"), ctx, strip_delimiter=True)
    if reader.at_end():
        return CreateArgs(name)
    params = reader.take("create parameters")
    reader.end()
    if not isinstance(params, ListToken) or len(params.items) != 2:
        raise BadCommandError("Invalid create parameters")
    key, uses = params.items
    if not isinstance(key, AtomToken) or key.value.upper() != b"USE":
        raise BadCommandError("Unknown create parameter")
    if not isinstance(uses, ListToken) or not uses.items:
        raise BadCommandError("Invalid USE attribute list")
    out: list[str] = []
    for tok in uses.items:
        if not isinstance(tok, AtomToken) or not tok.value.startswith(b"\\"):
            raise BadCommandError("Invalid special-use attribute")
        text = tok.value.decode("ascii")
        out.append(SPECIAL_USES.get(text.lower(), text))
    return CreateArgs(name, tuple(dict.fromkeys(out)))


def parse_rename(reader: TokenReader, ctx: ParseContext) -> RenameArgs:
    """``RENAME SP mailbox SP mailbox``."""
    old = mailbox(reader.take("mailbox name"), ctx)
    new = mailbox(reader.take("new mailbox name"), ctx, "new mailbox name")
    reader.end()
    return RenameArgs(old, new)


def status_items(tok: Token) -> tuple[StatusItem, ...]:
    """``"(" status-att *(SP status-att) ")"``, repeats dropped, order kept."""
    if not isinstance(tok, ListToken) or not tok.items:
        raise BadCommandError("Invalid status item list")
    out: dict[StatusItem, None] = {}
    for item in tok.items:
        found = _STATUS_ITEMS.get(item.value.upper()) if isinstance(item, AtomToken) else None
        if found is None:
            raise BadCommandError("Unknown status item")
        out[found] = None
    return tuple(out)


def parse_status(reader: TokenReader, ctx: ParseContext) -> StatusArgs:
    """``STATUS SP mailbox SP "(" status-att *(SP status-att) ")"``."""
    name = mailbox(reader.take("mailbox name"), ctx)
    items = status_items(reader.take("status item list"))
    reader.end()
    return StatusArgs(name, items)


def parse_list(reader: TokenReader, ctx: ParseContext) -> ListArgs:
    """``LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]``."""
    select: set[ListSelect] = set()
    first = reader.peek()
    if isinstance(first, ListToken):
        reader.skip()
        for tok in first.items:
            opt = _LIST_SELECT.get(tok.value.upper()) if isinstance(tok, AtomToken) else None
            if opt is None:
                raise BadCommandError("Unknown LIST selection option")
            select.add(opt)
        if select == {ListSelect.RECURSIVEMATCH}:
            raise BadCommandError("RECURSIVEMATCH needs another selection option")
    reference = reference_name(reader.take("reference name"), ctx)
    pat = reader.take("mailbox pattern")
    if isinstance(pat, ListToken):
        if not pat.items:
            raise BadCommandError("Empty mailbox pattern list")
        patterns = tuple(list_mailbox(p, ctx) for p in pat.items)
    else:
        patterns = (list_mailbox(pat, ctx),)
    returns = ListReturn()
    if not reader.at_end():
        if reader.peek_atom() != b"RETURN":
            raise BadCommandError("Too many arguments")
        reader.skip()
        returns = _list_return(reader.take("LIST return options"))
    reader.end()
    return ListArgs(reference, patterns, frozenset(select), returns)


def _list_return(tok: Token) -> ListReturn:
    if not isinstance(tok, ListToken):
        raise BadCommandError("Invalid LIST return options")
    subscribed = children = special_use = False
    status: tuple[StatusItem, ...] | None = None
    items = tok.items
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        key = item.value.upper() if isinstance(item, AtomToken) else b""
        if key == b"SUBSCRIBED":
            subscribed = True
        elif key == b"CHILDREN":
            children = True
        elif key == b"SPECIAL-USE":
            special_use = True
        elif key == b"STATUS" and status is None:
            if i >= len(items):
                raise BadCommandError("Missing status item list")
            status = status_items(items[i])
            i += 1
        else:
            raise BadCommandError("Unknown LIST return option")
    return ListReturn(subscribed, children, special_use, status)


def parse_lsub(reader: TokenReader, ctx: ParseContext) -> LsubArgs:
    """``LSUB SP mailbox SP list-mailbox``."""
    reference = reference_name(reader.take("reference name"), ctx)
    pattern = list_mailbox(reader.take("mailbox pattern"), ctx)
    reader.end()
    return LsubArgs(reference, pattern)
