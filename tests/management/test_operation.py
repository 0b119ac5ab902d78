"""How operations are declared: the parameters every face derives, and the value types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_type

import pytest

from msgstore.core.accounts import AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import load_operations
from msgstore.management.accounts import AccountAdd, AccountModify, account_name
from msgstore.management.mailboxes import MailboxCreate, special_use
from msgstore.management.operation import (
    UNLIMITED,
    Limit,
    ManagementContext,
    Operation,
    Secret,
    octets_to_kib,
    operation,
    param,
    spec_of,
)


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2")
    op = AccountAdd(name="bob", password=secret)
    for text in (repr(secret), str(secret), repr(op), str(op)):
        assert "hunter2" not in text
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2")
    assert secret != Secret("other")


@pytest.mark.parametrize(
    ("text", "octets"),
    [("100M", 100 * 1024**2), ("1G", 1024**3), ("64K", 65536), ("1500", 1500)],
)
def test_limit_parses_sizes(text: str, octets: int) -> None:
    assert Limit.parse_size(text) == Limit(octets)


@pytest.mark.parametrize("text", ["unlimited", "UNLIMITED", "0", "none", " 0 "])
def test_limit_words_for_no_limit(text: str) -> None:
    assert Limit.parse_size(text) == UNLIMITED
    assert Limit.parse_count(text) == UNLIMITED


@pytest.mark.parametrize("text", ["12X", "", "-1", "1.5M", "K"])
def test_limit_refuses_bad_sizes(text: str) -> None:
    with pytest.raises(StoreError) as err:
        Limit.parse_size(text)
    assert err.value.kind is ErrorKind.PARAMS


@pytest.mark.parametrize("text", ["-3", "ten", "1e3", "١٢", "9" * 19])
def test_limit_refuses_bad_counts(text: str) -> None:
    with pytest.raises(StoreError) as err:
        Limit.parse_count(text)
    assert err.value.kind is ErrorKind.PARAMS


def test_storage_limits_round_up_to_kib() -> None:
    assert octets_to_kib(1) == 1
    assert octets_to_kib(1024) == 1
    assert octets_to_kib(1025) == 2
    assert octets_to_kib(None) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",
        ".",
        "..",
        ".x",
        "#x",
        "-x",
        "a\0b",
        "a\x7fb",
        "a\x85b",
        "a b",
        "a\\b",
        "x" * 256,
        "é" * 128,
        "Anyone",
        "\ud800",
    ],
)
def test_account_name_refuses(name: str) -> None:
    with pytest.raises(StoreError) as err:
        account_name(name)
    assert err.value.kind is ErrorKind.PARAMS
    assert err.value.public.startswith(("Account name", f"{name!r}"))


@pytest.mark.parametrize("name", ["bob", "bob@example.org", "x" * 255, "é" * 127, "a.b", "b-"])
def test_account_name_accepts(name: str) -> None:
    assert account_name(name) == name


def test_operations_validate_when_constructed() -> None:
    """Any face (CLI, REST, Python) gets the same PARAMS error from the constructor."""
    with pytest.raises(StoreError, match="'/'"):
        AccountAdd(name="a/b", password=Secret("pw"))
    with pytest.raises(StoreError, match="Password is empty"):
        AccountAdd(name="bob", password=Secret(""))
    with pytest.raises(StoreError, match="NUL, CR or LF"):
        AccountAdd(name="bob", password=Secret("a\nb"))
    with pytest.raises(StoreError, match="not valid UTF-8"):
        AccountAdd(name="bob", password=Secret("a\udc80b"))
    with pytest.raises(StoreError, match="empty hierarchy level"):
        MailboxCreate(user="bob", name="a//b")  # type: ignore[arg-type]


def test_mailbox_names_and_special_use_are_canonical() -> None:
    op = MailboxCreate(user="bob", name="inbox/Sub", special_use="sent")  # type: ignore[arg-type]
    assert (op.name, op.special_use) == ("INBOX/Sub", "\\Sent")
    assert special_use("") == ""
    with pytest.raises(StoreError):
        special_use("\\Spam")


def test_parameters_are_derived_from_fields() -> None:
    """Types, defaults, switches, choices and parsers come from the declaration."""
    params = {p.name: p for p in spec_of(AccountModify).params}
    assert params["name"].positional
    assert params["name"].required
    assert params["kind"].type is AccountKind
    assert params["kind"].optional
    assert params["kind"].choices == ("imap", "pop")
    assert params["kind"].parse("POP") is AccountKind.POP
    assert params["manager"].type is bool
    assert params["manager"].switch is None
    assert params["login_disabled"].switch == ("disable-login", "enable-login")
    assert params["quota"].parse("2K") == Limit(2048)
    assert params["quota"].default is None
    add = {p.name: p for p in spec_of(AccountAdd).params}
    assert add["password"].type is Secret
    assert add["password"].required
    assert add["quota"].default is None  # not given: [store] default_quota
    assert add["quota"].parse("unlimited") == UNLIMITED


def test_registry_names_every_operation() -> None:
    """The operations of this module set are all registered (others add their own)."""
    assert set(load_operations()) >= {
        "account add",
        "account delete",
        "account export",
        "account list",
        "account modify",
        "account reconstruct",
        "account rename",
        "account restore",
        "account search",
        "account show",
        "acl delete",
        "acl set",
        "acl show",
        "audit list",
        "mailbox create",
        "mailbox delete",
        "mailbox list",
        "mailbox rename",
        "mailbox status",
        "password reset",
        "password set",
        "public acl delete",
        "public acl set",
        "public acl show",
        "public create",
        "public delete",
        "public list",
        "public owner",
        "public quota set",
        "public quota show",
        "quota set",
        "quota show",
        "stats show",
    }
    assert load_operations()["account delete"].confirm
    assert load_operations()["public delete"].confirm
    assert not load_operations()["account add"].confirm


def test_a_field_without_param_metadata_is_refused() -> None:
    with pytest.raises(TypeError, match="no param"):

        @operation("test undocumented")
        @dataclass(frozen=True, slots=True)
        class Undocumented:
            name: str

            async def run(self, ctx: ManagementContext) -> None:
                return None


def test_a_mutable_dataclass_is_refused() -> None:
    with pytest.raises(TypeError, match="frozen dataclass"):

        @operation("test mutable")
        @dataclass(slots=True)
        class Mutable:
            name: str = field(metadata=param("x"))

            async def run(self, ctx: ManagementContext) -> None:
                return None


def test_an_unknown_type_needs_a_parser() -> None:
    with pytest.raises(TypeError, match="parse="):

        @operation("test untyped")
        @dataclass(frozen=True, slots=True)
        class Untyped:
            value: float = field(metadata=param("x"))

            async def run(self, ctx: ManagementContext) -> None:
                return None


def test_switch_is_only_for_optional_bools() -> None:
    with pytest.raises(TypeError, match="switch="):

        @operation("test switch")
        @dataclass(frozen=True, slots=True)
        class Switch:
            on: bool = field(default=False, metadata=param("x", switch=("on", "off")))

            async def run(self, ctx: ManagementContext) -> None:
                return None


def test_the_declaration_keeps_types_for_mypy() -> None:
    """@operation returns the class itself: constructors and run() keep their types."""
    op = AccountAdd(name="bob", password=Secret("pw"))
    assert_type(op, AccountAdd)
    built = spec_of(AccountAdd).build({"name": "bob", "password": Secret("pw")})
    assert_type(built, Operation)
    assert built == op


def test_building_with_an_unknown_parameter_is_params() -> None:
    with pytest.raises(StoreError, match="Unknown parameter 'colour'") as err:
        spec_of(AccountModify).build({"name": "bob", "colour": "red"})
    assert err.value.kind is ErrorKind.PARAMS
