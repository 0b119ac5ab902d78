"""COPY, MOVE and their UID forms (RFC 9051 §6.4.7-8, RFC 6851, RFC 4315 COPYUID).

A destination that does not exist (or is not visible) gets ``NO [TRYCREATE]``. MOVE reports
COPYUID in an untagged OK before its EXPUNGE (or VANISHED) responses (RFC 6851 §4.3); those
come from the sync after the command, like any other expunge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.imap.selected import ranges_of
from msgstore.imap.syntax.args import Command, CopyArgs
from msgstore.imap.syntax.responses import Code, ResponseCode, Status, StatusResponse, copyuid

if TYPE_CHECKING:
    from msgstore.imap.session import Session


async def copy(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, CopyArgs)
    sel = s.selected
    assert sel is not None
    move = cmd.name.endswith(b"MOVE")
    done = f"{cmd.name.decode()} completed"
    if move and sel.readonly:
        return StatusResponse(Status.NO, "Mailbox is read-only", ResponseCode(Code.READ_ONLY))
    pairs = sel.resolve(args.seqs, uid=cmd.uid, saved=s.saved_search)
    if not pairs:
        return StatusResponse(Status.OK, done)
    try:
        _, result = await s.access.copy(sel.opened, sel.uid_set(pairs), args.mailbox, move=move)
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        return StatusResponse(Status.NO, exc.public, ResponseCode(Code.TRYCREATE))
    if not result.source_uids:
        return StatusResponse(Status.OK, done)
    code = copyuid(result.uidvalidity, ranges_of(result.source_uids), ranges_of(result.dest_uids))
    if move:
        s.out.send(StatusResponse(Status.OK, "Moved", code))
        return StatusResponse(Status.OK, done)
    return StatusResponse(Status.OK, done, code)
