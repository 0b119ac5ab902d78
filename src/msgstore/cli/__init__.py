"""The admin CLI: a thin face over the management layer."""
