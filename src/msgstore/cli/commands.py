"""The list of command modules. Each exposes ``register(group)``."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add every command module's commands to the top-level group."""
