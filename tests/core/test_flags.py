"""Flags and keywords (RFC 9051 §2.3.2): validation, STORE semantics, stored form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.flags import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SYSTEM_FLAGS,
    FlagOp,
    apply_flag_op,
    from_storage,
    keywords_of,
    normalize_flag,
    normalize_flags,
    system_bits,
)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("\\Seen", SEEN),
        ("\\SEEN", SEEN),
        ("\\seen", SEEN),
        ("\\answered", ANSWERED),
        ("\\FLAGGED", FLAGGED),
        ("\\Deleted", DELETED),
        ("\\dRaFt", DRAFT),
        ("$Forwarded", "$Forwarded"),
        ("$junk", "$junk"),
        ("NonJunk", "NonJunk"),
        ("a.b-c_d!#&'+", "a.b-c_d!#&'+"),
        ("x" * 255, "x" * 255),
    ],
)
def test_storable_flags(raw: str, canonical: str) -> None:
    """System flags fold to canonical case; keywords keep the case given."""
    assert normalize_flag(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "Flag is empty"),
        ("\\Recent", "Flag \\Recent is set by the server and cannot be stored"),
        ("\\RECENT", "Flag \\Recent is set by the server and cannot be stored"),
        ("\\Junk", "Flag '\\\\Junk' is not a system flag that can be stored"),
        ("\\*", "Flag '\\\\*' is not a system flag that can be stored"),
        ("x" * 256, "Keyword is longer than 255 octets"),
        ("a b", "Keyword contains the control character or space U+0020"),
        ("a\x00", "Keyword contains the control character or space U+0000"),
        ("a\x7f", "Keyword contains the control character or space U+007F"),
        ("é", "Keyword contains the non-ASCII character U+00E9; keywords are atoms"),
        ("a\udc80", "Keyword contains the non-ASCII character U+DC80; keywords are atoms"),
        ("\ud800", "Keyword contains the non-ASCII character U+D800; keywords are atoms"),
        ("a(", "Keyword contains '(', which is not allowed in an atom"),
        ("a)", "Keyword contains ')', which is not allowed in an atom"),
        ("a{", "Keyword contains '{', which is not allowed in an atom"),
        ("a%", "Keyword contains '%', which is not allowed in an atom"),
        ("a*", "Keyword contains '*', which is not allowed in an atom"),
        ('a"', "Keyword contains '\"', which is not allowed in an atom"),
        ("a\\", "Keyword contains '\\\\', which is not allowed in an atom"),
        ("a]", "Keyword contains ']', which is not allowed in an atom"),
    ],
)
def test_unstorable_flags_are_refused(raw: str, reason: str) -> None:
    """\\Recent, unknown system flags and non-atoms are PARAMS with the reason."""
    with pytest.raises(StoreError) as info:
        normalize_flag(raw)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == reason


def test_case_duplicates_collapse_to_the_first_spelling() -> None:
    """``\\SEEN`` and ``\\Seen`` are one flag; ``$Junk`` then ``$JUNK`` keeps ``$Junk``."""
    assert normalize_flags(["\\SEEN", "\\Seen", "$Junk", "$JUNK"]) == {SEEN, "$Junk"}


def test_a_single_string_is_not_a_flag_list() -> None:
    """Passing a str (which iterates letters) is a TypeError, not flags 'S', 'e'..."""
    with pytest.raises(TypeError):
        normalize_flags("\\Seen")


@pytest.mark.parametrize(
    ("current", "op", "given", "expected"),
    [
        ({SEEN}, FlagOp.REPLACE, {FLAGGED}, {FLAGGED}),
        ({SEEN}, FlagOp.ADD, {FLAGGED}, {SEEN, FLAGGED}),
        ({SEEN, FLAGGED}, FlagOp.REMOVE, {SEEN}, {FLAGGED}),
        ({"$Junk"}, FlagOp.ADD, {"$junk"}, {"$Junk"}),
        ({"$Junk", SEEN}, FlagOp.REMOVE, {"$JUNK"}, {SEEN}),
        (set(), FlagOp.REMOVE, {SEEN}, set()),
    ],
)
def test_store_operations_are_case_insensitive(
    current: set[str], op: FlagOp, given: set[str], expected: set[str]
) -> None:
    """+FLAGS/-FLAGS compare keywords case-insensitively and keep the stored spelling."""
    assert apply_flag_op(frozenset(current), op, frozenset(given)) == expected


def test_stored_form_round_trips() -> None:
    """system_bits + keywords_of, joined by spaces, rebuild the same flag set."""
    flags = normalize_flags([SEEN, DRAFT, "$Forwarded", "Work"])
    bits = system_bits(flags)
    assert bits == 0b10001
    assert keywords_of(flags) == ["$Forwarded", "Work"]
    assert from_storage(bits, " ".join(keywords_of(flags))) == flags


def test_stored_keywords_tolerate_extra_spaces() -> None:
    """A stored keyword string with doubled or edge spaces yields no empty keyword."""
    assert from_storage(0, " a  b ") == {"a", "b"}
    assert from_storage(0, None) == frozenset()
    assert from_storage(0, "") == frozenset()


def test_each_system_flag_has_its_own_bit() -> None:
    """The five storable system flags map to five distinct bits; \\Recent is not among them."""
    bits = [system_bits(frozenset({f})) for f in SYSTEM_FLAGS]
    assert sorted(bits) == [1, 2, 4, 8, 16]
    assert "\\Recent" not in SYSTEM_FLAGS


keyword = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='(){%*"\\]'),
    min_size=1,
    max_size=20,
)


@given(st.lists(st.one_of(keyword, st.sampled_from(SYSTEM_FLAGS)), max_size=8))
def test_any_valid_flag_set_round_trips_through_storage(flags: list[str]) -> None:
    """Every normalised flag set survives the stored form unchanged."""
    normal = normalize_flags(flags)
    assert from_storage(system_bits(normal), " ".join(keywords_of(normal))) == normal
