"""GETQUOTA GETQUOTAROOT SETQUOTA (RFC 9208): one quota root per account tree (named after
the account) and one for the public tree ("Public"); SETQUOTA is for managers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgstore.core.quota import QuotaInfo
from msgstore.imap.syntax.args import Command, GetQuotaArgs, MailboxArgs, SetQuotaArgs
from msgstore.imap.syntax.responses import (
    Status,
    StatusResponse,
    encode_astring,
    encode_mailbox,
)

if TYPE_CHECKING:
    from msgstore.imap.session import Session


def quota_line(info: QuotaInfo) -> bytes:
    """``* QUOTA root (STORAGE used limit MESSAGE used limit)``, limited resources only."""
    items: list[bytes] = []
    if info.storage_limit_kib is not None:
        items.append(b"STORAGE %d %d" % (info.storage_used_kib, info.storage_limit_kib))
    if info.message_limit is not None:
        items.append(b"MESSAGE %d %d" % (info.messages_used, info.message_limit))
    root = encode_astring(info.root.encode("utf-8"))
    return b"* QUOTA " + root + b" (" + b" ".join(items) + b")\r\n"


async def getquotaroot(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, MailboxArgs)
    info = await s.access.quota_root(args.mailbox)
    s.out.write(
        b"* QUOTAROOT "
        + encode_mailbox(args.mailbox, utf8=s.out.utf8)
        + b" "
        + encode_astring(info.root.encode("utf-8"))
        + b"\r\n"
    )
    s.out.write(quota_line(info))
    return StatusResponse(Status.OK, "GETQUOTAROOT completed")


async def getquota(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, GetQuotaArgs)
    s.out.write(quota_line(await s.access.get_quota(args.root)))
    return StatusResponse(Status.OK, "GETQUOTA completed")


async def setquota(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, SetQuotaArgs)
    limits = dict(args.limits)
    unknown = set(limits) - {"STORAGE", "MESSAGE"}
    if unknown:
        return StatusResponse(Status.NO, "Unsupported quota resource")
    info = await s.access.set_quota(
        args.root,
        storage_limit_kib=limits.get("STORAGE"),
        message_limit=limits.get("MESSAGE"),
    )
    s.out.write(quota_line(info))
    return StatusResponse(Status.OK, "SETQUOTA completed")
