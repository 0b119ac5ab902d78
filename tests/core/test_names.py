"""Mailbox name validation, hierarchy and LIST pattern matching (RELIABILITY.md §7 case 14)."""

from __future__ import annotations

import re
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.names import (
    INBOX,
    MAX_LEVELS,
    MAX_NAME_OCTETS,
    MailboxName,
    is_below,
    mailbox_name,
    match_pattern,
    parent_of,
    parents,
)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "Mailbox name is empty"),
        ("../x", "Mailbox name has a '.' or '..' hierarchy level"),
        ("a/../b", "Mailbox name has a '.' or '..' hierarchy level"),
        ("./x", "Mailbox name has a '.' or '..' hierarchy level"),
        ("a/..", "Mailbox name has a '.' or '..' hierarchy level"),
        ("/x", "Mailbox name starts with the hierarchy delimiter '/'"),
        ("/", "Mailbox name starts with the hierarchy delimiter '/'"),
        ("x/", "Mailbox name ends with the hierarchy delimiter '/'"),
        ("a//b", "Mailbox name has an empty hierarchy level ('//')"),
        ("/".join(["l"] * 1000), f"Mailbox name has more than {MAX_LEVELS} hierarchy levels"),
        ("/".join(["l"] * (MAX_LEVELS + 1)), "Mailbox name has more than 32 hierarchy levels"),
        ("x" * 65536, f"Mailbox name is longer than {MAX_NAME_OCTETS} octets"),
        ("x" * 256, "Mailbox name is longer than 255 octets"),
        ("é" * 128, "Mailbox name is longer than 255 octets"),
        ("a\x00b", "Mailbox name contains the control character U+0000"),
        ("\x00", "Mailbox name contains the control character U+0000"),
        ("a\nb", "Mailbox name contains the control character U+000A"),
        ("a\x7f", "Mailbox name contains the control character U+007F"),
        ("a\x85", "Mailbox name contains the control character U+0085"),
        ("a\udc80b", "Mailbox name is not valid UTF-8 (it contains a lone surrogate)"),
        ("\ud800", "Mailbox name is not valid UTF-8 (it contains a lone surrogate)"),
    ],
    ids=lambda v: v[:20] if isinstance(v, str) else v,
)
def test_malformed_names_are_refused_with_their_reason(raw: str, reason: str) -> None:
    """Every malformed name is PARAMS, and the text names the one reason."""
    with pytest.raises(StoreError) as info:
        mailbox_name(raw)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == reason


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("INBOX", "INBOX"),
        ("inbox", "INBOX"),
        ("Inbox", "INBOX"),
        ("inbox/Sub", "INBOX/Sub"),
        ("iNbOx/a/b", "INBOX/a/b"),
        ("Work/inbox", "Work/inbox"),
        ("inboxes", "inboxes"),
        ("ınbox", "ınbox"),  # dotless i: not an ASCII case of INBOX
        ("a" * MAX_NAME_OCTETS, "a" * MAX_NAME_OCTETS),
        ("/".join(["l"] * MAX_LEVELS), "/".join(["l"] * MAX_LEVELS)),
        ("50% off", "50% off"),
        ("a.b/..c/...", "a.b/..c/..."),
        (" spaced ", " spaced "),
    ],
)
def test_valid_names_come_back_canonical(raw: str, canonical: str) -> None:
    """INBOX is upper case as the first level in any ASCII case; everything else is kept."""
    assert mailbox_name(raw) == canonical


def test_nfc_and_nfd_spellings_are_the_same_mailbox() -> None:
    """Names equal after Unicode NFC normalisation validate to the same canonical name."""
    nfc = "Caf\u00e9/R\u00e9sum\u00e9"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert mailbox_name(nfd) == mailbox_name(nfc) == nfc


def test_hangul_is_composed() -> None:
    """Decomposed Hangul jamo compose into syllables (NFC), so the name is shorter stored."""
    nfd = unicodedata.normalize("NFD", "한국어")
    assert mailbox_name(nfd) == "한국어"


def test_octet_limit_applies_after_normalisation() -> None:
    """A NFD name over the limit whose NFC form fits is accepted (the stored form counts)."""
    nfd = unicodedata.normalize("NFD", "é") * 100  # 300 octets in NFD, 200 in NFC
    assert len(nfd.encode()) > MAX_NAME_OCTETS
    assert mailbox_name(nfd) == "é" * 100


def test_compatibility_forms_are_not_folded() -> None:
    """Only canonical equivalence applies: the ligature 'ﬁ' stays distinct from 'fi'."""
    assert mailbox_name("\ufb01le") != mailbox_name("file")


def test_parent_of_and_parents() -> None:
    """parent_of gives the next level up; parents lists every ancestor, outermost first."""
    name = mailbox_name("a/b/c")
    assert parent_of(name) == "a/b"
    assert parent_of(mailbox_name("a")) is None
    assert parents(name) == ["a", "a/b"]
    assert parents(mailbox_name("top")) == []
    assert parents(mailbox_name("inbox/x/y")) == [INBOX, "INBOX/x"]


def test_is_below_needs_a_delimiter_boundary() -> None:
    """``ab`` is not below ``a``; ``a/b`` is; nothing is below itself."""
    a = MailboxName("a")
    assert is_below(MailboxName("a/b"), a)
    assert is_below(MailboxName("a/b/c"), a)
    assert not is_below(MailboxName("ab"), a)
    assert not is_below(a, a)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a/b/c", True),
        ("%", "a", True),
        ("%", "a/b", False),
        ("%/%", "a/b", True),
        ("a/%", "a/b/c", False),
        ("a/*", "a/b/c", True),
        ("a*", "a", True),
        ("a%", "abc", True),
        ("a%c", "a/c", False),
        ("a*c", "a/c", True),
        ("", "", True),
        ("", "a", False),
        ("a", "", False),
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("Abc", "abc", False),  # only INBOX is case-insensitive
        ("%%%", "abc", True),
        ("*%*", "a/b", True),
        ("%*", "a/b", True),
        ("*/%", "a/b/c", True),
        ("inbox", "INBOX", True),
        ("InBoX", "INBOX", True),
        ("inb*", "INBOX", True),
        ("i%x", "INBOX", True),
        ("inbox/%", "INBOX/Sub", True),
        ("inbox/sub", "INBOX/Sub", False),  # below INBOX names keep their case
        ("work/inbox", "Work/inbox", False),
        ("inbox", "INBOXES", False),
        ("%", "INBOX", True),
        ("INBOX", "inbox", True),  # a non-canonical name still folds
        (unicodedata.normalize("NFD", "Caf\u00e9"), "Caf\u00e9", True),
    ],
)
def test_list_wildcards(pattern: str, name: str, expected: bool) -> None:
    """``*`` crosses the delimiter, ``%`` does not; INBOX's first level folds case."""
    assert match_pattern(pattern, name) is expected


def _reference_match(pattern: str, name: str) -> bool:
    """A slow oracle: the same language as a regular expression (fine on tiny inputs)."""
    parts = [".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern]
    return re.fullmatch("".join(parts), name, re.DOTALL) is not None


@given(st.text(alphabet="ab/*%", max_size=8), st.text(alphabet="ab/", max_size=8))
def test_matcher_agrees_with_a_regex_oracle(pattern: str, name: str) -> None:
    """On small inputs the linear matcher gives exactly the regex semantics."""
    assert match_pattern(pattern, name) is _reference_match(pattern, name)


def test_pathological_pattern_is_linear() -> None:
    """A pattern that makes backtracking matchers exponential finishes at once (CPU time:
    other test workers share the cores)."""
    name = "a" * 100_000
    start = time.process_time()
    assert not match_pattern("*a*a*a*a*a*a*a*b", name)
    assert not match_pattern("%a%a%a%a%a%a%a%b", name)
    assert match_pattern("*a*a*a*a*a*a*a*", name)
    long_pattern = "*a" * 2000 + "b"
    assert not match_pattern(long_pattern, "a" * MAX_NAME_OCTETS)
    assert time.process_time() - start < 2.0
