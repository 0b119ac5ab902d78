"""APPEND and MULTIAPPEND (RFC 9051 §6.3.12, RFC 3502, RFC 4315 APPENDUID, RFC 7889).

Each message streams from its literal (memory, or the framer's spill file) into
``backend.stage`` -- CRLF-normalised and size-checked as it goes -- and is acknowledged only
after ``append`` returned, i.e. once it is durable. A mailbox that does not exist (or is not
visible) gets ``NO [TRYCREATE]`` (RFC 9051 §6.3.12).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Final

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.imap.selected import ranges_of
from msgstore.imap.syntax.args import AppendArgs, AppendMessage, Command
from msgstore.imap.syntax.responses import (
    Code,
    ResponseCode,
    Status,
    StatusResponse,
    appenduid,
)
from msgstore.imap.syntax.unit import LiteralFile
from msgstore.storage.base import AppendResult, StagedMessage

if TYPE_CHECKING:
    from msgstore.imap.session import Session

#: Octets read from a spill file per write to the staged message.
CHUNK_OCTETS: Final = 256 * 1024


async def _feed(staged: StagedMessage, message: AppendMessage) -> None:
    data = message.data
    if not isinstance(data, LiteralFile):
        await staged.write(data)
        return
    loop = asyncio.get_running_loop()
    fd = os.open(data.path, os.O_RDONLY)
    try:
        offset = 0
        while True:
            chunk = await loop.run_in_executor(None, os.pread, fd, CHUNK_OCTETS, offset)
            if not chunk:
                break
            offset += len(chunk)
            await staged.write(chunk)
    finally:
        os.close(fd)


async def append(s: Session, cmd: Command) -> StatusResponse:
    args = cmd.args
    assert isinstance(args, AppendArgs)
    try:
        opened = await s.access.open(args.mailbox, "i")
    except StoreError as exc:
        if exc.kind is not ErrorKind.NOT_FOUND:
            raise
        return StatusResponse(Status.NO, "Mailbox does not exist", ResponseCode(Code.TRYCREATE))
    backend = s.ctx.backend
    results: list[AppendResult] = []
    for message in args.messages:
        async with backend.stage(max_octets=s.ctx.config.store.max_message_size) as staged:
            await _feed(staged, message)
            await staged.finish()
            results.append(
                await s.access.append(
                    opened,
                    staged,
                    flags=message.flags,
                    internal_date=message.internal_date,
                )
            )
    # Messages are appended one after the other, so their UIDs ascend (RFC 3502 §6.3.11).
    code = appenduid(results[-1].uidvalidity, ranges_of(r.uid for r in results))
    return StatusResponse(Status.OK, "APPEND completed", code)
