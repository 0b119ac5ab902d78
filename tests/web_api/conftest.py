"""One real ``msgstore serve`` (IMAP, POP3, LMTP, web) per test module: a manager and a user."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from msgstore.management.accounts import AccountModify
from tests.conversations.harness import MsgstoreServer, User
from tests.web_api.support import Api, basic


@dataclass
class Site:
    server: MsgstoreServer
    boss: User  # a manager
    carol: User  # an ordinary account

    @property
    def port(self) -> int:
        return self.server.port("web.listen")

    @property
    def anonymous(self) -> Api:
        return Api(self.port)

    @property
    def as_boss(self) -> Api:
        return Api(self.port, basic(self.boss.name, self.boss.password))

    @property
    def as_carol(self) -> Api:
        return Api(self.port, basic(self.carol.name, self.carol.password))


def start_site(root: object, **config: object) -> Site:
    from pathlib import Path

    assert isinstance(root, Path)
    server = MsgstoreServer.start(root, services=("imap", "pop3", "lmtp", "web"), config=config)
    try:
        boss = server.admin.add_user("boss")
        server.admin.call(AccountModify(name=boss.name, manager=True).run(server.admin.ctx))
        carol = server.admin.add_user("carol")
    except BaseException:
        server.stop()
        raise
    return Site(server, boss, carol)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = start_site(tmp_path_factory.mktemp("web-api"))
    try:
        yield s
    finally:
        s.server.stop()
