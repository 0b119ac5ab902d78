"""Mailbox names: validation and hierarchy ("/").

Names are stored as UTF-8 ``str``; modified UTF-7 (RFC 3501 §5.1.3) is only spoken on the wire
to IMAP4rev1 clients. A name never reaches the filesystem: files live under mailbox ids.
"""

from __future__ import annotations

from typing import Final, NewType

from msgstore.core.errors import ErrorKind, StoreError

MailboxName = NewType("MailboxName", str)

DELIMITER: Final = "/"
INBOX: Final = MailboxName("INBOX")
MAX_NAME_OCTETS: Final = 255
MAX_LEVELS: Final = 32


def mailbox_name(raw: str) -> MailboxName:
    """Validate a mailbox name and return it in canonical form (``inbox`` -> ``INBOX``).

    Raises:
        StoreError: PARAMS with the reason spelled out.
    """
    if not raw:
        raise StoreError(ErrorKind.PARAMS, "Mailbox name is empty")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise StoreError(ErrorKind.PARAMS, f"Mailbox name is longer than {MAX_NAME_OCTETS} octets")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise StoreError(ErrorKind.PARAMS, "Mailbox name contains a control character")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise StoreError(ErrorKind.PARAMS, "Mailbox name is not valid UTF-8")
    if raw.startswith(DELIMITER) or raw.endswith(DELIMITER):
        raise StoreError(ErrorKind.PARAMS, "Mailbox name starts or ends with the delimiter '/'")
    levels = raw.split(DELIMITER)
    if any(level == "" for level in levels):
        raise StoreError(ErrorKind.PARAMS, "Mailbox name has an empty hierarchy level")
    if any(level in (".", "..") for level in levels):
        raise StoreError(ErrorKind.PARAMS, "Mailbox name has a '.' or '..' hierarchy level")
    if len(levels) > MAX_LEVELS:
        raise StoreError(ErrorKind.PARAMS, f"Mailbox name has more than {MAX_LEVELS} levels")
    if levels[0].upper() == "INBOX":
        levels[0] = "INBOX"
    return MailboxName(DELIMITER.join(levels))


def parent_of(name: MailboxName) -> MailboxName | None:
    """The immediate parent (``a/b/c`` -> ``a/b``), or None at the top level."""
    head, sep, _ = name.rpartition(DELIMITER)
    return MailboxName(head) if sep else None


def is_below(child: MailboxName, parent: MailboxName) -> bool:
    """True if ``child`` is strictly inside ``parent``'s subtree."""
    return child.startswith(parent + DELIMITER)
