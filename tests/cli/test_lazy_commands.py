"""The command table that lets ``msgstore`` import only the command it runs (cli/commands.py):
its ``--help`` lines are the commands' own, and it points at the right modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from msgstore.cli.commands import TOP_LEVEL
from msgstore.cli.operations import COMMANDS, DECLARED_IN, ROOT_SUMMARY
from msgstore.management import load_operations
from tests.cli.conftest import Msgstore


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_the_help_line_is_the_commands_own(name: str) -> None:
    entry = TOP_LEVEL[name]
    command = entry.load(name)
    stand_in = entry.listing(name)
    assert command.name == name
    assert stand_in.hidden == command.hidden
    for limit in (10, 30, 45, 57, 74, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), limit


def test_every_top_level_command_is_in_the_table() -> None:
    assert {path[0] for path in COMMANDS} <= set(TOP_LEVEL)
    from msgstore.cli.main import cli

    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(TOP_LEVEL)


def test_the_root_summaries_are_the_operations() -> None:
    operations = load_operations()
    for name, summary in ROOT_SUMMARY.items():
        assert summary == operations[COMMANDS[(name,)]].summary


def test_each_operation_is_declared_where_the_table_says() -> None:
    for name, spec in load_operations().items():
        module = DECLARED_IN.get(name) or DECLARED_IN[name.split()[0]]
        assert spec.cls.__module__ == f"msgstore.management.{module}", name


_MODULES_AFTER = """
import sys
from msgstore.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="msgstore", standalone_mode=False)
finally:
    print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str, cwd: Path) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_AFTER, *args],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return set(proc.stderr.decode().split())


def test_help_imports_no_command(tmp_path: Path) -> None:
    modules = _modules_after("--help", cwd=tmp_path)
    for heavy in ("pydantic", "msgstore.config", "msgstore.management", "msgstore.storage"):
        assert heavy not in modules
    assert not {m for m in modules if m.startswith("msgstore.cli.")} - {
        "msgstore.cli.main",
        "msgstore.cli.commands",
        "msgstore.cli.context",
        "msgstore.cli.errors",
        "msgstore.cli.operations",
    }


def test_a_command_imports_only_its_own_operations(msgstore: Msgstore, tmp_path: Path) -> None:
    msgstore.add("bob")
    modules = _modules_after("--data", str(msgstore.data), "account", "list", cwd=tmp_path)
    assert "msgstore.management.accounts" in modules
    for other in ("migration", "forwarding", "public", "queue", "tokens"):
        assert f"msgstore.management.{other}" not in modules
    for elsewhere in ("msgstore.server", "msgstore.net.control", "msgstore.cli.deliver"):
        assert elsewhere not in modules
