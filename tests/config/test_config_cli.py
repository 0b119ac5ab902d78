"""``msgstore config check|show|docs`` as a user runs them: a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from msgstore.config import config_docs, load_config


def msgstore(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    return subprocess.run(
        [sys.executable, "-m", "msgstore.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_prints_ok_for_a_valid_file(tmp_path: Path) -> None:
    """A valid file: "ok" on stdout, exit 0."""
    (tmp_path / "msgstore.toml").write_text('[imap]\nlisten = "127.0.0.1:143"\n')
    result = msgstore("--config", "msgstore.toml", "config", "check", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


def test_check_takes_the_file_as_argument(tmp_path: Path) -> None:
    """``config check FILE`` validates FILE rather than --config."""
    (tmp_path / "other.toml").write_text("[imap]\nlistn = []\n")
    result = msgstore("config", "check", "other.toml", cwd=tmp_path)
    assert result.returncode == 78
    assert (
        result.stderr
        == "msgstore: other.toml: unknown key imap.listn (did you mean imap.listen?)\n"
    )


def test_check_prints_every_problem_and_exits_78(tmp_path: Path) -> None:
    """EX_CONFIG, with one line per problem on stderr and nothing on stdout."""
    (tmp_path / "msgstore.toml").write_text(
        '[imap]\nlistn = "127.0.0.1:1"\n[store]\nmax_message_size = "5X"\n'
    )
    result = msgstore("--config", "msgstore.toml", "config", "check", cwd=tmp_path)
    assert result.returncode == 78
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "msgstore: msgstore.toml: unknown key imap.listn (did you mean imap.listen?)",
        "msgstore: msgstore.toml: store.max_message_size: invalid size '5X': "
        "use a number with K, M or G (e.g. 100M)",
    ]


def test_show_prints_a_toml_that_loads_back(tmp_path: Path) -> None:
    """The effective configuration, --data applied, is itself a valid configuration."""
    (tmp_path / "msgstore.toml").write_text('[pop3]\nlisten = []\n[log]\nformat = "json"\n')
    result = msgstore(
        "--config", "msgstore.toml", "--data", "mail", "config", "show", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (tmp_path / "shown.toml").write_text(result.stdout)
    shown = load_config(tmp_path / "shown.toml")
    assert shown.pop3.listen == []
    assert shown.log.format == "json"
    assert shown.store.data_dir == tmp_path / "mail"


def test_show_json(tmp_path: Path) -> None:
    """``--json`` gives the same values as JSON; MSGSTORE_DATA works like --data."""
    env_data = tmp_path / "from-env"
    result = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", "config", "show", "--json"],
        cwd=tmp_path,
        env={**os.environ, "MSGSTORE_DATA": str(env_data)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["store"]["data_dir"] == str(env_data)
    assert data["web"]["listen"] == ["127.0.0.1:8080"]


def test_docs_prints_the_generated_manual(tmp_path: Path) -> None:
    """``config docs`` is what docs/configuration.md is made from."""
    result = msgstore("config", "docs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == config_docs()


def test_missing_config_file_is_one_line_and_exit_78(tmp_path: Path) -> None:
    """``--config missing.toml`` fails before doing anything."""
    result = msgstore("--config", "missing.toml", "config", "show", cwd=tmp_path)
    assert result.returncode == 78
    assert result.stderr == "msgstore: missing.toml: configuration file not found\n"
