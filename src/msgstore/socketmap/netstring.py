"""Netstrings (https://cr.yp.to/proto/netstrings.txt), as the socketmap protocol frames them.

A netstring is ``<length>:<octets>,`` with the length in decimal ASCII, no sign and no
leading zero (``0:,`` is the empty string). :class:`NetstringDecoder` is sans-I/O: feed it
received octets, take complete payloads out. It checks each octet as it arrives, so a
malformed or oversized request is refused as soon as it is visible, without waiting for (or
buffering) the octets it announces.
"""

from __future__ import annotations

from typing import Final

#: Digits of a length: enough for any limit we use, and it bounds the header scan.
_MAX_DIGITS: Final = 9


class NetstringError(Exception):
    """The input is not a netstring (or announces one over the limit); the reason is public."""


def encode(payload: bytes) -> bytes:
    """``payload`` as one netstring."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Split a byte stream into netstring payloads of at most ``max_octets`` octets each."""

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_octets: int) -> None:
        self._max = max_octets
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append received octets."""
        self._buffer += data

    def pending(self) -> int:
        """Octets received and not yet returned as a payload (a request in progress)."""
        return len(self._buffer)

    def next(self) -> bytes | None:
        """The next complete payload, or None until more input arrives.

        Raises:
            NetstringError: the buffered input cannot be the start of a valid netstring within
                the limit. The stream is then unusable: close it.
        """
        buf = self._buffer
        colon = buf.find(b":", 0, _MAX_DIGITS + 1)
        header = bytes(buf[: colon if colon >= 0 else _MAX_DIGITS + 1])
        if not (header.isascii() and header.isdigit()) and header:
            raise NetstringError("malformed netstring length")
        if colon < 0:
            if len(header) > _MAX_DIGITS:
                raise NetstringError("netstring length too long")
            if header and int(header) > self._max:
                raise NetstringError(f"request longer than {self._max} octets")
            return None
        if not header:
            raise NetstringError("malformed netstring length")
        if len(header) > 1 and header.startswith(b"0"):
            raise NetstringError("malformed netstring length (leading zero)")
        length = int(header)
        if length > self._max:
            raise NetstringError(f"request longer than {self._max} octets")
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        if buf[end] != ord(","):
            raise NetstringError("netstring not terminated by a comma")
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        return payload
