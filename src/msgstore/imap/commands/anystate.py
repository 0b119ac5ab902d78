"""CAPABILITY, NOOP, LOGOUT (RFC 9051 §6.1), ID (RFC 2971), ENABLE (RFC 5161), COMPRESS
(RFC 4978).

COMPRESS=DEFLATE is allowed after login (with or without TLS, which it then runs inside). The
tagged OK goes out uncompressed; from the next octet on both directions are raw deflate
(zlib ``wbits=-15``), each server write ending in a sync flush. The framer stops after the
COMPRESS line, so octets the client sent right behind it are passed through the inflater
before they are framed (``ImapConnection.start_compression``). A second COMPRESS gets
``NO [COMPRESSIONACTIVE]``, another mechanism ``BAD``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from msgstore import __version__
from msgstore.imap.syntax.args import Command, CompressArgs, EnableArgs, IdArgs
from msgstore.imap.syntax.responses import (
    CapabilityData,
    Code,
    EnabledData,
    ResponseCode,
    Status,
    StatusResponse,
    encode_nstring,
    encode_string,
)

if TYPE_CHECKING:
    from msgstore.imap.session import Session

#: What ENABLE accepts (RFC 5161 §3.1: unknown names are ignored, not errors).
ENABLEABLE: Final = (b"CONDSTORE", b"QRESYNC", b"UTF8=ACCEPT", b"IMAP4REV2")


def ok(text: str) -> StatusResponse:
    return StatusResponse(Status.OK, text)


async def capability(s: Session, cmd: Command) -> StatusResponse:
    s.out.send(CapabilityData(s.capabilities()))
    return ok("CAPABILITY completed")


async def noop(s: Session, cmd: Command) -> StatusResponse:
    return ok("NOOP completed")


async def logout(s: Session, cmd: Command) -> StatusResponse:
    s.bye("Logging out")
    return ok("LOGOUT completed")


async def id_(s: Session, cmd: Command) -> StatusResponse:
    assert isinstance(cmd.args, IdArgs)
    s.client_id = cmd.args.fields
    pairs = (("name", "msgstore"), ("version", __version__))
    body = b" ".join(
        encode_string(k.encode()) + b" " + encode_nstring(v.encode()) for k, v in pairs
    )
    s.out.write(b"* ID (" + body + b")\r\n")
    return ok("ID completed")


async def enable(s: Session, cmd: Command) -> StatusResponse:
    assert isinstance(cmd.args, EnableArgs)
    newly: list[bytes] = []
    for cap in cmd.args.capabilities:
        name = cap.upper()
        if name not in ENABLEABLE or name in s.enabled:
            continue
        if name == b"QRESYNC" and b"CONDSTORE" not in s.enabled:
            s.enable(b"CONDSTORE")
        s.enable(name)
        newly.append(b"IMAP4rev2" if name == b"IMAP4REV2" else name)
    s.out.send(EnabledData(tuple(newly)))
    return ok("ENABLE completed")


async def compress(s: Session, cmd: Command) -> StatusResponse:
    assert isinstance(cmd.args, CompressArgs)
    if s.conn.compressed:
        return StatusResponse(
            Status.NO, "Compression is already active", ResponseCode(Code.COMPRESSIONACTIVE)
        )
    if cmd.args.mechanism.upper() != "DEFLATE":
        return StatusResponse(Status.BAD, "Unknown compression mechanism")

    async def start() -> None:
        s.conn.start_compression()

    s.after_reply = start
    return ok("DEFLATE active")
