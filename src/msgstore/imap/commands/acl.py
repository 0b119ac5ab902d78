"""GETACL SETACL DELETEACL LISTRIGHTS MYRIGHTS (RFC 4314 §3). The rights themselves are
checked in ``storage.access`` (``a`` for all but MYRIGHTS).

GETACL lists the owner of a personal mailbox with every right (``lrswipkxtea``) even when
no entry is stored for them, as Dovecot does: the owner holds those rights implicitly
(ARCHITECTURE.md), and clients that show an ACL editor expect to see them. A stored entry
for the owner is shown as stored. Public folders have no owner entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgstore.core.acl import ALL_RIGHTS, Rights
from msgstore.imap.syntax.args import AclIdentifierArgs, Command, MailboxArgs, SetAclArgs
from msgstore.imap.syntax.responses import (
    Status,
    StatusResponse,
    encode_astring,
    encode_mailbox,
    encode_string,
)

if TYPE_CHECKING:
    from msgstore.imap.session import Session


def _ok(cmd: Command) -> StatusResponse:
    return StatusResponse(Status.OK, f"{cmd.name.decode()} completed")


def _ident(value: str, utf8: bool) -> bytes:
    return encode_astring(value.encode("utf-8"), utf8=utf8)


async def getacl(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, MailboxArgs)
    acl = dict(await s.access.get_acl(args.mailbox))
    opened = await s.access.open(args.mailbox)
    if opened.owner != (await s.access.public()).id:
        owner = await s.ctx.backend.get_account_by_id(opened.owner)
        acl.setdefault(owner.name, Rights(frozenset(ALL_RIGHTS)))
    utf8 = s.out.utf8
    line = b"* ACL " + encode_mailbox(args.mailbox, utf8=utf8)
    for ident in sorted(acl):
        line += (
            b" " + _ident(ident, utf8) + b" " + encode_astring(acl[ident].for_response().encode())
        )
    s.out.write(line + b"\r\n")
    return _ok(cmd)


async def setacl(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, SetAclArgs)
    await s.access.set_acl(args.mailbox, args.identifier, args.rights)
    return _ok(cmd)


async def deleteacl(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, AclIdentifierArgs)
    await s.access.delete_acl(args.mailbox, args.identifier)
    return _ok(cmd)


async def listrights(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, AclIdentifierArgs)
    lr = await s.access.listrights(args.mailbox, args.identifier)
    utf8 = s.out.utf8
    words = [
        encode_string(w.encode()) if not w else encode_astring(w.encode()) for w in lr.words()
    ]
    s.out.write(
        b"* LISTRIGHTS "
        + encode_mailbox(args.mailbox, utf8=utf8)
        + b" "
        + _ident(args.identifier, utf8)
        + b" "
        + b" ".join(words)
        + b"\r\n"
    )
    return _ok(cmd)


async def myrights(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, MailboxArgs)
    rights = await s.access.myrights(args.mailbox)
    text = rights.for_response().encode()
    s.out.write(
        b"* MYRIGHTS "
        + encode_mailbox(args.mailbox, utf8=s.out.utf8)
        + b" "
        + (encode_astring(text) if text else b'""')
        + b"\r\n"
    )
    return _ok(cmd)
