"""The faces property of test_faces.py for the one read whose result is a file: ``account
export`` (and ``account restore`` with it) gives the same summary and the same archive
members through the CLI, the REST API and the Python API, and the same refusal. A file of its
own, on a server of its own, so that ``--dist loadfile`` can run it beside the long
parametrised test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web_api.conftest import Site
from tests.web_api.test_faces import _cli_json, _members, _python, _restored, filled_site


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from filled_site(tmp_path_factory.mktemp("faces-export"))


def test_export_and_restore_give_the_same_answer_on_every_face(
    filled: Site, tmp_path: Any
) -> None:
    from pathlib import Path

    tmp = Path(tmp_path)
    boss, carol = filled.as_boss, filled.carol.name
    for n in range(3):
        delivered = filled.server.admin.deliver(
            carol, f"Subject: {n}\r\n\r\nbody {n}\r\n".encode()
        )
        assert delivered
    # export: the summary, and the same messages in each archive
    cli = _cli_json(filled, "account", "export", carol, "--output", str(tmp / "cli.tar"))
    python = _python("account export", filled, name=carol, output=str(tmp / "py.tar"))
    reply = boss.get(f"/accounts/{carol}/export")
    assert reply.status == 200, reply
    rest = ("ok", json.loads(reply.headers["X-Msgstore-Result"]))
    assert cli[0] == python[0] == "ok", (cli, python)
    for answer in (cli, python, rest):
        answer[1].pop("archive_octets")  # the archive's own size: its index copy may differ
    assert cli == python == rest
    assert cli[1]["messages"] >= 3
    archives = [(tmp / "cli.tar").read_bytes(), (tmp / "py.tar").read_bytes(), reply.body]
    assert _members(archives[0]) == _members(archives[1]) == _members(archives[2])
    # restore: the same archive into three empty accounts
    targets = []
    for face in ("cli", "rest", "python"):
        name = f"restored-{face}"
        made = boss.call("POST", "/accounts", body={"name": name, "password": "Pw-faces-1"})
        assert made.status == 200, made
        targets.append(name)
    cli = _cli_json(filled, "account", "restore", targets[0], "--input", str(tmp / "cli.tar"))
    reply = boss.call(
        "POST",
        f"/accounts/{targets[1]}/restore",
        raw_body=archives[0],
        headers={"Content-Type": "application/x-tar"},
    )
    rest = ("ok", reply.json()) if reply.status == 200 else ("error", reply.json()["message"])
    python = _python("account restore", filled, name=targets[2], input=str(tmp / "cli.tar"))
    assert _restored(cli) == _restored(rest) == _restored(python), (cli, rest, python)
    assert cli[0] == "ok"
    # and the same refusal when the account already holds mail
    again = [
        _cli_json(filled, "account", "restore", targets[0], "--input", str(tmp / "cli.tar")),
        _python("account restore", filled, name=targets[0], input=str(tmp / "cli.tar")),
    ]
    reply = boss.call(
        "POST",
        f"/accounts/{targets[0]}/restore",
        raw_body=archives[0],
        headers={"Content-Type": "application/x-tar"},
    )
    again.append(("error", reply.json()["message"]))
    assert again[0] == again[1] == again[2], again
    assert again[0][0] == "error"
