"""RFC 4314 rights: parsing, the effective-rights algebra, identifiers, LISTRIGHTS."""

from __future__ import annotations

import pytest

from msgstore.core.acl import (
    ALL_RIGHTS,
    ANYONE,
    AUTHENTICATED,
    ListRights,
    Rights,
    effective_rights,
    listrights,
    modify_rights,
    validate_identifier,
)
from msgstore.core.errors import ErrorKind, StoreError


def r(text: str) -> Rights:
    return Rights.parse(text)


# --- Rights ---------------------------------------------------------------------------


def test_str_is_canonical_order_without_duplicates() -> None:
    """Rights print in RFC 4314 order whatever order they were given in."""
    assert str(r("aetxkpiwsrl")) == ALL_RIGHTS
    assert str(r("rrl")) == "lr"
    assert str(r("")) == ""


def test_obsolete_c_and_d_expand_on_input() -> None:
    """RFC 4314 §2.1.1: ``c`` means ``k x`` and ``d`` means ``t e``."""
    assert str(r("c")) == "kx"
    assert str(r("d")) == "te"
    assert str(r("lrswida")) == "lrswitea"


def test_response_form_adds_virtual_c_and_d() -> None:
    """MYRIGHTS/ACL responses carry ``c`` if any of k x, and ``d`` if any of t e."""
    assert r("lr").for_response() == "lr"
    assert r("lrk").for_response() == "lrkc"
    assert r("x").for_response() == "xc"
    assert r("e").for_response() == "ed"
    assert Rights.all().for_response() == "lrswipkxteacd"


@pytest.mark.parametrize("bad", ["L", "z", "1", " ", "l r", "\x00"])
def test_unknown_rights_are_refused(bad: str) -> None:
    """RFC 4314 §3.1: an unrecognised right is an error, never silently ignored."""
    with pytest.raises(StoreError) as info:
        Rights.parse(bad)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public.startswith("Unknown access right ")
    assert info.value.public.endswith("(the rights are l r s w i p k x t e a)")


def test_constructor_refuses_letters_outside_rfc_4314() -> None:
    """Building Rights directly with a bad letter is a programming error."""
    with pytest.raises(ValueError, match="not RFC 4314 rights"):
        Rights(frozenset("lc"))


def test_set_operations() -> None:
    """``|`` unites, ``-`` removes, ``&`` intersects, ``<=`` is subset, ``in`` tests one right."""
    assert r("lr") | r("rs") == r("lrs")
    assert r("lrs") - r("r") == r("ls")
    assert r("lrs") & r("rsw") == r("rs")
    assert r("lr") <= r("lrs")
    assert not r("lrw") <= r("lrs")
    assert "l" in r("lr")
    assert "w" not in r("lr")
    assert not Rights()
    assert r("l")
    assert Rights.all() == r(ALL_RIGHTS)


@pytest.mark.parametrize(
    ("current", "change", "expected"),
    [
        ("lr", "+w", "lrw"),
        ("lrw", "-w", "lr"),
        ("lrw", "s", "s"),
        ("lrw", "", ""),
        ("lrw", "-", "lrw"),
        ("lr", "+d", "lrte"),
        ("lrkx", "-c", "lr"),
    ],
)
def test_setacl_modifications(current: str, change: str, expected: str) -> None:
    """SETACL ``+`` adds, ``-`` removes, a bare string replaces (RFC 4314 §3.1)."""
    assert modify_rights(r(current), change) == r(expected)


# --- effective rights -------------------------------------------------------------------


def test_anyone_and_authenticated_and_user_rights_unite() -> None:
    """A user holds the union of anyone's, authenticated's and their own rights."""
    acl = {ANYONE: r("l"), AUTHENTICATED: r("r"), "alice": r("s")}
    assert str(effective_rights(acl, "alice")) == "lrs"
    assert str(effective_rights(acl, "bob")) == "lr"


def test_anonymous_sessions_get_anyone_only() -> None:
    """Without authentication the ``authenticated`` entry does not apply."""
    acl = {ANYONE: r("l"), AUTHENTICATED: r("r")}
    assert str(effective_rights(acl, "anonymous", authenticated=False)) == "l"


def test_groups_contribute_rights() -> None:
    """Rights given to a group the user belongs to are granted."""
    acl = {"staff": r("lri")}
    assert str(effective_rights(acl, "alice", groups=["staff"])) == "lri"
    assert str(effective_rights(acl, "alice")) == ""


def test_negative_rights_override_positive_ones() -> None:
    """``-user`` removes rights that anyone/authenticated/the user were granted."""
    acl = {ANYONE: r("lr"), "alice": r("w"), "-alice": r("rw")}
    assert str(effective_rights(acl, "alice")) == "l"
    assert str(effective_rights(acl, "bob")) == "lr"


def test_negative_anyone_removes_from_everybody() -> None:
    """``-anyone`` and ``-authenticated`` take rights from every (authenticated) user."""
    acl = {"alice": r("lrw"), "-anyone": r("w"), "-authenticated": r("r")}
    assert str(effective_rights(acl, "alice")) == "l"
    assert str(effective_rights(acl, "alice", authenticated=False)) == "lr"


def test_negative_group_rights_apply() -> None:
    """A negative right of a group the user is in removes that right."""
    acl = {"alice": r("lrw"), "-interns": r("w")}
    assert str(effective_rights(acl, "alice", groups=["interns"])) == "lr"


def test_owner_holds_every_right_whatever_the_acl() -> None:
    """The owner holds l r s w i p k x t e a on their tree, even against negative rights."""
    acl = {"-alice": Rights.all(), "-anyone": Rights.all()}
    assert effective_rights(acl, "alice", is_owner=True) == Rights.all()


def test_admin_always_holds_administer() -> None:
    """An admin holds ``a`` everywhere, even with ``-admin a``, and nothing more by it."""
    acl = {ANYONE: r("l"), "-root": r("a")}
    assert str(effective_rights(acl, "root", is_admin=True)) == "la"
    assert str(effective_rights({}, "root", is_admin=True)) == "a"


def test_empty_acl_grants_nothing() -> None:
    """No entries, not owner, not admin: no rights (the mailbox is invisible)."""
    assert not effective_rights({}, "alice")


# --- identifiers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("alice", "alice"),
        ("alice@example.org", "alice@example.org"),
        ("-alice", "-alice"),
        ("anyone", "anyone"),
        ("Anyone", "anyone"),
        ("-AUTHENTICATED", "-authenticated"),
        ("Jürgen", "Jürgen"),
        ("a" * 255, "a" * 255),
    ],
)
def test_valid_identifiers(raw: str, canonical: str) -> None:
    """User names pass as given; the special identifiers fold to lower case."""
    assert validate_identifier(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "ACL identifier is empty"),
        ("-", "ACL identifier is empty"),
        ("--alice", "ACL identifier may start with only one '-'"),
        ("al ice", "ACL identifier contains a space"),
        ("al\u3000ice", "ACL identifier contains a space"),
        ("al\x00ice", "ACL identifier contains the control character U+0000"),
        ("al\nice", "ACL identifier contains the control character U+000A"),
        ("a\udc80", "ACL identifier is not valid UTF-8"),
        ("a" * 256, "ACL identifier is longer than 255 octets"),
    ],
)
def test_invalid_identifiers(raw: str, reason: str) -> None:
    """Malformed identifiers are PARAMS with the reason."""
    with pytest.raises(StoreError) as info:
        validate_identifier(raw)
    assert info.value.kind is ErrorKind.PARAMS
    assert info.value.public == reason


# --- LISTRIGHTS -------------------------------------------------------------------------


def test_listrights_for_a_plain_identifier() -> None:
    """Nothing is required, every right is optional on its own, then virtual c and d."""
    result = listrights("bob")
    assert result == ListRights(
        "", ("l", "r", "s", "w", "i", "p", "k", "x", "t", "e", "a", "c", "d")
    )
    assert result.words() == ("", *"lrswipkxteacd")
    assert listrights(ANYONE) == result
    assert listrights("-bob", is_owner=True) == result


def test_listrights_never_lists_a_right_twice() -> None:
    """RFC 4314 §3.7: the same right must not appear more than once."""
    for result in (
        listrights("x"),
        listrights("x", is_admin=True),
        listrights("x", is_owner=True),
    ):
        letters = "".join(result.words())
        assert len(letters) == len(set(letters))


def test_listrights_for_the_owner_requires_everything() -> None:
    """The owner always holds every right, so all are required and none optional."""
    assert listrights("alice", is_owner=True) == ListRights("lrswipkxteacd", ())


def test_listrights_for_an_admin_requires_administer() -> None:
    """An admin always holds ``a``; the rest stays grantable."""
    result = listrights("root", is_admin=True)
    assert result.required == "a"
    assert "a" not in result.optional
    assert result.optional[:10] == tuple("lrswipkxte")
