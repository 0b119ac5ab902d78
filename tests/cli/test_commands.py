"""The CLI as a face of the management layer: every operation has a command, every
ErrorKind an exit code, and the commands are derived from the operations' fields."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import click
import pytest

from msgstore.cli.errors import DELIVER_SEVERITY, EXIT_CODE, worst
from msgstore.cli.main import cli
from msgstore.cli.migrate import FACE_OPTIONS
from msgstore.cli.operations import ALIASES, COMMANDS
from msgstore.core.errors import ErrorKind
from msgstore.management import load_operations
from msgstore.management.operation import Secret
from tests.cli.conftest import Msgstore, assert_one_line_error


def test_exit_code_table_covers_every_error_kind() -> None:
    assert set(EXIT_CODE) == set(ErrorKind)
    assert all(code in DELIVER_SEVERITY for code in EXIT_CODE.values())


def test_a_temporary_failure_decides_over_permanent_ones() -> None:
    assert worst([0, 67, 75, 73]) == 75
    assert worst([0, 67, 73]) == 73
    assert worst([0, 65, 67]) == 67
    assert worst([0]) == 0


def test_every_operation_has_a_command() -> None:
    assert set(COMMANDS.values()) == set(load_operations())
    assert set(ALIASES.values()) <= set(load_operations())


def _command(path: tuple[str, ...]) -> click.Command:
    ctx = click.Context(cli)
    command: click.Command = cli
    for word in path:
        assert isinstance(command, click.Group)
        found = command.get_command(ctx, word)
        assert found is not None, path
        command = found
    return command


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    """main() adds the command modules to the group before running; do it without running."""
    if "account" not in cli.commands:
        from msgstore.cli import commands

        commands.register(cli)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_parameters_are_the_operation_fields(path: tuple[str, ...]) -> None:
    """Each field is exactly one argument or option, under its own name."""
    spec = load_operations()[COMMANDS[path]]
    command = _command(path)
    face_only = FACE_OPTIONS.get(path[1], frozenset()) if path[0] == "migrate" else frozenset()
    declared = {p.name for p in command.params} - {"as_json", "yes"} - face_only
    expected = {f"{p.name}_stdin" if p.type is Secret else p.name for p in spec.params}
    assert declared == expected
    arguments = [p.name for p in command.params if isinstance(p, click.Argument)]
    assert arguments == [p.name for p in spec.params if p.positional]
    has_json = any(p.name == "as_json" for p in command.params)
    assert has_json == (spec.result is not type(None))
    assert any(p.name == "yes" for p in command.params) == spec.confirm


def test_help_lists_the_commands(msgstore: Msgstore) -> None:
    """In a real process: what a new process lists, before any command was loaded."""
    out = msgstore.real.ok("--help").out
    for word in ("account", "mailbox", "quota", "passwd", "deliver", "demo"):
        assert word in out
    assert "--disable-login" in msgstore.real.ok("account", "modify", "--help").out


def test_account_list_starts_quickly(msgstore: Msgstore, tmp_path: Path) -> None:
    """``msgstore account list`` on an existing store costs about a second of CPU at most
    (~0.9-1.0 s on the 2-vCPU CI machine, mostly imports). CPU time, not wall time: the suite
    runs 3 workers on 2 cores. The speed target itself belongs to bench/, this only catches a
    start-up that balloons."""
    msgstore.add("bob")
    command = [sys.executable, "-m", "msgstore.cli", "--data", str(msgstore.data)]
    timings = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [*command, "account", "list"],
            cwd=tmp_path,
            check=True,
            timeout=60,
            capture_output=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        timings.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    assert sorted(timings)[1] < 1.5, timings


def test_a_broken_configuration_is_one_line_and_78(msgstore: Msgstore) -> None:
    """Every problem of the file is found, but an admin command reports one line."""
    store = msgstore.with_config('[store]\nmax_message_size = "5X"\nbackend = "nope"\n')
    result = store.real("account", "list")
    assert_one_line_error(result, 78, "msgstore.toml", "(and 1 more problem)")
    assert not msgstore.data.exists()
