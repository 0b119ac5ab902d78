"""Log lines: Dovecot's ``service(ident)<pid><session>: Level: text`` or one JSON object."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from msgstore.config import LogSection
from msgstore.net.logs import configure_logging, log_context

log = logging.getLogger("msgstore.test")


@pytest.fixture
def restore_root() -> Iterator[None]:
    """configure_logging changes the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_text_lines_look_like_dovecot() -> None:
    """Process lines as msgstore(serve)<pid>, session lines with service, user and session."""
    out = io.StringIO()
    configure_logging(LogSection(), stream=out)
    log.info("imap: listening on %s", "127.0.0.1:1143")
    with log_context(service="imap", ident="alice", session="Kx3h"):
        log.warning("Disconnected: %s", "idle\r\nforged line")
    log.debug("not shown at info")
    pid = os.getpid()
    assert out.getvalue().splitlines() == [
        f"msgstore(serve)<{pid}>: Info: imap: listening on 127.0.0.1:1143",
        f"imap(alice)<{pid}><Kx3h>: Warning: Disconnected: idle\\r\\nforged line",
    ]


@pytest.mark.usefixtures("restore_root")
def test_critical_is_fatal_and_configuring_twice_does_not_double_lines() -> None:
    """Dovecot calls the last level Fatal; a second configure replaces the handler."""
    out = io.StringIO()
    configure_logging(LogSection(level="debug"), stream=io.StringIO())
    configure_logging(LogSection(level="debug"), ident="account", stream=out)
    log.critical("cannot start")
    log.debug("details")
    pid = os.getpid()
    assert out.getvalue().splitlines() == [
        f"msgstore(account)<{pid}>: Fatal: cannot start",
        f"msgstore(account)<{pid}>: Debug: details",
    ]


@pytest.mark.usefixtures("restore_root")
async def test_json_lines_carry_the_context_of_their_task() -> None:
    """Each asyncio task keeps its own context; JSON has every field."""
    out = io.StringIO()
    configure_logging(LogSection(format="json", level="warning"), stream=out)

    async def session(user: str) -> None:
        with log_context(service="pop3", ident=user, session=user.upper()):
            await asyncio.sleep(0)
            log.error("hello from %s", user)

    await asyncio.gather(session("bob"), session("carol"))
    log.info("dropped")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["ident"], e["session"], e["message"]) for e in events] == [
        ("bob", "BOB", "hello from bob"),
        ("carol", "CAROL", "hello from carol"),
    ]
    assert events[0]["level"] == "error"
    assert events[0]["service"] == "pop3"
    assert events[0]["pid"] == os.getpid()
    assert events[0]["logger"] == "msgstore.test"
    assert events[0]["time"].endswith("+00:00")
