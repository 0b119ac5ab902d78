"""The part map: where every MIME part of a stored message lies, by IMAP section number.

One :class:`PartInfo` per section. Offsets index the stored (CRLF-normalised) message file.
How the IMAP layer answers each fetch item by offsets alone (``p = partmap.part(section)``):

============================  ==============================================================
``BODY[]``                     the whole file
``BODY[HEADER]``               ``data[p.header_start:p.header_end]`` with ``section == ()``
``BODY[TEXT]``                 ``data[p.header_end:p.body_end]`` with ``section == ()``
``BODY[n]``                    ``data[p.header_end:p.body_end]`` (for a message/rfc822 part,
                               the whole encapsulated message; for a multipart, its body)
``BODY[n.MIME]``               ``data[p.header_start:p.header_end]`` (for part 1 of a
                               non-multipart message this is the message header, RFC 9051
                               §6.4.5)
``BODY[n.HEADER]``             only when ``p.is_message``:
                               ``data[p.header_end:p.inner_header_end]``
``BODY[n.TEXT]``               only when ``p.is_message``:
                               ``data[p.inner_header_end:p.body_end]``
``BINARY[n]``, ``BINARY.SIZE``  decode ``data[p.header_end:p.body_end]`` by ``p.encoding``
                               (RFC 3516; refuse multipart/* and message/* parts with an
                               encoding other than 7bit/8bit/binary)
``<origin.octets>``            slice the range above
============================  ==============================================================

Section numbering (RFC 9051 §6.4.5): ``()`` is the whole message. A multipart's body parts are
``s + (1,)``, ``s + (2,)`` ...; a non-multipart message (top level or encapsulated) has its body
as part ``s + (1,)``; a message/rfc822 part ``s`` numbers the parts of the message it
encapsulates ``s + (1,)`` ... in the same way. A section with no entry does not exist.

Serialisation (:meth:`PartMap.to_bytes`) is a compact, versioned binary record; its format is
private to this module and covered by ``METADATA_VERSION`` in :mod:`msgstore.mime.parse`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from msgstore.core.errors import ErrorKind, StoreError

__all__ = ["PartInfo", "PartMap"]


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One MIME part: section number, offsets into the stored message, MIME facts."""

    section: tuple[int, ...]
    """``()`` = whole message; ``(1,)``, ``(1, 2)`` ... as in IMAP ``BODY[1.2]``."""
    header_start: int
    """Start of this part's header (its MIME header; the message header for ``()``)."""
    header_end: int
    """Just after the blank line ending the header; equal to the body start."""
    body_end: int
    """End of the body (the CRLF before a boundary belongs to the boundary, RFC 2046 §5.1.1)."""
    content_type: str
    """Lower-case ``type/subtype`` as used in BODYSTRUCTURE."""
    encoding: str
    """Lower-case Content-Transfer-Encoding, ``7bit`` when absent."""
    lines: int
    """Text lines of the body (BODYSTRUCTURE ``body-fld-lines``)."""
    charset: str | None
    """Lower-case charset parameter; ``us-ascii`` for text/* without one (RFC 2046 §4.1.2)."""
    is_message: bool
    """message/rfc822 or message/global whose inside was parsed: its parts nest below."""
    inner_header_end: int
    """For ``is_message`` parts: end of the encapsulated message's header (BODY[n.HEADER] ends
    here, BODY[n.TEXT] starts here). Otherwise equal to ``header_end``."""

    @property
    def body_start(self) -> int:
        """Start of the body (same as ``header_end``)."""
        return self.header_end

    @property
    def size(self) -> int:
        """Octets of the encoded body (BODYSTRUCTURE ``body-fld-octets``)."""
        return self.body_end - self.header_end


_MAGIC: Final[bytes] = b"PM\x01"
_HEAD: Final = struct.Struct("<3sII")  # magic+version, string count, part count
_STR: Final = struct.Struct("<H")
_PART: Final = struct.Struct("<QQQQIHHHBB")  # offsets x4, lines, 3 string refs, flags, depth
_NONE: Final[int] = 0xFFFF


class PartMap:
    """All parts of one message, looked up by section; compact serialisation."""

    __slots__ = ("_by_section", "_parts")

    def __init__(self, parts: Sequence[PartInfo]) -> None:
        self._parts: tuple[PartInfo, ...] = tuple(parts)
        self._by_section: dict[tuple[int, ...], PartInfo] = {p.section: p for p in self._parts}

    def part(self, section: tuple[int, ...]) -> PartInfo | None:
        """The part with this section number, or None when the message has no such part."""
        return self._by_section.get(section)

    def parts(self) -> Sequence[PartInfo]:
        """Every part in section order (depth first, as the parts appear in the message)."""
        return self._parts

    def __len__(self) -> int:
        return len(self._parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartMap) and self._parts == other._parts

    def __hash__(self) -> int:
        return hash(self._parts)

    def __repr__(self) -> str:
        return f"PartMap({len(self._parts)} parts)"

    def to_bytes(self) -> bytes:
        """Serialise (little-endian struct records with a string table)."""
        strings: dict[str, int] = {}

        def ref(value: str | None) -> int:
            if value is None:
                return _NONE
            index = strings.get(value)
            if index is None:
                index = strings[value] = len(strings)
            return index

        records: list[bytes] = []
        for p in self._parts:
            records.append(
                _PART.pack(
                    p.header_start,
                    p.header_end,
                    p.inner_header_end,
                    p.body_end,
                    p.lines,
                    ref(p.content_type),
                    ref(p.encoding),
                    ref(p.charset),
                    1 if p.is_message else 0,
                    len(p.section),
                )
            )
            records.append(struct.pack(f"<{len(p.section)}I", *p.section))
        table = b"".join(_STR.pack(len(raw)) + raw for raw in (s.encode("utf-8") for s in strings))
        return _HEAD.pack(_MAGIC, len(strings), len(self._parts)) + table + b"".join(records)

    @classmethod
    def from_bytes(cls, data: bytes) -> PartMap:
        """Read what :meth:`to_bytes` wrote.

        Raises:
            StoreError: CORRUPTED when ``data`` is not a part map of this format.
        """
        try:
            magic, nstrings, nparts = _HEAD.unpack_from(data, 0)
            if magic != _MAGIC:
                raise ValueError("bad magic")
            pos = _HEAD.size
            table: list[str] = []
            for _ in range(nstrings):
                (length,) = _STR.unpack_from(data, pos)
                pos += _STR.size
                raw = bytes(data[pos : pos + length])
                if len(raw) != length:
                    raise ValueError("truncated string")
                table.append(raw.decode("utf-8"))
                pos += length
            parts: list[PartInfo] = []
            for _ in range(nparts):
                hs, he, ihe, be, lines, ct, enc, cs, flags, depth = _PART.unpack_from(data, pos)
                pos += _PART.size
                section = struct.unpack_from(f"<{depth}I", data, pos)
                pos += 4 * depth
                parts.append(
                    PartInfo(
                        section=tuple(section),
                        header_start=hs,
                        header_end=he,
                        body_end=be,
                        content_type=table[ct],
                        encoding=table[enc],
                        lines=lines,
                        charset=None if cs == _NONE else table[cs],
                        is_message=bool(flags & 1),
                        inner_header_end=ihe,
                    )
                )
            if pos != len(data):
                raise ValueError("trailing bytes")
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise StoreError(
                ErrorKind.CORRUPTED, "stored part map is damaged", detail=str(exc)
            ) from exc
        return cls(parts)
