"""One real ``msgstore serve`` with POP3 and poppassd for the real-client tests (per test
worker: every test creates its own users, so the files share it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conversations.harness import MsgstoreServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("clients"), config={"auth.scram_sha_256": True}
    )
    try:
        yield srv
    finally:
        srv.stop()
