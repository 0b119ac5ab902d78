"""The Python API: every operation reachable, results equal to the CLI's, SyncStore, and the
runnable examples of docs/api.md."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import msgstore
from msgstore.api import METHODS, Store, SyncStore
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import load_operations
from msgstore.management.jsonable import to_json
from tests.cli.conftest import Msgstore

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _method(store: Store, path: str) -> object:
    noun, name = path.split(".")
    return getattr(getattr(store, noun), name)


async def test_every_operation_is_reachable(tmp_path: Path) -> None:
    """Each operation has a typed method, or is reached by ``Store.run`` (those added by
    other modules); every method named in METHODS exists and runs the operation it names."""
    operations = load_operations()
    assert set(METHODS) <= set(operations)
    async with Store.open(tmp_path / "data") as store:
        for name, path in METHODS.items():
            method = _method(store, path)
            assert inspect.iscoroutinefunction(method), name
            source = inspect.getsource(method)
            assert f'"{name}"' in source, (name, path)
        for name in operations:
            with pytest.raises(StoreError) as err:
                await store.run(name, no_such_parameter=1)
            assert err.value.kind is ErrorKind.PARAMS
        with pytest.raises(StoreError, match="No such operation"):
            await store.run("account explode")


def test_store_is_a_lazy_export() -> None:
    """``import msgstore`` does not import the API (the CLI starts fast)."""
    code = "import sys, msgstore; print('msgstore.api' in sys.modules); msgstore.Store"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True
    ).stdout
    assert out.strip() == "False"
    assert msgstore.Store is Store


def test_same_results_as_the_cli(msgstore: Msgstore) -> None:
    """The Python API and the CLI give the same JSON for the same reads on one store."""
    msgstore.add("bob", "--quota", "5M")
    msgstore.ok("mailbox", "create", "bob", "Work")
    msgstore.ok("acl", "set", "bob", "Work", "anyone", "lr")
    msgstore.ok("public", "create", "News")

    async def read_through_the_api() -> list[tuple[object, list[str]]]:
        async with Store.open(msgstore.data) as store:
            return [
                (await store.accounts.list(), ["account", "list"]),
                (await store.quotas.show("bob"), ["quota", "show", "bob"]),
                (await store.mailboxes.list("bob"), ["mailbox", "list", "bob"]),
                (
                    await store.mailboxes.status("bob", "Work"),
                    ["mailbox", "status", "bob", "Work"],
                ),
                (await store.acl.show("bob", "Work"), ["acl", "show", "bob", "Work"]),
                (await store.public.list(), ["public", "list"]),
                (await store.stats.show(), ["stats", "show"]),
            ]

    # The CLI runs in this process (tests/cli/conftest.py), so not inside a running loop.
    for result, command in asyncio.run(read_through_the_api()):
        assert to_json(result) == msgstore.json(*command), command


def test_sync_store(tmp_path: Path) -> None:
    with SyncStore.open(tmp_path / "data") as store:
        store.accounts.add("bob", password="pw")
        assert [a.name for a in store.accounts.list()] == ["bob"]
        bob = store.as_account("bob")
        with pytest.raises(StoreError) as err:
            bob.accounts.list()
        assert err.value.kind is ErrorKind.NO_PERM
        assert store.run("quota show", user="bob").messages_used == 0


def test_docs_examples_run(tmp_path: Path) -> None:
    """Every ```python block of docs/api.md, in order, in one empty directory; each printed
    line that the example annotates with ``# expected`` must match."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSGSTORE_")}
    for n, block in enumerate(blocks):
        proc = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, (n, block, proc.stderr)
        expected = [
            m.group(1).strip()
            for line in block.splitlines()
            if (m := re.search(r"print\(.*\)\s+# (.+)$", line))
        ]
        printed = [line.strip() for line in proc.stdout.splitlines()]
        for want in expected:
            assert want in printed, (n, want, printed)
