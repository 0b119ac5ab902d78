"""``Store``: the management operations as typed async methods, and ``SyncStore`` for scripts.

Every method builds the registered operation (so it validates exactly as the CLI and the
REST API do) and runs it through ``run_operation`` -- the one permission check and the audit
log -- as the operating-system administrator (origin ``python``), or, after
``await store.as_account(name)``, as that store account. Operations without a method of
their own (added later, or by other modules) are reachable with ``store.run(name, **params)``.

Parameter values may be given typed (``Limit``, ``AccountKind``, ``Secret``, ``int``) or in
their text form (``"100M"``, ``"pop"``, a plain ``str`` password); ``None`` means "not
given" (the operation's default, or "unchanged").
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from msgstore.core.accounts import AccountInfo, AccountKind
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management import load_operations
from msgstore.management.accounts import AccountReport, NewPassword
from msgstore.management.acl import AclEntry
from msgstore.management.audit import AuditEntry
from msgstore.management.backup import RestoreReport
from msgstore.management.mailboxes import MailboxReport, MailboxStatusReport
from msgstore.management.migration import MigrationReport
from msgstore.management.operation import (
    Actor,
    Limit,
    ManagementContext,
    Operation,
    OperationSpec,
    Secret,
    about,
    name_fields,
    run_operation,
)
from msgstore.management.public import PublicFolder
from msgstore.management.quotas import QuotaReport
from msgstore.management.stats import StoreStats
from msgstore.net.control import ControlDirectory
from msgstore.storage.base import Backend, ExportSummary, MailboxInfo, ReconstructReport

if TYPE_CHECKING:
    from msgstore.config import Config

T = TypeVar("T")
#: ``list`` under another name: the nouns have methods called ``list``.
_List = list


def _coerce(spec: OperationSpec, name: str, value: object) -> object:
    """A value for parameter ``name``: typed values pass, text goes through its parser."""
    param = next((p for p in spec.params if p.name == name), None)
    if param is None:
        raise StoreError(ErrorKind.PARAMS, f"{spec.name}: unknown parameter {name!r}")
    if param.type is Secret:
        return value if isinstance(value, Secret) else Secret(str(value))
    if param.type is bool:
        if not isinstance(value, bool):
            raise StoreError(ErrorKind.PARAMS, f"{spec.name}: {name} must be True or False")
        return value
    if param.type is Limit and (isinstance(value, int) and not isinstance(value, bool)):
        return Limit(value or None)
    if isinstance(value, param.type) and not isinstance(value, bool):
        return value
    if param.type is dt.datetime and isinstance(value, dt.datetime):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        return param.parse(str(value))
    if isinstance(value, Path):
        return param.parse(str(value))
    raise StoreError(ErrorKind.PARAMS, f"{spec.name}: {name} has the wrong type")


async def _migrator(op: Operation, ctx: ManagementContext) -> object:
    """The migration engine (``ManagementContext.migrator``), imported when a run starts."""
    from msgstore.migrate.service import run_migration

    return await run_migration(op, ctx)


class Store:
    """An open store to manage. Use ``async with Store.open(path) as store:``."""

    def __init__(self, ctx: ManagementContext) -> None:
        self._ctx = ctx
        self.accounts = Accounts(self)
        self.passwords = Passwords(self)
        self.mailboxes = Mailboxes(self)
        self.quotas = Quotas(self)
        self.acl = Acl(self)
        self.public = Public(self)
        self.stats = Stats(self)
        self.audit = Audit(self)
        self.migrate = Migrate(self)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        where: str | Path | None = None,
        *,
        config: Config | None = None,
        origin: str = "python",
    ) -> AsyncIterator[Store]:
        """Open the store: ``where`` is a configuration file (``*.toml``) or a data
        directory (created if new); ``config`` an already loaded configuration. Closed when
        the block ends."""
        from msgstore.auth.passwords import hash_password
        from msgstore.config import load_config
        from msgstore.storage.open import open_backend

        if config is None:
            path = Path(where) if where is not None else None
            if path is not None and (path.suffix == ".toml" or path.is_file()):
                config = load_config(path)
            else:
                config = load_config(None, data_dir=path)
        backend = await open_backend(config)
        try:
            yield cls(
                ManagementContext(
                    backend=backend,
                    config=config,
                    hash_password=hash_password,
                    actor=Actor.os_admin(origin),
                    sessions=ControlDirectory.for_config(config),
                    migrator=_migrator,
                )
            )
        finally:
            await backend.close()

    @property
    def backend(self) -> Backend:
        """The open storage backend (for code that needs more than management)."""
        return self._ctx.backend

    @property
    def config(self) -> Config:
        return self._ctx.config

    @property
    def actor(self) -> Actor:
        return self._ctx.actor

    async def as_account(self, name: str, *, origin: str | None = None) -> Store:
        """The same open store, acting as the store account ``name``: the permission check
        then allows what that account may do (a manager: everything over REST; others: their
        own password and usage), and the audit log names it."""
        from msgstore.management.accounts import find_account

        account = await find_account(self._ctx.backend, name)
        actor = Actor(name=account.name, account=account, origin=origin or self.actor.origin)
        return Store(dataclasses.replace(self._ctx, actor=actor))

    def with_progress(self, progress: Callable[[str, int, int], None] | None) -> Store:
        """The same store reporting (what, done, total) of export, restore and migration
        runs to ``progress``."""
        return Store(dataclasses.replace(self._ctx, progress=progress))

    def with_time_limit(self, seconds: float | None) -> Store:
        """The same store stopping a migration run (with TEMP) after ``seconds``."""
        return Store(dataclasses.replace(self._ctx, time_limit=seconds))

    async def run(self, operation: str, /, **params: object) -> Any:
        """Run any registered operation by name (``"forward add"``, ``"queue list"`` ...)."""
        spec = load_operations().get(operation)
        if spec is None:
            raise StoreError(ErrorKind.PARAMS, f"No such operation {operation!r}")
        values: dict[str, object] = {}
        for name, value in params.items():
            if value is None:
                continue
            with about(name):  # a refused value names its parameter (ParamError.fields)
                values[name] = _coerce(spec, name, value)
        try:
            op = spec.build(values)
        except StoreError as exc:
            name_fields(exc, spec, values)
            raise
        return await run_operation(op, self._ctx)


class _Noun:
    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _run(self, kind: type[T], op: str, /, **params: object) -> T:
        return cast(T, await self._store.run(op, **params))


class Accounts(_Noun):
    """``account ...`` operations."""

    async def add(
        self,
        name: str,
        password: str | Secret,
        *,
        kind: AccountKind | str | None = None,
        manager: bool | None = None,
        quota: Limit | str | int | None = None,
        messages: Limit | str | int | None = None,
    ) -> AccountInfo:
        return await self._run(
            AccountInfo,
            "account add",
            name=name,
            password=password,
            kind=kind,
            manager=manager,
            quota=quota,
            messages=messages,
        )

    async def delete(self, name: str) -> None:
        await self._store.run("account delete", name=name)

    async def list(
        self,
        *,
        kind: AccountKind | str | None = None,
        manager: bool | None = None,
        login_disabled: bool | None = None,
        receive_disabled: bool | None = None,
        match: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> _List[AccountInfo]:
        return await self._run(
            list,
            "account list",
            kind=kind,
            manager=manager,
            login_disabled=login_disabled,
            receive_disabled=receive_disabled,
            match=match,
            limit=limit,
            offset=offset,
        )

    async def search(self, text: str) -> _List[AccountInfo]:
        return await self._run(list, "account search", text=text)

    async def show(self, name: str) -> AccountReport:
        return await self._run(AccountReport, "account show", name=name)

    async def modify(
        self,
        name: str,
        *,
        quota: Limit | str | int | None = None,
        messages: Limit | str | int | None = None,
        kind: AccountKind | str | None = None,
        manager: bool | None = None,
        login_disabled: bool | None = None,
        receive_disabled: bool | None = None,
    ) -> AccountInfo:
        return await self._run(
            AccountInfo,
            "account modify",
            name=name,
            quota=quota,
            messages=messages,
            kind=kind,
            manager=manager,
            login_disabled=login_disabled,
            receive_disabled=receive_disabled,
        )

    async def rename(self, name: str, new: str) -> AccountInfo:
        return await self._run(AccountInfo, "account rename", name=name, new=new)

    async def reconstruct(
        self,
        name: str,
        *,
        check: bool = False,
        mailbox: str | None = None,
        new_uidvalidity: bool = False,
    ) -> ReconstructReport:
        return await self._run(
            ReconstructReport,
            "account reconstruct",
            name=name,
            check=check,
            mailbox=mailbox,
            new_uidvalidity=new_uidvalidity,
        )

    async def export(self, name: str, output: str | Path) -> ExportSummary:
        return await self._run(ExportSummary, "account export", name=name, output=str(output))

    async def restore(
        self, name: str, input: str | Path, *, keep_uidvalidity: bool = False
    ) -> RestoreReport:
        return await self._run(
            RestoreReport,
            "account restore",
            name=name,
            input=str(input),
            keep_uidvalidity=keep_uidvalidity,
        )


class Passwords(_Noun):
    """``password set`` and ``password reset``."""

    async def set(self, name: str, password: str | Secret) -> None:
        await self._store.run("password set", name=name, password=password)

    async def reset(self, name: str) -> NewPassword:
        return await self._run(NewPassword, "password reset", name=name)


class Mailboxes(_Noun):
    """``mailbox ...`` operations on any account's tree."""

    async def list(self, user: str, pattern: str = "*") -> _List[MailboxReport]:
        return await self._run(list, "mailbox list", user=user, pattern=pattern)

    async def create(self, user: str, name: str, *, special_use: str = "") -> MailboxInfo:
        return await self._run(
            MailboxInfo, "mailbox create", user=user, name=name, special_use=special_use
        )

    async def delete(self, user: str, name: str) -> None:
        await self._store.run("mailbox delete", user=user, name=name)

    async def rename(self, user: str, old: str, new: str) -> None:
        await self._store.run("mailbox rename", user=user, old=old, new=new)

    async def status(self, user: str, name: str) -> MailboxStatusReport:
        return await self._run(MailboxStatusReport, "mailbox status", user=user, name=name)


class Quotas(_Noun):
    """``quota show`` and ``quota set``."""

    async def show(self, user: str) -> QuotaReport:
        return await self._run(QuotaReport, "quota show", user=user)

    async def set(
        self,
        user: str,
        *,
        storage: Limit | str | int | None = None,
        messages: Limit | str | int | None = None,
    ) -> QuotaReport:
        return await self._run(
            QuotaReport, "quota set", user=user, storage=storage, messages=messages
        )


class Acl(_Noun):
    """``acl ...``: the ACL of any account's mailbox."""

    async def show(self, user: str, mailbox: str) -> _List[AclEntry]:
        return await self._run(list, "acl show", user=user, mailbox=mailbox)

    async def set(self, user: str, mailbox: str, identifier: str, rights: str) -> AclEntry:
        return await self._run(
            AclEntry, "acl set", user=user, mailbox=mailbox, identifier=identifier, rights=rights
        )

    async def delete(self, user: str, mailbox: str, identifier: str) -> None:
        await self._store.run("acl delete", user=user, mailbox=mailbox, identifier=identifier)


class Public(_Noun):
    """``public ...``: the public folders."""

    async def list(self) -> _List[PublicFolder]:
        return await self._run(list, "public list")

    async def create(self, name: str) -> PublicFolder:
        return await self._run(PublicFolder, "public create", name=name)

    async def delete(self, name: str) -> None:
        await self._store.run("public delete", name=name)

    async def owner(self, name: str, account: str) -> AclEntry:
        return await self._run(AclEntry, "public owner", name=name, account=account)

    async def acl_show(self, name: str) -> _List[AclEntry]:
        return await self._run(list, "public acl show", name=name)

    async def acl_set(self, name: str, identifier: str, rights: str) -> AclEntry:
        return await self._run(
            AclEntry, "public acl set", name=name, identifier=identifier, rights=rights
        )

    async def acl_delete(self, name: str, identifier: str) -> None:
        await self._store.run("public acl delete", name=name, identifier=identifier)

    async def quota_show(self) -> QuotaReport:
        return await self._run(QuotaReport, "public quota show")

    async def quota_set(
        self,
        *,
        storage: Limit | str | int | None = None,
        messages: Limit | str | int | None = None,
    ) -> QuotaReport:
        return await self._run(QuotaReport, "public quota set", storage=storage, messages=messages)


class Migrate(_Noun):
    """``migrate mbox | maildir | imap | pop``: bring mail in (docs/migration.md). Options
    are the operations' fields (``create=True``, ``dry_run=True``, ``passwd_file=...``,
    ``forward_to=...``, ...); the result is the run's report, ``failed`` if anything could not
    be migrated (running again resumes)."""

    async def mbox(self, path: str | Path = "", **options: object) -> MigrationReport:
        return await self._run(MigrationReport, "migrate mbox", path=str(path), **options)

    async def maildir(self, path: str | Path, account: str, **options: object) -> MigrationReport:
        return await self._run(
            MigrationReport, "migrate maildir", path=str(path), account=account, **options
        )

    async def imap(
        self, host: str, user: str, password: str | Secret, **options: object
    ) -> MigrationReport:
        return await self._run(
            MigrationReport, "migrate imap", host=host, user=user, password=password, **options
        )

    async def pop(self, *accounts: str, all: bool = False, **options: object) -> MigrationReport:
        return await self._run(
            MigrationReport, "migrate pop", accounts=",".join(accounts) or None, all=all, **options
        )


class Stats(_Noun):
    """``stats show``."""

    async def show(self) -> StoreStats:
        return await self._run(StoreStats, "stats show")


class Audit(_Noun):
    """``audit list``."""

    async def list(
        self,
        *,
        since: dt.datetime | str | None = None,
        actor: str | None = None,
        operation: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> _List[AuditEntry]:
        return await self._run(
            list,
            "audit list",
            since=since,
            actor=actor,
            operation=operation,
            limit=limit,
            offset=offset,
        )


#: Operation name -> "noun.method" of Store. Operations not listed are reachable through
#: ``Store.run`` (a test checks every registered operation is one or the other... and that
#: every entry here names a real method).
METHODS: dict[str, str] = {
    "account add": "accounts.add",
    "account delete": "accounts.delete",
    "account list": "accounts.list",
    "account search": "accounts.search",
    "account show": "accounts.show",
    "account modify": "accounts.modify",
    "account rename": "accounts.rename",
    "account reconstruct": "accounts.reconstruct",
    "account export": "accounts.export",
    "account restore": "accounts.restore",
    "password set": "passwords.set",
    "password reset": "passwords.reset",
    "mailbox list": "mailboxes.list",
    "mailbox create": "mailboxes.create",
    "mailbox delete": "mailboxes.delete",
    "mailbox rename": "mailboxes.rename",
    "mailbox status": "mailboxes.status",
    "quota show": "quotas.show",
    "quota set": "quotas.set",
    "acl show": "acl.show",
    "acl set": "acl.set",
    "acl delete": "acl.delete",
    "public list": "public.list",
    "public create": "public.create",
    "public delete": "public.delete",
    "public owner": "public.owner",
    "public acl show": "public.acl_show",
    "public acl set": "public.acl_set",
    "public acl delete": "public.acl_delete",
    "public quota show": "public.quota_show",
    "public quota set": "public.quota_set",
    "stats show": "stats.show",
    "audit list": "audit.list",
    "migrate mbox": "migrate.mbox",
    "migrate maildir": "migrate.maildir",
    "migrate imap": "migrate.imap",
    "migrate pop": "migrate.pop",
}


# --- the synchronous wrapper -------------------------------------------------------------------


class _SyncProxy:
    """Wraps an object whose coroutine methods are run to completion on a private loop."""

    def __init__(self, target: object, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if isinstance(attr, _Noun):
            return _SyncProxy(attr, self._runner)
        if callable(attr):

            def call(*args: object, **kwargs: object) -> Any:
                value = attr(*args, **kwargs)
                if isinstance(value, Awaitable):
                    result = self._runner.run(_awaited(value))
                    return (
                        _SyncProxy(result, self._runner) if isinstance(result, Store) else result
                    )
                return value

            return call
        return attr


async def _awaited(value: Awaitable[T]) -> T:
    return await value


class SyncStore:
    """The same API without ``await``, for scripts: ``with SyncStore.open(path) as store:``.

    It runs a private event loop; do not use it inside a running loop (use :class:`Store`).
    Methods and nouns are those of :class:`Store` (``store.accounts.add(...)``).
    """

    @staticmethod
    @contextmanager
    def open(
        where: str | Path | None = None, *, config: Config | None = None, origin: str = "python"
    ) -> Iterator[Any]:
        with asyncio.Runner() as runner:
            opener = Store.open(where, config=config, origin=origin)
            store = runner.run(opener.__aenter__())
            try:
                yield _SyncProxy(store, runner)
            except BaseException as exc:
                if not runner.run(opener.__aexit__(type(exc), exc, exc.__traceback__)):
                    raise
            else:
                runner.run(opener.__aexit__(None, None, None))
