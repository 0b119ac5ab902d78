"""SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB NAMESPACE STATUS.

RFC 9051 §6.3 with CONDSTORE/QRESYNC on SELECT (RFC 7162), CREATE-SPECIAL-USE (RFC 6154),
LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), CHILDREN (RFC 3348), NAMESPACE (RFC 2342),
STATUS=SIZE (RFC 8438) and APPENDLIMIT (RFC 7889). Names are as the user sees them; the
namespaces and the rights live in ``storage.access``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.ids import ModSeq
from msgstore.core.names import DELIMITER, MailboxName, match_pattern, parents
from msgstore.imap.selected import SelectedMailbox, ranges_of
from msgstore.imap.syntax.args import (
    Command,
    CreateArgs,
    ListArgs,
    ListSelect,
    LsubArgs,
    MailboxArgs,
    RenameArgs,
    SelectArgs,
    StatusArgs,
    StatusItem,
)
from msgstore.imap.syntax.parse_mailboxes import SPECIAL_USES
from msgstore.imap.syntax.responses import (
    Code,
    Exists,
    ListData,
    ResponseCode,
    Status,
    StatusData,
    StatusResponse,
    Vanished,
    highestmodseq,
    quoted,
    uidnext,
    uidvalidity,
    unseen,
)
from msgstore.storage.access import OTHER_USERS, PUBLIC, OpenedMailbox

if TYPE_CHECKING:
    from msgstore.imap.session import Session

#: Rights that make a SELECTed mailbox read-write (any one of them).
WRITE_RIGHTS: Final = "swtie"


def ok(text: str, code: ResponseCode | None = None) -> StatusResponse:
    return StatusResponse(Status.OK, text, code)


def append_limit(s: Session) -> int:
    """The APPENDLIMIT (RFC 7889): the smaller of the store's and the framer's limit."""
    return min(s.ctx.config.store.max_message_size, s.conn.framer.limits.max_append_literal_octets)


async def deselect(s: Session, *, report_closed: bool) -> None:
    from msgstore.imap.session import State

    if s.selected is not None:
        if report_closed and s.qresync:
            s.out.send(s.selected.closed_code())
        await s.selected.close()
        s.selected = None
        s.state = State.AUTHENTICATED


async def select(s: Session, cmd: Command) -> StatusResponse:
    from msgstore.imap.session import State

    args = cmd.args
    assert isinstance(args, SelectArgs)
    await deselect(s, report_closed=True)
    if args.qresync is not None and not s.qresync:
        return StatusResponse(Status.BAD, "QRESYNC is not enabled")
    if args.condstore:
        s.enable(b"CONDSTORE")
    opened = await s.access.open(args.mailbox, "r")
    readonly = cmd.name == b"EXAMINE" or not any(r in opened.rights for r in WRITE_RIGHTS)
    backend = s.ctx.backend
    snap = await backend.snapshot(opened.owner, opened.id, claim_recent=not readonly)
    sel = SelectedMailbox(opened, snap, readonly=readonly, backend=backend)
    sel.flag_responses(s)
    s.out.send(Exists(sel.exists))
    if not s.rev2:
        s.out.write(b"* %d RECENT\r\n" % len(sel.recent))
        if snap.first_unseen is not None:
            seq = sel.seq_for(snap.first_unseen)
            if seq is not None:
                s.out.send(ok(f"First unseen is {seq}", unseen(seq)))
    s.out.send(ok("UIDs valid", uidvalidity(snap.uidvalidity)))
    s.out.send(ok("Predicted next UID", uidnext(snap.uidnext)))
    if s.condstore:
        s.out.send(ok("Highest", highestmodseq(snap.highestmodseq)))
    qr = args.qresync
    if qr is not None and qr.uidvalidity == snap.uidvalidity and qr.modseq < snap.highestmodseq:
        changes = await backend.changes_since(opened.owner, opened.id, ModSeq(qr.modseq))
        known = set(sel.uids)
        gone = [u for u in changes.expunged if u not in known]
        if qr.known_uids is not None:
            wanted = qr.known_uids.resolve(snap.uidnext)
            gone = [u for u in gone if any(lo <= u <= hi for lo, hi in wanted)]
        if gone:
            s.out.send(Vanished(ranges_of(gone), earlier=True))
        for meta in changes.changed:
            seq = sel.seq_for(meta.uid)
            if seq is not None:
                s.out.write(sel.flags_fetch(s, seq, meta.uid, meta.flags, meta.modseq))
    s.selected = sel
    s.state = State.SELECTED
    code = Code.READ_ONLY if readonly else Code.READ_WRITE
    return ok(f"{cmd.name.decode()} completed", ResponseCode(code))


async def create(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, CreateArgs)
    if len(args.special_use) > 1:
        return StatusResponse(
            Status.NO, "Only one special-use attribute per mailbox", ResponseCode(Code.USEATTR)
        )
    use = args.special_use[0] if args.special_use else ""
    if use and (use.lower() not in SPECIAL_USES or use == "\\Important"):
        return StatusResponse(
            Status.NO, "Unsupported special-use attribute", ResponseCode(Code.USEATTR)
        )
    await s.access.create(args.mailbox, special_use=use)
    return ok("CREATE completed")


async def delete(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, MailboxArgs)
    await s.access.delete(args.mailbox)
    return ok("DELETE completed")


async def rename(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, RenameArgs)
    if args.new == args.old or args.new.startswith(args.old + DELIMITER):
        raise StoreError(ErrorKind.NOT_POSSIBLE, "Cannot rename a mailbox under itself")
    await s.access.rename(args.old, args.new)
    return ok("RENAME completed")


async def subscribe(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, MailboxArgs)
    await s.access.subscribe(args.mailbox, cmd.name == b"SUBSCRIBE")
    return ok(f"{cmd.name.decode()} completed")


async def namespace(s: Session, cmd: Command) -> StatusResponse:
    def ns(prefix: str) -> bytes:
        return b"((" + quoted(prefix.encode()) + b' "/"))'

    s.out.write(b"* NAMESPACE " + ns("") + b" " + ns(OTHER_USERS) + b" " + ns(PUBLIC) + b"\r\n")
    return ok("NAMESPACE completed")


async def _status_items(
    s: Session, opened: OpenedMailbox, items: tuple[StatusItem, ...]
) -> tuple[tuple[bytes, int], ...]:
    if StatusItem.HIGHESTMODSEQ in items:
        s.enable(b"CONDSTORE")
    st = await s.access.status(opened)
    values = {
        StatusItem.MESSAGES: st.messages,
        StatusItem.RECENT: st.recent,
        StatusItem.UIDNEXT: st.uidnext,
        StatusItem.UIDVALIDITY: st.uidvalidity,
        StatusItem.UNSEEN: st.unseen,
        StatusItem.DELETED: st.deleted,
        StatusItem.SIZE: st.size_octets,
        StatusItem.HIGHESTMODSEQ: st.highestmodseq,
        StatusItem.APPENDLIMIT: append_limit(s),
    }
    return tuple((item.value, values[item]) for item in items)


async def status(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, StatusArgs)
    opened = await s.access.open(args.mailbox, "r")
    s.out.send(StatusData(args.mailbox, await _status_items(s, opened, args.items)))
    return ok("STATUS completed")


class _Entry:
    __slots__ = ("children", "opened", "subscribed", "subscribed_child")

    def __init__(self, opened: OpenedMailbox | None) -> None:
        self.opened = opened
        self.children = False
        self.subscribed = False
        self.subscribed_child = False


def _join(reference: str, pattern: str) -> str:
    if not reference or pattern.startswith(DELIMITER):
        return pattern
    return reference + pattern


async def _tree(s: Session, subs: set[MailboxName]) -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for v in await s.access.list_visible():
        entries[v.name] = _Entry(v.opened)
    for name in list(entries):
        for parent in parents(MailboxName(name)):
            entries.setdefault(parent, _Entry(None)).children = True
    for name in subs:
        entry = entries.get(name)
        if entry is not None:
            entry.subscribed = True
        for parent in parents(MailboxName(name)):
            p = entries.get(parent)
            if p is not None:
                p.subscribed_child = True
    return entries


async def list_(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, ListArgs)
    if args.patterns == ("",) and not args.select:
        root = args.reference.split(DELIMITER, 1)[0] + DELIMITER if args.reference else ""
        s.out.send(ListData(MailboxName(root), (b"\\Noselect",)))
        return ok("LIST completed")
    want_subs = ListSelect.SUBSCRIBED in args.select or args.returns.subscribed
    subs = set(await s.access.subscriptions()) if want_subs else set()
    entries = await _tree(s, subs)
    patterns = [_join(args.reference, p) for p in args.patterns]
    only_subscribed = ListSelect.SUBSCRIBED in args.select
    recursive = ListSelect.RECURSIVEMATCH in args.select
    only_special = ListSelect.SPECIAL_USE in args.select
    names = set(entries)
    if only_subscribed:
        names |= subs
    for name in sorted(names):
        if not any(match_pattern(p, name) for p in patterns):
            continue
        entry = entries.get(name)
        if entry is None:
            entry = _Entry(None)
            entry.subscribed = True
        childinfo = False
        if only_subscribed and not entry.subscribed:
            if not (recursive and entry.subscribed_child):
                continue
            childinfo = True
        special = entry.opened.info.special_use if entry.opened is not None else frozenset()
        if only_special and not special:
            continue
        attrs: list[bytes] = []
        if entry.opened is None:
            attrs.append(b"\\NonExistent" if name not in entries else b"\\Noselect")
        attrs.append(b"\\HasChildren" if entry.children else b"\\HasNoChildren")
        if want_subs and entry.subscribed:
            attrs.append(b"\\Subscribed")
        attrs.extend(u.encode() for u in sorted(special))
        s.out.send(ListData(MailboxName(name), tuple(attrs), child_info_subscribed=childinfo))
        if args.returns.status is not None and entry.opened is not None:
            try:
                opened = entry.opened
                if "r" in opened.rights:
                    items = await _status_items(s, opened, args.returns.status)
                    s.out.send(StatusData(MailboxName(name), items))
            except StoreError:
                pass
    return ok("LIST completed")


async def lsub(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, LsubArgs)
    subs = set(await s.access.subscriptions())
    entries = await _tree(s, subs)
    pattern = _join(args.reference, args.pattern)
    for name in sorted(subs):
        if not match_pattern(pattern, name):
            continue
        entry = entries.get(name)
        attrs = () if entry is not None and entry.opened is not None else (b"\\Noselect",)
        s.out.send(ListData(MailboxName(name), attrs, lsub=True))
    return ok("LSUB completed")
