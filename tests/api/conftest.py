from tests.cli.conftest import msgstore

__all__ = ["msgstore"]
