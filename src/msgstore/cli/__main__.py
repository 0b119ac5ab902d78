"""``python -m msgstore.cli``: the same as the ``msgstore`` command."""

from msgstore.cli.main import main

main()
