"""Every scripted conversation under tests/conversations/<protocol>/ as one pytest item.

The format and the runner are in tests/conversations/script.py (STYLE.md §14.1). Scripts share
one real ``msgstore serve`` (each creates its own users with unique names); a script with a
``config:`` header gets a dedicated server with those settings, serving its protocol only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conversations.harness import MsgstoreServer
from tests.conversations.script import dedicated_settings, parse_script, run_script

HERE = Path(__file__).parent / "conversations"
FIXTURES = HERE / "fixtures"
SCRIPTS = sorted(
    p
    for p in HERE.glob("*/*")
    if p.is_file() and p.parent.name in {"pop3", "poppassd", "lmtp", "smtp"}
) + sorted(HERE.glob("imap/*/*.imap"))  # imap/<area>/<behaviour>.imap, "protocol: imap"
SERVICES = ("pop3", "poppassd", "imap", "lmtp", "smtp")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MsgstoreServer]:
    server = MsgstoreServer.start(
        tmp_path_factory.mktemp("conversations"),
        services=SERVICES,
        config={"auth.scram_sha_256": True},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(HERE)) for p in SCRIPTS])
def test_conversation(path: Path, shared_server: MsgstoreServer, tmp_path: Path) -> None:
    script = parse_script(path)
    if script.config:
        # Only the script's own service: each listener set up is start-up time, and a
        # script talks to nothing else.
        server = MsgstoreServer.start(
            tmp_path / "server",
            services=(script.protocol,),
            config={"auth.scram_sha_256": True, **dedicated_settings(script)},
        )
        try:
            run_script(script, server, FIXTURES)
        finally:
            server.stop()
    else:
        run_script(script, shared_server, FIXTURES)
