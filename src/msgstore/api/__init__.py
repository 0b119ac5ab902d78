"""The Python API: ``from msgstore import Store`` — the management operations as methods."""
