"""``msgstore completion bash|zsh|fish``: print the shell completion script.

The script is click's own (``click.shell_completion``): it calls ``msgstore`` back with
``_MSGSTORE_COMPLETE`` set, so completion always knows the current commands and options.
Install with e.g. ``msgstore completion bash > /etc/bash_completion.d/msgstore``, or
``eval "$(msgstore completion zsh)"`` in ``~/.zshrc``.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish)."""
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # one of click's three built-in shells
    script = cls(root, {}, "msgstore", "_MSGSTORE_COMPLETE").source()
    click.echo(script)
