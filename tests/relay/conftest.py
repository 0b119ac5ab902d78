"""A real ``msgstore serve`` (LMTP, SMTP, IMAP) whose smarthost is a real SMTP sink on
loopback (``sink.py``), with retry delays of a second so that retries are quick."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conversations.harness import MsgstoreServer
from tests.relay.sink import Sink

#: Tiny durations: retries every second, the queue polled every second.
RELAY_SETTINGS: dict[str, object] = {
    "delivery.domains": ["example.org"],
    "relay.retry_first": "1s",
    "relay.retry_max": "1s",
    "relay.poll_interval": "1s",
    "relay.timeout": "5s",
    "relay.helo": "relay.test",
}


def start_server(root: object, sink: Sink, **extra: object) -> MsgstoreServer:
    from pathlib import Path

    assert isinstance(root, Path)
    settings = dict(RELAY_SETTINGS)
    settings["relay.smarthost"] = f"127.0.0.1:{sink.port}"
    settings.update({k.replace("__", "."): v for k, v in extra.items()})
    return MsgstoreServer.start(root, services=("lmtp", "smtp", "imap"), config=settings)


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    running = Sink().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[MsgstoreServer]:
    srv = start_server(tmp_path_factory.mktemp("relay"), sink)
    try:
        yield srv
    finally:
        srv.stop()
