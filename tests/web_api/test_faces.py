"""Property: on the same store, every read operation gives the same JSON through the CLI
(``msgstore ... --json``, a subprocess), the REST API and the Python API
(``msgstore.Store``), and the same error message when it fails.

The operations and their parameters come from the registry, so a new read operation is
covered once it has a route; the values are taken from a store the test fills first.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from msgstore.cli.operations import COMMANDS
from msgstore.core.errors import StoreError
from msgstore.management.jsonable import to_json
from msgstore.management.operation import OperationSpec
from tests.web_api.conftest import Site, start_site
from tests.web_api.support import request_for, routes

#: Reads that only the running server can answer (the local CLI has no server to ask).
SERVER_ONLY = frozenset({"session list", "stats live"})
#: Reads whose result is a file (the archive is the body): compared by their own test, in
#: test_faces_export.py.
STREAMS = frozenset({"account export"})
READS = [
    s
    for s in routes()
    if s.http is not None
    and s.http[0] == "GET"
    and s.name not in SERVER_ONLY
    and s.name not in STREAMS
]
FORWARD = "team@example.org"
PUBLIC = "News"


def filled_site(root: Any) -> Iterator[Site]:
    """A server whose store has something for every read: a mailbox, a forward, a public
    folder, a token and a quota (carol's)."""
    site = start_site(root)
    try:
        boss, carol = site.as_boss, site.carol.name
        for method, path, body in (
            ("POST", f"/accounts/{carol}/mailboxes", {"name": "Archive/2025"}),
            ("POST", "/forwards", {"address": FORWARD, "destinations": carol}),
            ("POST", "/public", {"name": PUBLIC}),
            ("POST", f"/accounts/{carol}/tokens", {"label": "faces", "expires": "7d"}),
            ("PUT", f"/accounts/{carol}/quota", {"storage": "5M"}),
        ):
            reply = boss.call(method, path, body=body)
            assert reply.status in (200, 204), (method, path, reply)
        yield site
    finally:
        site.server.stop()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from filled_site(tmp_path_factory.mktemp("faces"))


def _values(site: Site, spec: OperationSpec) -> list[dict[str, object]]:
    """Parameter sets to try: the required ones from the filled store, then some optional
    ones where the operation has them."""
    carol = site.carol.name
    known: dict[str, object] = {
        "name": carol,
        "user": carol,
        "account": carol,
        "mailbox": "INBOX",
        "address": FORWARD,
        "text": "carol",
        "id": 1,
    }
    if spec.name in ("mailbox status",):
        known["name"] = "INBOX"
    if spec.name.startswith("public"):
        known["name"] = PUBLIC
    base = {p.name: known[p.name] for p in spec.params if p.required and p.name in known}
    sets = [base]
    optional = {p.name for p in spec.params if not p.required}
    extra: dict[str, object] = {}
    if "pattern" in optional:
        extra["pattern"] = "Archive/*"
    if "limit" in optional:
        extra["limit"] = 1
    if "kind" in optional:
        extra["kind"] = "imap"
    if "account" in optional and spec.name != "audit list":
        extra["account"] = carol
    if extra:
        sets.append({**base, **extra})
    if spec.name == "account show":
        sets.append({"name": "nobody-here"})  # the same error everywhere
    return sets


def _cli_path(spec: OperationSpec) -> tuple[str, ...]:
    return next(path for path, name in COMMANDS.items() if name == spec.name)


def _by_cli(site: Site, spec: OperationSpec, values: Mapping[str, object]) -> tuple[str, Any]:
    argv = [sys.executable, "-m", "msgstore.cli", "--config", str(site.server.config_path)]
    argv += _cli_path(spec)
    for p in spec.params:
        if p.name not in values:
            continue
        value = values[p.name]
        if p.positional:
            argv.append(str(value))
        elif isinstance(value, bool):
            if value:
                argv.append(f"--{p.name.replace('_', '-')}")
        else:
            argv += [f"--{p.name.replace('_', '-')}", str(value)]
    argv.append("--json")
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if run.returncode == 0:
        return "ok", json.loads(run.stdout)
    return "error", run.stderr.strip().removeprefix("msgstore: ")


def _by_rest(site: Site, spec: OperationSpec, values: Mapping[str, object]) -> tuple[str, Any]:
    method, path, body, query = request_for(spec, values)
    reply = site.as_boss.call(method, path, body=body, query=query)
    if reply.status == 200:
        return "ok", reply.json()
    return "error", reply.json()["message"]


def _by_python(site: Site, spec: OperationSpec, values: Mapping[str, object]) -> tuple[str, Any]:
    from msgstore import Store

    async def run() -> tuple[str, Any]:
        async with Store.open(site.server.config_path) as store:
            try:
                return "ok", to_json(await store.run(spec.name, **values))
            except StoreError as exc:
                return "error", exc.public

    return asyncio.run(run())


@pytest.mark.parametrize("spec", READS, ids=lambda s: s.name.replace(" ", "-"))
def test_every_face_gives_the_same_answer(filled: Site, spec: OperationSpec) -> None:
    for values in _values(filled, spec):
        rest = _by_rest(filled, spec, values)
        python = _by_python(filled, spec, values)
        cli = _by_cli(filled, spec, values)
        assert rest == python, (spec.name, values)
        assert cli == rest, (spec.name, values)


def _cli_json(site: Site, *argv: str) -> tuple[str, Any]:
    cmd = [sys.executable, "-m", "msgstore.cli", "--config", str(site.server.config_path)]
    run = subprocess.run(
        [*cmd, *argv, "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    if run.returncode == 0:
        return "ok", json.loads(run.stdout)
    return "error", run.stderr.strip().removeprefix("msgstore: ")


def _python(spec_name: str, site: Site, **values: object) -> tuple[str, Any]:
    from msgstore import Store

    async def run() -> tuple[str, Any]:
        async with Store.open(site.server.config_path) as store:
            try:
                return "ok", to_json(await store.run(spec_name, **values))
            except StoreError as exc:
                return "error", exc.public

    return asyncio.run(run())


def _members(data: bytes) -> list[tuple[str, int]]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted((m.name, m.size) for m in tar.getmembers() if m.name.startswith("mail/"))


def _restored(answer: tuple[str, Any]) -> tuple[str, Any]:
    """A restore report without what differs by nature: the account, the time taken."""
    kind, report = answer
    if kind != "ok":
        return answer
    rebuilt = report["reconstruct"]
    return kind, (
        report["messages"],
        rebuilt["applied"],
        rebuilt["mailboxes"],
        rebuilt["messages"],
        rebuilt["octets"],
        len(rebuilt["discrepancies"]),
    )
