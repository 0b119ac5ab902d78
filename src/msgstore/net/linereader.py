"""Line framing with a length limit, for the line protocols (POP3, poppassd; LMTP/SMTP later).

Sans-I/O, like ``imap/framer.py``: the connection feeds whatever arrived
(:meth:`LineReader.feed`) and takes complete lines out (:meth:`LineReader.next_line`), so the
framing can be tested byte at a time and :mod:`msgstore.net.connection` is a thin adapter.

Rules:

- A line ends at LF; a CR right before the LF is part of the terminator. Bare LF is accepted
  as a line end (Dovecot does the same for POP3); lines are returned without their terminator.
- ``max_line_octets`` counts the terminator (RFC 2449 §4: "255 octets, including the
  terminating CRLF"). The limit is enforced as octets arrive, never by waiting for the LF
  (RELIABILITY.md §4 item 8): once a line passes it, :data:`TOO_LONG` is reported at once and
  the rest of that line is skipped without being buffered, up to and including its LF. The
  next line is framed normally. Line protocols carry no literals, so skipping to the LF is
  safe (the IMAP framer must close instead).
- Octets after the last complete line stay buffered; :meth:`LineReader.pending` tells how many.
  STLS/STARTTLS use it to refuse plaintext pipelined behind the command (CVE-2011-0411 class,
  RELIABILITY.md §7 case 20).
"""

from __future__ import annotations

import enum
from typing import Final


class LineEvent(enum.Enum):
    """A framing event that is not a line."""

    TOO_LONG = "too-long"  # a line passed the limit; the rest of it is being skipped


TOO_LONG: Final = LineEvent.TOO_LONG


class LineReader:
    """Split a byte stream into lines of at most ``max_line_octets`` (terminator included)."""

    __slots__ = ("_buffer", "_max", "_scan", "_skipping")

    def __init__(self, max_line_octets: int) -> None:
        if max_line_octets < 2:
            raise ValueError("max_line_octets must leave room for CRLF")
        self._max = max_line_octets
        self._buffer = bytearray()
        self._scan = 0  # octets of _buffer already known to hold no LF
        self._skipping = False  # inside an over-long line: drop octets up to its LF

    @property
    def max_line_octets(self) -> int:
        return self._max

    @max_line_octets.setter
    def max_line_octets(self, value: int) -> None:
        """Change the limit for the lines to come (e.g. longer SASL responses)."""
        if value < 2:
            raise ValueError("max_line_octets must leave room for CRLF")
        self._max = value

    def feed(self, data: bytes) -> None:
        """Add received octets. Memory stays bounded: see :meth:`next_line`."""
        if self._skipping:
            lf = data.find(b"\n")
            if lf < 0:
                return
            self._skipping = False
            data = data[lf + 1 :]
        self._buffer += data

    def next_line(self) -> bytes | LineEvent | None:
        """The next complete line (without CRLF/LF), :data:`TOO_LONG`, or None for "need more".

        After :data:`TOO_LONG`, octets up to the offending line's LF are discarded as they
        arrive; the buffer never holds more than ``max_line_octets`` octets of one line.
        """
        buf = self._buffer
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if len(buf) >= self._max:
                # Even with an LF next, the line would be longer than the limit.
                del buf[:]
                self._scan = 0
                self._skipping = True
                return TOO_LONG
            self._scan = len(buf)
            return None
        self._scan = 0
        if lf + 1 > self._max:
            del buf[: lf + 1]
            return TOO_LONG
        end = lf - 1 if lf > 0 and buf[lf - 1] == 0x0D else lf
        line = bytes(buf[:end])
        del buf[: lf + 1]
        return line

    def pending(self) -> int:
        """Octets received after the last complete line (0 while skipping an over-long one)."""
        return len(self._buffer)

    def take_pending(self) -> bytes:
        """Remove and return the octets after the last complete line."""
        data = bytes(self._buffer)
        del self._buffer[:]
        self._scan = 0
        return data
