"""IMAP input framing: bytes in, command units (or the reply to send) out.

The framer is sans-I/O: the connection feeds it whatever arrived (:meth:`Framer.feed`) and gets
back a list of events, so it can be tested byte-at-a-time and a thin asyncio adapter drives it.
It knows lines and literals, not commands: a line ending in ``{N}``, ``{N+}`` or ``~{N}`` (RFC
9051 literal, RFC 7888 non-synchronising literal, RFC 3516 literal8) announces N octets that
belong to the same command, followed by the rest of the command on the next line.

Events, in the order the session must act on them:

- :class:`CommandReady`: a complete :class:`~msgstore.imap.syntax.unit.CommandUnit`.
- :class:`SendContinuation`: write ``+ Ready`` now (a synchronising literal was accepted).
- :class:`FramingError`: write the reply it describes; if ``fatal``, then ``* BYE`` and close.

Limits (:class:`FramerLimits`) are checked as octets arrive, never after the fact:

- A line longer than ``max_line_octets`` is fatal as soon as the limit is passed, without
  waiting for LF (RELIABILITY.md §4 item 8). It is fatal rather than "skip to LF" because the
  framer can no longer tell whether the skipped line announced a non-synchronising literal,
  whose octets would then be read as commands.
- An over-limit *synchronising* literal is refused before it is read: ``NO [TOOBIG]`` and no
  ``+``, so the client never sends it, and the session stays usable (RFC 9051 §7.1).
- An over-limit *non-synchronising* literal is already on its way. We reply ``BAD [TOOBIG]`` and
  close, as Dovecot does (its one fatal parser error), rather than reading and discarding up to
  2 GB; RFC 7888 §4 allows either. Under LITERAL- (the default) that applies above 4,096
  octets.
- Too many literals, or a command whose lines and literals pass ``max_command_octets``, are
  refused the same way (synchronising: tagged reply, session usable; otherwise fatal).
- A NUL octet anywhere but in a literal8, or a CR that is not part of the line end, marks the
  command bad: the rest of the command is still framed (its literals read and dropped), then a
  tagged ``BAD`` replaces it. A bare LF is accepted as a line end, as Dovecot does.

Literals above ``spill_threshold_octets`` are written to a temporary file as their octets
arrive (twisted's ``LiteralFile`` idea, at a much lower threshold: STYLE.md §16); the unit
carries a :class:`~msgstore.imap.syntax.unit.LiteralFile` reference and the session calls
:func:`discard_unit` when done. Those writes are ordinary blocking file writes of at most one
received chunk each.

STARTTLS and COMPRESS are barriers: after framing either command the framer stops and keeps any
further octets unread. :meth:`Framer.pending_bytes` then tells the session whether the client
pipelined data behind STARTTLS (the plaintext-injection attack, RELIABILITY.md §4 item 1:
refuse and close), and :meth:`Framer.take_pending` hands over octets that followed COMPRESS,
which are compressed and must go through the inflater first. :meth:`Framer.resume` continues
framing when the command was refused.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from typing import Final, Literal

from msgstore.imap.syntax.tokens import is_valid_tag
from msgstore.imap.syntax.unit import CommandUnit, LiteralData, LiteralFile

KIB: Final = 1024
MIB: Final = 1024 * KIB

#: Largest literal length RFC 9051 allows (number64).
MAX_NUMBER64: Final = 2**63 - 1

#: Commands after which the octets that follow change meaning (TLS, deflate).
BARRIER_COMMANDS: Final = frozenset({b"STARTTLS", b"COMPRESS"})


@dataclass(frozen=True, slots=True)
class FramerLimits:
    """Input limits of one IMAP connection; each becomes an ``[imap]`` config key.

    Attributes:
        max_line_octets: one line of a command, terminator included (literal octets are not
            part of a line). 64 KiB like Dovecot's ``imap_max_line_length``; RFC 7162 §4 asks
            servers to accept lines of at least 8,192 octets. Exceeding it is fatal.
        max_literal_octets: one literal outside APPEND. Nothing but APPEND needs big strings
            (a search string, a mailbox name, an ID value); 64 KiB keeps them in memory.
        max_append_literal_octets: one APPEND message, advertised as APPENDLIMIT (RFC 7889).
            50 MiB: the largest message common providers accept after base64 growth.
        max_nonsync_literal_octets: non-synchronising literal cap; 4,096 octets is LITERAL-
            (RFC 7888 §5). ``None`` means LITERAL+ is advertised instead: non-synchronising
            literals then get the same caps as synchronising ones.
        max_literals: literals in one command. MULTIAPPEND is the only command that needs
            many; the cap bounds the per-command bookkeeping (Cyrus CVE-2024-34055).
        max_command_octets: lines plus literals of one command other than APPEND.
        max_append_command_octets: lines plus literals of one APPEND (MULTIAPPEND, RFC 3502),
            which bounds the temporary disk space a single command can take.
        spill_threshold_octets: literals larger than this go to a temporary file as they
            arrive (STYLE.md §16: start at 64 KiB, tune from bench/).
    """

    max_line_octets: int = 64 * KIB
    max_literal_octets: int = 64 * KIB
    max_append_literal_octets: int = 50 * MIB
    max_nonsync_literal_octets: int | None = 4096
    max_literals: int = 1000
    max_command_octets: int = 1 * MIB
    max_append_command_octets: int = 200 * MIB
    spill_threshold_octets: int = 64 * KIB


@dataclass(frozen=True, slots=True)
class CommandReady:
    """A complete command unit, ready for ``msgstore.imap.syntax.command.parse_command``."""

    unit: CommandUnit


@dataclass(frozen=True, slots=True)
class SendContinuation:
    """The session must send a continuation request (``+ Ready``) now."""

    text: bytes = b"Ready"


@dataclass(frozen=True, slots=True)
class FramingError:
    """A command was refused while framing; the session sends the reply described here.

    With a ``tag`` the reply is ``<tag> <status> [<code>] <text>``, without one it is
    ``* BAD <text>`` (the tag could not be read or was invalid; it is never echoed). If
    ``fatal``, the session then sends ``* BYE <text>`` and closes: the framer has stopped
    and ignores further input.
    """

    tag: bytes | None
    status: Literal[b"BAD", b"NO"]
    code: bytes | None
    text: str
    fatal: bool


Event = CommandReady | SendContinuation | FramingError

_LINE: Final = 0
_LITERAL: Final = 1
_PAUSED: Final = 2
_CLOSED: Final = 3


def discard_unit(unit: CommandUnit) -> None:
    """Delete the spill files of a command unit (idempotent)."""
    for lit in unit.spilled():
        _unlink(lit.path)


def read_literal(data: LiteralData) -> bytes:
    """The content of a literal, reading its spill file if it has one."""
    if isinstance(data, bytes):
        return data
    with open(data.path, "rb") as f:
        return f.read()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _literal_marker(line: bytes) -> tuple[bytes, bool, bool] | None:
    """``(digits, non-synchronising, literal8)`` if the line ends in a literal marker.

    Anything of the form ``{...+}`` counts, valid digits or not, so that an invalid length on
    a non-synchronising literal is fatal instead of letting its octets be read as commands.
    """
    if not line.endswith(b"}"):
        return None
    brace = line.rfind(b"{")
    if brace < 0:
        return None
    body = line[brace + 1 : -1]
    plus = body.endswith(b"+")
    digits = body[:-1] if plus else body
    if not plus and not (digits and digits.isdigit()):
        return None
    binary = brace > 0 and line[brace - 1] == 0x7E
    return digits, plus, binary


def _peek_tag(line: bytes) -> bytes | None:
    sp = line.find(b" ")
    if sp <= 0:
        return None
    tag = line[:sp]
    return tag if is_valid_tag(tag) else None


def _peek_name(line: bytes) -> bytes:
    sp = line.find(b" ")
    if sp < 0:
        return b""
    rest = line[sp + 1 :]
    end = rest.find(b" ")
    return (rest if end < 0 else rest[:end]).upper()


class Framer:
    """Turn a byte stream into IMAP command units; see the module docstring.

    Args:
        limits: the connection's input limits.
        spill_dir: directory for literal spill files (default: the system temp dir). It
            should be on the same filesystem as the mail store so APPEND can rename.
    """

    def __init__(self, limits: FramerLimits | None = None, *, spill_dir: str | None = None):
        self.limits = limits if limits is not None else FramerLimits()
        self._spill_dir = spill_dir
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed input in _buf
        self._scan = 0  # octets of the current partial line already searched for LF
        self._state = _LINE
        self._reset_command()

    # -- public API ------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Take newly received octets; return the events they complete, in order."""
        if self._state == _CLOSED:
            return []
        self._buf += data
        if self._state == _PAUSED:
            return []
        return self._run()

    def pending_bytes(self) -> int:
        """Octets received but not yet framed (non-zero after STARTTLS means injection)."""
        return len(self._buf) - self._pos

    def take_pending(self) -> bytes:
        """Remove and return the unframed octets, then continue framing with an empty buffer.

        Used after COMPRESS: the octets are deflated and must pass the inflater first; the
        session feeds the inflated output back with :meth:`feed`.
        """
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        self._scan = 0
        if self._state == _PAUSED:
            self._state = _LINE
        return data

    def resume(self) -> list[Event]:
        """Continue after a barrier command (STARTTLS/COMPRESS refused or done)."""
        if self._state != _PAUSED:
            return []
        self._state = _LINE
        return self._run()

    @property
    def paused(self) -> bool:
        """True after a barrier command, until :meth:`resume` or :meth:`take_pending`."""
        return self._state == _PAUSED

    @property
    def in_command(self) -> bool:
        """True while part of a command has arrived but not all of it (the per-command
        deadline of the connection runs meanwhile)."""
        if self._state == _LITERAL or self._lines:
            return True
        return self._state == _LINE and self.pending_bytes() > 0

    @property
    def closed(self) -> bool:
        """True after a fatal error or :meth:`close`."""
        return self._state == _CLOSED

    def close(self) -> None:
        """Stop framing and delete the spill files of a partly received command."""
        self._drop_command()
        self._state = _CLOSED
        self._buf.clear()
        self._pos = 0

    # -- the state machine -----------------------------------------------------------------

    def _reset_command(self) -> None:
        self._lines: list[bytes] = []
        self._literals: list[LiteralData] = []
        self._cmd_octets = 0
        self._tag: bytes | None = None
        self._is_append = False
        self._bad: str | None = None  # set when the command will be refused once complete
        self._lit_remaining = 0
        self._lit_binary = False
        self._lit_mem = bytearray()
        self._lit_fd = -1
        self._lit_path = ""

    def _drop_command(self) -> None:
        if self._lit_fd >= 0:
            os.close(self._lit_fd)
            _unlink(self._lit_path)
            self._lit_fd = -1
        for lit in self._literals:
            if isinstance(lit, LiteralFile):
                _unlink(lit.path)
        self._reset_command()

    def _command_limit(self) -> int:
        lim = self.limits
        return lim.max_append_command_octets if self._is_append else lim.max_command_octets

    def _run(self) -> list[Event]:
        events: list[Event] = []
        while self._state == _LINE or self._state == _LITERAL:
            if self._state == _LITERAL:
                if not self._read_literal(events):
                    break
            elif not self._read_line(events):
                break
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        return events

    def _read_line(self, events: list[Event]) -> bool:
        buf, start = self._buf, self._pos
        lf = buf.find(b"\n", start + self._scan)
        avail = (lf + 1 - start) if lf >= 0 else (len(buf) - start)
        # The offset (1-based, within this line) at which each limit is passed; whichever is
        # passed first wins, so every chunking of the input gives the same error.
        line_cross = self.limits.max_line_octets + 1
        cmd_cross = self._command_limit() - self._cmd_octets + 1
        cross = min(line_cross, cmd_cross)
        if cross <= avail:
            if not self._lines:
                prefix = bytes(buf[start : start + min(cross, self.limits.max_line_octets)])
                self._tag = _peek_tag(prefix)
            text = "Command line too long" if line_cross <= cmd_cross else "Command too long"
            self._fatal(events, b"BAD", None, text)
            return False
        if lf < 0:
            self._scan = avail
            return False
        end = lf - 1 if lf > start and buf[lf - 1] == 0x0D else lf
        line = bytes(buf[start:end])
        self._pos = lf + 1
        self._scan = 0
        self._cmd_octets += avail
        if b"\0" in line:
            self._bad = self._bad or "NUL octet in command"
        if b"\r" in line:
            self._bad = self._bad or "CR without LF in command"
        self._end_of_line(line, events)
        return True

    def _end_of_line(self, line: bytes, events: list[Event]) -> None:
        if not self._lines:
            self._tag = _peek_tag(line)
            self._is_append = _peek_name(line) == b"APPEND"
        self._lines.append(line)
        marker = _literal_marker(line)
        if marker is None:
            self._complete(events)
            return
        digits, plus, binary = marker
        lim = self.limits
        size = int(digits) if digits.isdigit() and len(digits) <= 19 else MAX_NUMBER64 + 1
        if size > MAX_NUMBER64:
            self._refuse_literal(events, plus, b"BAD", None, "Invalid literal length")
        elif self._bad is not None:
            if plus:
                self._start_literal(size, binary, keep=False)
            else:
                self._refuse(events, b"BAD", None, self._bad)
        elif len(self._literals) >= lim.max_literals:
            self._refuse_literal(events, plus, b"BAD", None, "Too many literals in command")
        elif size > self._literal_cap(plus):
            self._refuse_literal(events, plus, b"NO", b"TOOBIG", "Literal too big")
        elif self._cmd_octets + size > self._command_limit():
            self._refuse_literal(events, plus, b"NO", b"TOOBIG", "Command too big")
        else:
            if not plus:
                events.append(SendContinuation())
            self._start_literal(size, binary, keep=True)

    def _literal_cap(self, nonsync: bool) -> int:
        lim = self.limits
        cap = lim.max_append_literal_octets if self._is_append else lim.max_literal_octets
        if nonsync and lim.max_nonsync_literal_octets is not None:
            cap = min(cap, lim.max_nonsync_literal_octets)
        return cap

    def _start_literal(self, size: int, binary: bool, *, keep: bool) -> None:
        self._lit_remaining = size
        self._lit_binary = binary
        self._lit_mem = bytearray()
        if keep and size > self.limits.spill_threshold_octets:
            self._lit_fd, self._lit_path = tempfile.mkstemp(
                prefix="msgstore-literal-", dir=self._spill_dir
            )
        self._state = _LITERAL
        if size == 0:
            self._finish_literal()

    def _read_literal(self, events: list[Event]) -> bool:
        n = min(self._lit_remaining, len(self._buf) - self._pos)
        if n == 0:
            return False
        chunk = memoryview(self._buf)[self._pos : self._pos + n]
        try:
            nul = self._buf.find(b"\0", self._pos, self._pos + n) >= 0
            if nul and not self._lit_binary and self._bad is None:
                self._bad = "NUL octet in literal"
                self._drop_literal_storage()
            if self._bad is None:
                if self._lit_fd >= 0:
                    done = 0
                    while done < n:
                        done += os.write(self._lit_fd, chunk[done:])
                else:
                    self._lit_mem += chunk
        finally:
            chunk.release()
        self._pos += n
        self._lit_remaining -= n
        if self._lit_remaining == 0:
            self._finish_literal()
        return True

    def _drop_literal_storage(self) -> None:
        if self._lit_fd >= 0:
            os.close(self._lit_fd)
            _unlink(self._lit_path)
            self._lit_fd = -1
        self._lit_mem = bytearray()

    def _finish_literal(self) -> None:
        self._state = _LINE
        if self._bad is not None:
            self._drop_literal_storage()
            self._literals.append(b"")
            return
        if self._lit_fd >= 0:
            size = os.fstat(self._lit_fd).st_size
            os.close(self._lit_fd)
            self._lit_fd = -1
            self._literals.append(LiteralFile(self._lit_path, size))
            self._cmd_octets += size
        else:
            data = bytes(self._lit_mem)
            self._lit_mem = bytearray()
            self._literals.append(data)
            self._cmd_octets += len(data)

    def _complete(self, events: list[Event]) -> None:
        if self._bad is not None:
            self._refuse(events, b"BAD", None, self._bad)
            return
        unit = CommandUnit(tuple(self._lines), tuple(self._literals))
        barrier = len(self._lines) == 1 and _peek_name(self._lines[0]) in BARRIER_COMMANDS
        self._reset_command()
        events.append(CommandReady(unit))
        if barrier:
            self._state = _PAUSED

    def _refuse_literal(
        self,
        events: list[Event],
        nonsync: bool,
        status: Literal[b"BAD", b"NO"],
        code: bytes | None,
        text: str,
    ) -> None:
        if nonsync:
            # The octets are already on their way and we will not read them (module docstring).
            self._fatal(events, b"BAD", code, text)
        else:
            self._refuse(events, status, code, text)

    def _refuse(
        self, events: list[Event], status: Literal[b"BAD", b"NO"], code: bytes | None, text: str
    ) -> None:
        tag = self._tag
        self._drop_command()
        self._state = _LINE
        events.append(FramingError(tag, status, code if tag else None, text, fatal=False))

    def _fatal(
        self, events: list[Event], status: Literal[b"BAD", b"NO"], code: bytes | None, text: str
    ) -> None:
        tag = self._tag
        self._drop_command()
        events.append(FramingError(tag, status, code if tag else None, text, fatal=True))
        self._state = _CLOSED
        self._buf.clear()
        self._pos = 0
