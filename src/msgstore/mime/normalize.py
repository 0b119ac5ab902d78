"""Line-ending normalisation: every message is stored with CRLF line ends.

The store writes each message exactly as it will be sent (ARCHITECTURE.md), so line ends are
fixed once, on the way in: bare LF -> CRLF, bare CR -> CRLF, CRLF kept. RFC 5322 §2.3 forbids
bare CR and LF in a message; RFC 9051 §2.3.1 makes literals CRLF-terminated text, and SMTP
smuggling (CVE-2023-51764 and friends, RELIABILITY.md §7 test 28) is why the rule is applied
before anything else looks at the bytes.

:class:`CrlfNormalizer` works on a stream of chunks and gives the same output for any chunking
as :func:`normalize` gives for the whole message.
"""

from __future__ import annotations

__all__ = ["CrlfNormalizer", "normalize"]


def _fix(data: bytes) -> bytes:
    """Normalise a chunk that does not end in a CR (the caller holds a trailing CR back)."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data  # already CRLF throughout (counting is cheaper than three copies)
    # CRLF -> LF first, then every remaining CR is bare; finally every LF becomes CRLF.
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class CrlfNormalizer:
    """Streaming line-ending normaliser: bare LF -> CRLF, bare CR -> CRLF, CRLF unchanged.

    Correct across chunk boundaries: a CR that ends one chunk is held back until the next
    chunk shows whether an LF follows it.

    Example::

        n = CrlfNormalizer()
        out = n.feed(b"a\\r") + n.feed(b"\\nb") + n.finish()   # b"a\\r\\nb\\r\\n"
    """

    __slots__ = ("_empty", "_ends_crlf", "_pending_cr")

    def __init__(self) -> None:
        self._pending_cr = False
        self._ends_crlf = False
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        """Take the next chunk; return the normalised bytes that are ready to write."""
        if not data:
            return b""
        self._empty = False
        head = b""
        if self._pending_cr:
            self._pending_cr = False
            head = b"\r\n"
            if data[:1] == b"\n":
                data = data[1:]
        if data[-1:] == b"\r":
            self._pending_cr = True
            data = data[:-1]
        out = head + _fix(data) if data else head
        if out:
            self._ends_crlf = out[-1:] == b"\n"
        return out

    def finish(self) -> bytes:
        """End of message: the held-back bytes, plus a CRLF if the message does not end in one.

        An empty message stays empty.
        """
        if self._pending_cr:
            self._pending_cr = False
            self._ends_crlf = True
            return b"\r\n"
        if self._empty or self._ends_crlf:
            return b""
        self._ends_crlf = True
        return b"\r\n"


def normalize(data: bytes) -> bytes:
    """Normalise a whole message at once (same result as one :class:`CrlfNormalizer`)."""
    n = CrlfNormalizer()
    return n.feed(data) + n.finish()
