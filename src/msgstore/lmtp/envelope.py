"""One mail transaction's envelope, and the trace fields written in front of the message.

The trace fields (RFC 5321 §4.4) are built once per transaction and prepended to the one
stored file, so they are the same octets for every recipient (the file is hard-linked into
each recipient's tree): ``Return-Path`` from MAIL FROM, and one ``Received`` line naming the
client, this server, the protocol (RFC 3848 / RFC 6531 keywords) and the session id. No
``for <recipient>`` clause: the same file serves every recipient, and Bcc recipients would
see each other.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass, field

from msgstore.core.address import Address
from msgstore.delivery.pipeline import Target
from msgstore.lmtp.protocol import MailArguments, Protocol


@dataclass(slots=True)
class Envelope:
    """MAIL FROM and the recipients accepted so far, in RCPT order (duplicates kept)."""

    sender: Address | None  # None: the null reverse-path <>
    mail: MailArguments
    recipients: list[Target] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Peer:
    """What the Received line says about the connection."""

    helo: str  # cleaned greeting argument
    address: str  # the client's IP address
    extended: bool  # EHLO/LHLO rather than HELO
    tls: bool


def protocol_keyword(protocol: Protocol, peer: Peer, smtputf8: bool) -> str:
    """``with`` keyword: SMTP, ESMTP, ESMTPS, LMTP, UTF8SMTP, UTF8SMTPS, UTF8LMTP."""
    if protocol is Protocol.LMTP:
        return "UTF8LMTP" if smtputf8 else "LMTP"
    if smtputf8:
        return "UTF8SMTPS" if peer.tls else "UTF8SMTP"
    if not peer.extended:
        return "SMTP"
    return "ESMTPS" if peer.tls else "ESMTP"


def trace_fields(
    envelope: Envelope,
    *,
    protocol: Protocol,
    peer: Peer,
    hostname: str,
    session_id: str,
    now: dt.datetime | None = None,
) -> bytes:
    """``Return-Path`` and ``Received``, CRLF-terminated, to prepend to the message."""
    sender = "" if envelope.sender is None else str(envelope.sender)
    when = email.utils.format_datetime(now or dt.datetime.now(dt.UTC).astimezone())
    keyword = protocol_keyword(protocol, peer, envelope.mail.smtputf8)
    # A Unix-socket peer has no address; RFC 5321 §4.4 makes the TCP-info optional.
    tcp_info = f" ([{peer.address}])" if peer.address else ""
    text = (
        f"Return-Path: <{sender}>\r\n"
        f"Received: from {peer.helo}{tcp_info}\r\n"
        f"\tby {hostname} (msgstore) with {keyword} id {session_id};\r\n"
        f"\t{when}\r\n"
    )
    return text.encode("utf-8")


def return_path_octets(trace: bytes) -> int:
    """Octets of the ``Return-Path`` field at the start of :func:`trace_fields`' output: the
    part only a final delivery carries (RFC 5321 §4.4), left out of forwarded copies."""
    if not trace.startswith(b"Return-Path:"):
        return 0
    end = trace.find(b"\r\n")
    return end + 2 if end >= 0 else 0
