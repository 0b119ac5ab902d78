"""The list of command modules. Each exposes ``register(group)``."""

from __future__ import annotations

import click

from msgstore.cli import (
    completion,
    config_cmd,
    db,
    deliver,
    demo,
    migrate,
    operations,
    reconstruct,
    serve,
)


def register(group: click.Group) -> None:
    """Add every command module's commands to the top-level group."""
    config_cmd.register(group)
    serve.register(group)
    operations.register(group)
    deliver.register(group)
    demo.register(group)
    reconstruct.register(group)
    migrate.register(group)
    db.register(group)
    completion.register(group)
