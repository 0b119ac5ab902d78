"""Run the protocol suites against the postgres backend: a pytest plugin.

    python -m pytest -p tests.storage.postgres.protocol_plugin tests/test_conversations.py \\
        tests/imap_server tests/pop3 tests/lmtp tests/imap_clients tests/imap_stress

Every ``MsgstoreServer`` the suites start (and the ``StoreAdmin`` next to it) then stores in
PostgreSQL: the server's root directory gets a schema of its own in the ``test`` database (a
server started again on the same root finds the same schema), as it would get a data
directory of its own on the local backend. The schemas are dropped at the end of the session.
Tests that look at the local backend's files (hard links, files on disk, injected disk
faults) are deselected: they test the local backend, not the protocols.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

import pytest

from tests.conversations import harness
from tests.storage.pg import pg_schema, schema_dsn

#: Tests of the local backend's layout inside the protocol suites.
LOCAL_ONLY: Final = (
    "tests/pop3/test_update_state.py::test_fan_out_to_pop_accounts_stores_one_file",
    "tests/lmtp/test_faults.py::test_disk_full_is_452_4_3_1_and_delivery_resumes",
    "tests/lmtp/test_wire.py::test_fan_out_is_stored_once",
    "tests/lmtp/test_wire.py::test_plus_addressing_files_into_an_existing_folder",
    "tests/relay/test_relay.py::test_public_folder_list_is_stored_once_and_read_by_several_users",
    "tests/relay/test_relay.py::test_kill_9_with_messages_queued_delivers_each_exactly_once",
    "tests/web_api/test_tokens.py::test_a_token_from_the_cli_acts_as_its_account",
)

_schemas: dict[Path, str] = {}
_stack = ExitStack()
_original_start: Any = None


def _schema_for(root: Path) -> str:
    key = Path(root).resolve()
    if key not in _schemas:
        _schemas[key] = _stack.enter_context(pg_schema())
    return _schemas[key]


def pytest_configure(config: pytest.Config) -> None:
    global _original_start
    _original_start = harness.MsgstoreServer.start.__func__  # type: ignore[attr-defined]

    def start(cls: type[harness.MsgstoreServer], /, root: Path, **kwargs: Any) -> Any:
        settings = {
            "storage.backend": "postgres",
            "storage.dsn": schema_dsn(_schema_for(root)),
            "storage.pool_min": 1,
            "storage.pool_max": 6,
            **(kwargs.pop("config", None) or {}),
        }
        return _original_start(cls, root, config=settings, **kwargs)

    harness.MsgstoreServer.start = classmethod(start)  # type: ignore[assignment,method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _original_start is not None:
        harness.MsgstoreServer.start = classmethod(_original_start)  # type: ignore[assignment,method-assign]
    _stack.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gone = [i for i in items if i.nodeid.startswith(LOCAL_ONLY)]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [i for i in items if not i.nodeid.startswith(LOCAL_ONLY)]
