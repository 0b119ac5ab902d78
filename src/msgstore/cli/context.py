"""State shared by every subcommand: where the configuration and the data live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CliContext:
    config_path: Path | None
    data_dir: Path | None
