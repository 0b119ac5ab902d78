"""SMTP envelope addresses (RFC 5321 §4.1.2): strict parsing and canonical form."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstore.core.address import (
    MAX_LOCAL_OCTETS,
    MAX_PATH_OCTETS,
    Address,
    parse_address,
    parse_reverse_path,
)
from msgstore.core.errors import ErrorKind, StoreError


@pytest.mark.parametrize(
    ("text", "local", "domain", "canonical"),
    [
        ("user@example.org", "user", "example.org", "user@example.org"),
        ("<user@example.org>", "user", "example.org", "user@example.org"),
        ("User.Name@Example.ORG", "User.Name", "example.org", "User.Name@example.org"),
        ("a+tag@x.example", "a+tag", "x.example", "a+tag@x.example"),
        ("!#$%&'*+-/=?^_`{|}~@x", "!#$%&'*+-/=?^_`{|}~", "x", "!#$%&'*+-/=?^_`{|}~@x"),
        ('"john"@x.example', "john", "x.example", "john@x.example"),
        ('"john.doe"@x', "john.doe", "x", "john.doe@x"),
        ('"john doe"@x', "john doe", "x", '"john doe"@x'),
        ('"a..b"@x', "a..b", "x", '"a..b"@x'),
        ('".a"@x', ".a", "x", '".a"@x'),
        ('"a\\"b"@x', 'a"b', "x", '"a\\"b"@x'),
        ('"a\\\\b"@x', "a\\b", "x", '"a\\\\b"@x'),
        ('"\\a\\b"@x', "ab", "x", "ab@x"),
        ('"a@b"@x', "a@b", "x", '"a@b"@x'),
        ("<@relay.example:user@x>", "user", "x", "user@x"),
        ("<@r1.example,@r2.example:user@x>", "user", "x", "user@x"),
        ("u@[192.0.2.1]", "u", "[192.0.2.1]", "u@[192.0.2.1]"),
        ("u@[192.000.002.001]", "u", "[192.0.2.1]", "u@[192.0.2.1]"),
        ("u@[IPv6:2001:DB8:0:0::1]", "u", "[IPv6:2001:db8::1]", "u@[IPv6:2001:db8::1]"),
        ("u@[ipv6:::ffff:192.0.2.1]", "u", "[IPv6:::ffff:c000:201]", "u@[IPv6:::ffff:c000:201]"),
        ("u@localhost", "u", "localhost", "u@localhost"),
        ("u@a-b.c0", "u", "a-b.c0", "u@a-b.c0"),
        ("u@xn--bcher-kva.example", "u", "xn--bcher-kva.example", "u@xn--bcher-kva.example"),
    ],
)
def test_valid_addresses(text: str, local: str, domain: str, canonical: str) -> None:
    """Dot-strings, quoted strings, literals and routes parse to (local, domain, canonical)."""
    address = parse_address(text)
    assert (address.local, address.domain, str(address)) == (local, domain, canonical)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "Address is empty"),
        ("<>", "Address is empty (the null reverse-path <> is not a mailbox)"),
        ('""@x', "Address has an empty local part"),
        ("@x", "Address starts with '@' (a source route is only allowed in '<...>')"),
        ("<@x>", "Address has a source route without the closing ':'"),
        ("<@r1,r2:u@x>", "Address source route has an element that does not start with '@'"),
        ("<@[192.0.2.1]:u@x>", "Address source route may name domains only, not address literals"),
        ("<@r1..x:u@x>", "Address domain has an empty label ('..', or a leading or trailing '.')"),
        ("<:u@x>", "Address local part contains ':', which is only allowed when quoted"),
        ("user", "Address has no '@' and domain"),
        ("user@", "Address has an empty domain"),
        ("<user@x", "Address has '<' without a closing '>'"),
        ("<", "Address has '<' without a closing '>'"),
        ("user@x>", "Address has '>' without an opening '<'"),
        ('"abc@x', "Address has a quoted local part without the closing '\"'"),
        ('"abc\\', "Address has a quoted local part without the closing '\"'"),
        ('"a"b@x', "Address has characters between the closing '\"' and the '@'"),
        ('a"b@x', "Address local part contains '\"', which is only allowed when quoted"),
        ("a b@x", "Address local part contains ' ', which is only allowed when quoted"),
        ("a(b)@x", "Address local part contains '(', which is only allowed when quoted"),
        (
            "a..b@x",
            "Address local part has an empty part between dots "
            "('..', or a leading or trailing '.'); such a local part must be quoted",
        ),
        (
            ".a@x",
            "Address local part has an empty part between dots "
            "('..', or a leading or trailing '.'); such a local part must be quoted",
        ),
        (
            "a.@x",
            "Address local part has an empty part between dots "
            "('..', or a leading or trailing '.'); such a local part must be quoted",
        ),
        ("a\x00b@x", "Address contains the control character U+0000"),
        ("a@x\r\n", "Address contains the control character U+000D"),
        ('"a\tb"@x', "Address contains the control character U+0009"),
        ("a@x\x85", "Address contains the control character U+0085"),
        ("a\udc80@x", "Address is not valid UTF-8"),
        ("jörg@x", "Address contains non-ASCII characters, which need SMTPUTF8"),
        ("u@bücher.example", "Address contains non-ASCII characters, which need SMTPUTF8"),
        ("u@@x", "Address domain contains '@'; a domain has letters, digits, '-' and '.'"),
        ("u@x_y", "Address domain contains '_'; a domain has letters, digits, '-' and '.'"),
        ("u@x.", "Address domain has an empty label ('..', or a leading or trailing '.')"),
        ("u@.x", "Address domain has an empty label ('..', or a leading or trailing '.')"),
        ("u@-x.example", "Address domain has a label that starts or ends with '-'"),
        ("u@x-.example", "Address domain has a label that starts or ends with '-'"),
        ("u@" + "a" * 64 + ".example", "Address domain has a label longer than 63 octets"),
        ("u@[192.0.2.1", "Address literal has '[' without a closing ']'"),
        ("u@[192.0.2.256]", "Address literal is not a valid IPv4 address"),
        ("u@[192.0.2]", "Address literal is not a valid IPv4 address"),
        ("u@[1.2.3.0004]", "Address literal is not a valid IPv4 address"),
        ("u@[]", "Address literal is not a valid IPv4 address"),
        ("u@[IPv6:1::2::3]", "Address literal is not a valid IPv6 address"),
        ("u@[IPv6:fe80::1%eth0]", "Address IPv6 literal may not have a zone ('%')"),
        (
            "u@[x400:abc]",
            "Address literal has an unsupported tag (only IPv4 and 'IPv6:' literals are known)",
        ),
        ("a" * 65 + "@x", f"Address local part is longer than {MAX_LOCAL_OCTETS} octets"),
        ('"' + "a" * 63 + '"@x', "Address local part is longer than 64 octets"),
        (
            "a" * 60 + "@" + ".".join(["b" * 63] * 3) + ".cc",
            f"Address is longer than {MAX_PATH_OCTETS} octets",
        ),
        ("x" * 10_000, "Address is longer than 256 octets"),
    ],
)
def test_invalid_addresses_are_refused_with_their_reason(text: str, reason: str) -> None:
    """Every malformed address is PARAMS and the text names the reason."""
    with pytest.raises(StoreError) as info:
        parse_address(text)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == reason


def test_limits_are_inclusive() -> None:
    """A 64-octet local part and a path of exactly 256 octets are accepted."""
    assert parse_address("a" * 64 + "@x").local == "a" * 64
    domain = ".".join(["b" * 63, "c" * 63, "d" * 63, "e" * 57])  # 249 octets
    path = "<" + "a" * 4 + "@" + domain + ">"
    assert len(path) == 256
    assert parse_address(path).domain == domain


def test_path_limit_counts_the_route() -> None:
    """The 256-octet path limit includes an ignored source route."""
    mailbox = "u" * 60 + "@" + "d" * 63 + "." + "d" * 63  # 188 octets

    def path(route_octets: int) -> str:
        route_domain = "r" * 30 + "." + "r" * (route_octets - 31)
        return "<@" + route_domain + ":" + mailbox + ">"

    assert len(path(64)) == MAX_PATH_OCTETS
    assert parse_address(path(64)).local == "u" * 60
    with pytest.raises(StoreError, match="longer than 256 octets"):
        parse_address(path(65))


def test_utf8_needs_smtputf8() -> None:
    """With SMTPUTF8 non-ASCII local parts and domains are accepted and normalised."""
    address = parse_address("Jörg@Bücher.Example", smtputf8=True)
    assert address.local == "Jörg"
    assert address.domain == "bücher.example"
    assert address.lower_local == "jörg"
    assert address.needs_smtputf8
    assert str(address) == "Jörg@bücher.example"
    decomposed = parse_address("Jo\u0308rg@x", smtputf8=True)
    assert decomposed.lower_local == "jörg"
    assert not parse_address("a@b").needs_smtputf8


def test_utf8_domain_refuses_symbols() -> None:
    """A U-label may hold letters, marks and digits, not spaces or symbols."""
    with pytest.raises(StoreError) as info:
        parse_address("u@a\u00a0b.example", smtputf8=True)
    assert info.value.public == (
        "Address domain contains '\\xa0'; a domain has letters, digits, '-' and '.'"
    )


def test_quoted_and_unquoted_forms_are_equal() -> None:
    """``"john"@x`` and ``john@x`` are one address; the quotes carry no meaning."""
    assert parse_address('"john"@X') == parse_address("john@x") == Address("john", "x")


def test_lower_local_and_literal_flags() -> None:
    """lower_local folds case for lookups; is_literal tells address literals apart."""
    address = parse_address("Alice@[192.0.2.1]")
    assert address.local == "Alice"
    assert address.lower_local == "alice"
    assert address.is_literal
    assert not parse_address("a@b").is_literal


def test_reverse_path_null_is_none() -> None:
    """MAIL FROM:<> is the null reverse-path; any other path is an address."""
    assert parse_reverse_path("<>") is None
    assert parse_reverse_path("<a@b>") == Address("a", "b")


def test_long_hostile_input_is_refused_at_once() -> None:
    """A megabyte of quotes or dots is refused without scanning it (CPU time of this process:
    other test workers share the cores)."""
    start = time.process_time()
    for text in ('"' * 1_000_000, "." * 1_000_000, "<" + "@a," * 300_000 + ">"):
        with pytest.raises(StoreError, match="longer than 256 octets"):
            parse_address(text)
    assert time.process_time() - start < 0.5


local_atom = st.text(alphabet="abcXYZ019!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=8)
dot_string = st.lists(local_atom, min_size=1, max_size=4).map(".".join)
quoted_local = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20
)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


@given(st.one_of(dot_string, quoted_local), domain)
def test_canonical_form_parses_back_to_the_same_address(local: str, dom: str) -> None:
    """str() of an address is itself a valid address equal to the original."""
    address = Address(local, dom)
    assert parse_address(str(address)) == address
