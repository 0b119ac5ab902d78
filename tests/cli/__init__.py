"""The admin CLI as a user runs it: real ``python -m msgstore.cli`` processes."""
