"""Consistency checks every parse result must pass, whatever the input (used by all tests)."""

from __future__ import annotations

from msgstore.mime import ParsedMessage, PartMap
from tests.mime.imapsyntax import Value, check_body, check_envelope, read


def check_partmap(data: bytes, partmap: PartMap) -> None:
    """Offsets inside the data, ordered, nested inside their parent, siblings disjoint."""
    size = len(data)
    parts = partmap.parts()
    assert parts, "a part map always has the whole message"
    whole = parts[0]
    assert whole.section == ()
    assert whole.header_start == 0
    assert whole.body_end == size
    prev_start = 0
    last_child_end: dict[tuple[int, ...], int] = {}
    for p in parts:
        assert 0 <= p.header_start <= p.header_end <= p.body_end <= size, p
        assert p.header_end <= p.inner_header_end <= p.body_end, p
        assert p.header_start >= prev_start, "parts are listed in document order"
        prev_start = p.header_start
        assert p.size == p.body_end - p.header_end
        assert p.lines == data.count(b"\n", p.header_end, p.body_end)
        assert p.content_type == p.content_type.lower()
        assert "/" in p.content_type
        if p.is_message:
            assert p.content_type in ("message/rfc822", "message/global")
        if not p.section:
            continue
        parent = partmap.part(p.section[:-1])
        assert parent is not None, f"{p.section} has no parent entry"
        assert parent.header_start <= p.header_start
        assert p.body_end <= parent.body_end
        if parent.section:
            assert p.header_start >= parent.header_end, (parent, p)
        key = p.section[:-1]
        if key in last_child_end:
            assert last_child_end[key] <= p.header_start, "siblings overlap"
        last_child_end[key] = p.body_end
    assert PartMap.from_bytes(partmap.to_bytes()) == partmap


def _check_sizes(structure: Value, partmap: PartMap) -> None:
    """Every body in BODYSTRUCTURE has the size and lines of its part map entry."""
    root = partmap.part(())
    assert root is not None
    start: tuple[int, ...] = () if root.content_type.startswith("multipart/") else (1,)
    todo: list[tuple[Value, tuple[int, ...]]] = [(structure, start)]
    while todo:
        item, section = todo.pop()
        assert isinstance(item, list)
        if isinstance(item[0], list):
            k = 0
            while isinstance(item[k], list):
                todo.append((item[k], (*section, k + 1)))
                k += 1
            continue
        part = partmap.part(section)
        if part is None:
            # The synthetic empty part of a multipart without body parts.
            assert item[6] == 0
            continue
        assert item[6] == part.size, (section, item[6], part)
        media = item[0]
        assert isinstance(media, bytes)
        if media == b"text":
            assert item[7] == part.lines
        if part.is_message:
            inner = item[8]
            assert isinstance(inner, list)
            todo.append((inner, section if isinstance(inner[0], list) else (*section, 1)))


def check_parsed(data: bytes, parsed: ParsedMessage) -> None:
    """The whole result is well-formed and agrees with the stored bytes."""
    check_partmap(data, parsed.partmap)
    check_envelope(read(parsed.envelope))
    check_body(read(parsed.body), extensible=False)
    structure = read(parsed.bodystructure)
    check_body(structure, extensible=True)
    _check_sizes(structure, parsed.partmap)
    for key, value in parsed.headers.items():
        assert key == key.lower(), key
        if key != "sent-date":  # ISO 8601 keeps its upper-case "T" and "Z"
            assert value == value.lower(), key
    assert all(isinstance(d, str) and d for d in parsed.defects)
