"""CHECK CLOSE UNSELECT EXPUNGE UID EXPUNGE (RFC 9051 §6.4, RFC 3691, RFC 4315)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgstore.core.ids import UidSet
from msgstore.imap.commands.mailboxes import deselect
from msgstore.imap.syntax.args import Command, UidExpungeArgs
from msgstore.imap.syntax.responses import Code, ResponseCode, Status, StatusResponse

if TYPE_CHECKING:
    from msgstore.imap.session import Session


async def check(s: Session, cmd: Command) -> StatusResponse:
    return StatusResponse(Status.OK, "CHECK completed")


async def close(s: Session, cmd: Command) -> StatusResponse:
    """CLOSE expunges silently when the mailbox is read-write and the user holds ``e``."""
    sel = s.selected
    assert sel is not None
    if not sel.readonly and "e" in sel.opened.rights:
        await s.access.expunge(sel.opened, None)
    await deselect(s, report_closed=False)
    return StatusResponse(Status.OK, "CLOSE completed")


async def unselect(s: Session, cmd: Command) -> StatusResponse:
    await deselect(s, report_closed=False)
    return StatusResponse(Status.OK, "UNSELECT completed")


async def expunge(s: Session, cmd: Command) -> StatusResponse:
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        return StatusResponse(Status.NO, "Mailbox is read-only", ResponseCode(Code.READ_ONLY))
    uids: UidSet | None = None
    if isinstance(cmd.args, UidExpungeArgs):
        uids = sel.uid_set(sel.resolve(cmd.args.uids, uid=True, saved=s.saved_search))
        if not uids:
            return StatusResponse(Status.OK, "UID EXPUNGE completed")
    await s.access.expunge(sel.opened, uids)
    return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")
