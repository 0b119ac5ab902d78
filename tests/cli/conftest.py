"""Running ``msgstore`` as a user does, on a real data directory in tmp_path.

A command runs either as a real process (``python -m msgstore.cli``: the installed entry
point, its exit status, pipes and environment) or, by default, in this process through the
same entry function :func:`msgstore.cli.main.main` with ``sys.argv``, standard streams,
environment, working directory and logging set up as a new process would have them. The
in-process run costs milliseconds instead of the second a process spends on imports; tests
that rely on the process itself use :attr:`Msgstore.real`, and every command group keeps at
least one such test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

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
#: How long a thread an in-process command started may take to end after the command.
THREAD_GRACE_S = 10.0


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    args: Sequence[str],
    *,
    stdin: bytes | str = b"",
    cwd: Path,
    env: Mapping[str, str] | None = None,
    process: bool = False,
) -> Result:
    """``msgstore ARGS`` in ``cwd`` with no ``MSGSTORE_*`` variables but those of ``env``.

    ``process``: a real ``python -m msgstore.cli`` process; otherwise
    :func:`msgstore.cli.main.main` in this process (see the module docstring).
    """
    data = stdin.encode() if isinstance(stdin, str) else stdin
    if process:
        return _in_a_process(args, data, cwd, env or {})
    return _in_this_process(args, data, cwd, env or {})


def _in_a_process(args: Sequence[str], stdin: bytes, cwd: Path, env: Mapping[str, str]) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "msgstore.cli", *args],
        input=stdin,
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _in_this_process(
    args: Sequence[str], stdin: bytes, cwd: Path, env: Mapping[str, str]
) -> Result:
    from msgstore.cli.main import main

    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MSGSTORE_")}
    environ.update(env)
    threads = set(threading.enumerate())
    with (
        _as_a_new_process(["msgstore", *args], cwd),
        CliRunner().isolation(input=stdin, env=environ) as (out, err, _),
    ):
        try:
            main()
            code = 0
        except SystemExit as exc:  # click's standalone mode always ends with it
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("text"): the text on stderr, status 1
                print(exc.code, file=sys.stderr)
                code = 1
        sys.stdout.flush()  # as a process does when it ends
        sys.stderr.flush()
        result = Result(code, out.getvalue().decode(), err.getvalue().decode())
    _assert_no_threads_left(threads, result)
    return result


@contextlib.contextmanager
def _as_a_new_process(argv: list[str], cwd: Path) -> Iterator[None]:
    """``sys.argv`` and the working directory of the command; logging as a new process has
    it (no handlers, level WARNING: records reach stderr through logging's last resort, and
    what a command configures is undone). Restored afterwards."""
    root = logging.getLogger()
    ours = logging.getLogger("msgstore")
    saved = (sys.argv, Path.cwd(), root.handlers[:], root.level, ours.handlers[:], ours.level)
    sys.argv = argv
    os.chdir(cwd)
    root.handlers = []
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        sys.argv, old_cwd, root.handlers, root.level, ours.handlers, ours.level = saved
        os.chdir(old_cwd)


def _assert_no_threads_left(before: set[threading.Thread], result: Result) -> None:
    """A command run in this process must not leave threads behind (an unclosed store)."""
    for thread in set(threading.enumerate()) - before:
        thread.join(THREAD_GRACE_S)
        assert not thread.is_alive(), (thread, result)


@dataclass(frozen=True)
class Msgstore:
    """``msgstore --data DATA [--config FILE] ...`` in ``cwd``; in this process unless
    ``process`` (see :attr:`real`)."""

    data: Path
    cwd: Path
    config: Path | None = None
    process: bool = False

    @property
    def real(self) -> Msgstore:
        """The same store, each command a real ``python -m msgstore.cli`` process."""
        return dataclasses.replace(self, process=True)

    def __call__(self, *args: str, stdin: bytes | str = b"") -> Result:
        command = ["--data", str(self.data)]
        if self.config is not None:
            command += ["--config", str(self.config)]
        return run_cli([*command, *args], stdin=stdin, cwd=self.cwd, process=self.process)

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
        return dataclasses.replace(self, config=path)


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
