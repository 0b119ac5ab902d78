"""STORE and UID STORE (RFC 9051 §6.4.6, RFC 7162 §3.1.3 UNCHANGEDSINCE).

``storage.access`` drops the flags the user has no right to change (RFC 4314 §4). Changes
this command reports itself are marked in the selected state so that the sync after the
command does not report them twice; with ``.SILENT`` they are not reported at all (other
sessions' changes still are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgstore.core.ids import ModSeq
from msgstore.imap.selected import ranges_of
from msgstore.imap.syntax.args import Command, StoreArgs
from msgstore.imap.syntax.responses import Code, ResponseCode, Status, StatusResponse, modified

if TYPE_CHECKING:
    from msgstore.imap.session import Session


async def store(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, StoreArgs)
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        return StatusResponse(Status.NO, "Mailbox is read-only", ResponseCode(Code.READ_ONLY))
    if args.unchanged_since is not None:
        s.enable(b"CONDSTORE")
    pairs = sel.resolve(args.seqs, uid=cmd.uid, saved=s.saved_search)
    if not pairs:
        return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
    since = ModSeq(args.unchanged_since) if args.unchanged_since is not None else None
    result = await s.access.store_flags(
        sel.opened, sel.uid_set(pairs), args.op, args.flags, unchanged_since=since
    )
    for upd in result.updated:
        sel.reported[upd.uid] = upd.modseq
        if args.silent and args.unchanged_since is None:
            continue
        seq = sel.seq_for(upd.uid)
        if seq is not None:
            s.out.write(sel.flags_fetch(s, seq, upd.uid, upd.flags, upd.modseq))
    code = None
    if result.modified:
        if cmd.uid:
            code = modified(result.modified.ranges)
        else:
            seqs = [sel.seq_for(u) for u in result.modified]
            code = modified(ranges_of(q for q in seqs if q is not None))
    return StatusResponse(Status.OK, f"{cmd.name.decode()} completed", code)
