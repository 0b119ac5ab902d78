"""The IMAP ENVELOPE response, ready to send (RFC 9051 §7.5.2, RFC 3501 §7.4.2).

``(date subject from sender reply-to to cc bcc in-reply-to message-id)``: the string fields are
the raw header text, unfolded, *not* RFC 2047-decoded (IMAP returns the header text as is);
NIL when the field is absent, ``""`` when present but empty. Address fields are lists of
address structures (see :mod:`msgstore.mime.address`), NIL when absent or empty. Sender and
Reply-To fall back to From when absent or empty (RFC 3501 §7.4.2). Duplicate fields: the
first one counts.
"""

from __future__ import annotations

from msgstore.mime.address import Address, parse_address_list
from msgstore.mime.headers import HeaderFields
from msgstore.mime.wire import NIL, nstring

__all__ = ["address_list_bytes", "build_envelope"]


def address_list_bytes(addresses: list[Address]) -> bytes:
    """``((name adl mailbox host)(...))`` or NIL for no addresses."""
    if not addresses:
        return NIL
    return (
        b"("
        + b"".join(
            b"(" + b" ".join(nstring(part) for part in address) + b")" for address in addresses
        )
        + b")"
    )


def build_envelope(fields: HeaderFields, defects: list[str]) -> bytes:
    """ENVELOPE of the message whose header fields are ``fields``; defects are appended."""
    lists: dict[str, bytes] = {}
    for name in ("from", "sender", "reply-to", "to", "cc", "bcc"):
        raw = fields.get(name)
        if raw is None:
            lists[name] = NIL
            continue
        addresses, problems = parse_address_list(raw)
        for problem in problems:
            if problem not in defects:
                defects.append(problem)
        lists[name] = address_list_bytes(addresses)
    for name in ("sender", "reply-to"):
        if lists[name] == NIL:
            lists[name] = lists["from"]
    return (
        b"("
        + b" ".join(
            (
                nstring(fields.get("date")),
                nstring(fields.get("subject")),
                lists["from"],
                lists["sender"],
                lists["reply-to"],
                lists["to"],
                lists["cc"],
                lists["bcc"],
                nstring(fields.get("in-reply-to")),
                nstring(fields.get("message-id")),
            )
        )
        + b")"
    )
