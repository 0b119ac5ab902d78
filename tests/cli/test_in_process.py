"""The in-process runner of tests/cli/conftest.py: it gives what a real process gives, and
leaves this process as it found it, so tests that use it stay independent."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path

import pytest

from tests.cli.conftest import MESSAGE, Msgstore


def test_in_process_gives_what_a_real_process_gives(msgstore: Msgstore) -> None:
    """Output, one-line errors and exit codes are the same either way."""
    msgstore.add("bob")
    for args in (
        ("account", "list", "--json"),
        ("account", "show", "bob"),
        ("account", "show", "ghost"),
        ("quota", "set", "bob", "--storage", "12 parsecs"),
    ):
        assert msgstore(*args) == msgstore.real(*args), args


def test_in_process_leaves_this_process_as_it_was(
    msgstore: Msgstore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argv, working directory, environment, standard streams, logging, threads and the
    event loop are as before; MSGSTORE_* variables of this process do not reach the
    command (as for a real process)."""
    monkeypatch.setenv("MSGSTORE_CONFIG", str(msgstore.cwd / "missing.toml"))
    monkeypatch.setenv("MSGSTORE_DATA", str(msgstore.cwd / "elsewhere"))
    root, ours = logging.getLogger(), logging.getLogger("msgstore")

    def snapshot() -> object:
        return (
            sys.argv[:],
            Path.cwd(),
            dict(os.environ),
            (sys.stdin, sys.stdout, sys.stderr),
            (root.handlers[:], root.level, ours.handlers[:], ours.level),
        )

    before, threads = snapshot(), set(threading.enumerate())
    msgstore.add("bob")
    assert msgstore.deliver("bob").code == 0  # deliver adds a handler when logging is bare
    assert msgstore.deliver("ghost").code == 67
    assert snapshot() == before
    assert not set(threading.enumerate()) - threads
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    assert not (msgstore.cwd / "elsewhere").exists()


def test_configuration_does_not_stay_between_runs(msgstore: Msgstore) -> None:
    """A configuration given to one run does not reach the next one."""
    small = msgstore.with_config('[store]\nmax_message_size = "1K"\n')
    small.add("bob")
    big = b"Subject: big\r\n\r\n" + b"y" * 2000 + b"\r\n"
    assert small.deliver("bob", message=big).code == 65
    assert msgstore.deliver("bob", message=big).code == 0
    assert msgstore.deliver("bob", message=MESSAGE).code == 0
    broken = msgstore.with_config('[store]\nbackend = "nope"\n')
    assert broken("account", "list").code == 78
    assert msgstore("account", "list").code == 0
