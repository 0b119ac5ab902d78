"""A real ``msgstore serve`` with IMAP on free loopback ports, shared by the IMAP server tests.

Every test creates its own users (unique real names), so tests are isolated on the shared
server; a test that needs other settings starts its own server with ``MsgstoreServer.start``.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from tests.conversations.harness import MsgstoreServer, User


@pytest.fixture(scope="session")
def imap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("imap"),
        services=("imap",),
        config={"auth.scram_sha_256": True, "store.max_message_size": "1M"},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def user(imap_server: MsgstoreServer) -> User:
    return imap_server.admin.add_user("alice")


def connect(server: MsgstoreServer, user: User | None = None) -> imaplib.IMAP4:
    """An imaplib client on the plain port, logged in as ``user`` if given."""
    client = imaplib.IMAP4("127.0.0.1", server.port("imap.listen"), timeout=10)
    if user is not None:
        client.login(user.name, user.password)
    return client
