"""One real ``msgstore serve`` with LMTP and SMTP, small limits, for this directory's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conversations.harness import MsgstoreServer

#: Small limits so that the limit tests are fast (RELIABILITY.md §7: limits set small).
SETTINGS = {
    "lmtp.max_recipients": 50,
    "lmtp.max_unknown_recipients": 10,
    "lmtp.data_timeout": "3s",
    "smtp.data_timeout": "3s",
    "store.max_message_size": "256K",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    srv = MsgstoreServer.start(
        tmp_path_factory.mktemp("lmtp"), services=("lmtp", "smtp"), config=SETTINGS
    )
    try:
        yield srv
    finally:
        srv.stop()
