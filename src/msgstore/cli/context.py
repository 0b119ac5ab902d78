"""State shared by every subcommand: where the configuration and the data live, or which
server to talk to (remote mode)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CliContext:
    config_path: Path | None
    data_dir: Path | None
    #: Remote mode: the msgstore web listener (``--url``); None works on the data directory.
    url: str | None = None
    #: The store account to authenticate as in remote mode (``--user``).
    user: str | None = None
    #: Read that account's password from the first line of standard input.
    password_stdin: bool = False
