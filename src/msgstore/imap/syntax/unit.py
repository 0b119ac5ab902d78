"""The command unit: what the framer hands to the syntax layer.

A command unit is one complete IMAP command as it arrived: its lines (without line terminators)
and, for every literal announced at the end of a line, the literal's octets. Small literals are
``bytes``; literals above the framer's spill threshold were written to a temporary file while
they arrived and are handed over as a :class:`LiteralFile` reference, so a 50 MiB APPEND never
sits in memory.

    lines[0]  literals[0]  lines[1]  literals[1]  ...  lines[-1]

Every line but the last ends with its literal marker (``{5}``, ``{5+}`` or ``~{5}``), kept
verbatim so the tokenizer can check where the literal stands. These are values only: nothing
here opens or deletes a file (the framer owns the spill files; ``msgstore.imap.framer``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LiteralFile:
    """A literal that was spilled to a temporary file.

    The file belongs to whoever holds the command unit: the session deletes it with
    ``msgstore.imap.framer.discard_unit`` once the command is done (APPEND may instead move
    its content into the store).
    """

    path: str
    size_octets: int


#: One literal's content: in memory, or a reference to its spill file.
LiteralData = bytes | LiteralFile


@dataclass(frozen=True, slots=True)
class CommandUnit:
    """One complete command: ``len(lines) == len(literals) + 1``."""

    lines: tuple[bytes, ...]
    literals: tuple[LiteralData, ...] = ()

    def __post_init__(self) -> None:
        if len(self.lines) != len(self.literals) + 1:
            raise ValueError("a command unit has exactly one more line than literals")

    @property
    def size_octets(self) -> int:
        """Octets of lines (without terminators) and literals."""
        total = sum(len(line) for line in self.lines)
        for lit in self.literals:
            total += lit.size_octets if isinstance(lit, LiteralFile) else len(lit)
        return total

    def spilled(self) -> tuple[LiteralFile, ...]:
        """The literals of this unit that live in temporary files."""
        return tuple(lit for lit in self.literals if isinstance(lit, LiteralFile))

    @classmethod
    def of_line(cls, line: bytes) -> CommandUnit:
        """A unit of a single line without literals (tests, IDLE's DONE, SASL responses)."""
        return cls((line,), ())
