"""Running ``msgstore`` as a user does: a real process on a real data directory in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The password of accounts made by :meth:`Msgstore.add` unless a test gives one.
PASSWORD = "secret"
#: A small, complete message (CRLF, header and body).
MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <hello@example.org>\r\n"
    b"\r\n"
    b"first message\r\n"
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Msgstore:
    """``python -m msgstore.cli --data DATA [--config FILE] ...`` in ``cwd``."""

    data: Path
    cwd: Path
    config: Path | None = None

    def __call__(self, *args: str, stdin: bytes | str = b"") -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
        command = [sys.executable, "-m", "msgstore.cli", "--data", str(self.data)]
        if self.config is not None:
            command += ["--config", str(self.config)]
        proc = subprocess.run(
            [*command, *args],
            input=stdin.encode() if isinstance(stdin, str) else stdin,
            cwd=self.cwd,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def ok(self, *args: str, stdin: bytes | str = b"") -> Result:
        """Run and require exit 0 and an empty stderr."""
        result = self(*args, stdin=stdin)
        assert (result.code, result.err) == (0, ""), result
        return result

    def json(self, *args: str) -> Any:
        return self.ok(*args, "--json").json

    def add(self, name: str, *options: str, password: str = PASSWORD) -> None:
        self.ok("account", "add", name, "--password-stdin", *options, stdin=password + "\n")

    def deliver(self, *to: str, message: bytes = MESSAGE, options: Sequence[str] = ()) -> Result:
        args = [a for user in to for a in ("--to", user)]
        return self("deliver", *args, *options, stdin=message)

    def with_config(self, text: str) -> Msgstore:
        """The same store with a configuration file holding ``text``."""
        path = self.cwd / "msgstore.toml"
        path.write_text(text)
        return Msgstore(self.data, self.cwd, path)


def tree_of(msgstore: Msgstore, account: str) -> Path:
    """An account's directory: ``DATA/users/<id % 256 as 2 hex digits>/<id>`` (the local
    backend's layout, docs/architecture.md), from the id ``account show`` reports."""
    ident = int(msgstore.json("account", "show", account)["id"])
    return msgstore.data.resolve() / "users" / f"{ident % 256:02x}" / str(ident)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """Exit ``code``, nothing on stdout, one ``msgstore: ...`` line on stderr."""
    assert result.code == code, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("msgstore: "), result
    for fragment in fragments:
        assert fragment in lines[0], result


@pytest.fixture
def msgstore(tmp_path: Path) -> Msgstore:
    return Msgstore(data=tmp_path / "data", cwd=tmp_path)
