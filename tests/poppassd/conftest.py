"""One real ``msgstore serve`` with POP3 and poppassd for the tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conversations.harness import MsgstoreServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("poppassd"), config={"auth.scram_sha_256": True}
    )
    try:
        yield srv
    finally:
        srv.stop()
