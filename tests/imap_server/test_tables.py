"""The IMAP tables: error kinds, command table vs parser table."""

from __future__ import annotations

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.imap.errors import IMAP_CODE, internal_error, reply_for
from msgstore.imap.registry import REGISTRY
from msgstore.imap.syntax.command import PARSERS
from msgstore.imap.syntax.responses import Code, Status


def test_every_error_kind_has_an_imap_reply() -> None:
    """STYLE.md §2.4: the table covers every ErrorKind, so no store error lacks a reply."""
    assert set(IMAP_CODE) == set(ErrorKind)


def test_reply_for_uses_public_text_and_code() -> None:
    """A store error becomes NO with its response code and only its public text."""
    reply = reply_for(StoreError(ErrorKind.OVER_QUOTA, "Quota exceeded", detail="secret path"))
    assert reply.status is Status.NO
    assert reply.code is not None
    assert reply.code.code is Code.OVERQUOTA
    assert b"secret" not in reply.encode()


def test_internal_error_carries_only_the_incident_id() -> None:
    """Internal errors reply NO [SERVERBUG] with an incident id and nothing else."""
    line = internal_error("abcd1234").encode()
    assert line.startswith(b"* NO [SERVERBUG]")
    assert b"[abcd1234]" in line


def test_every_registered_command_has_a_parser() -> None:
    """The command table and the parser table name the same commands."""
    assert set(REGISTRY) <= set(PARSERS)
    assert all(spec.name == name for name, spec in REGISTRY.items())
