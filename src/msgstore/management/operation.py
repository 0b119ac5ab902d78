"""How an operation is declared: once, as a frozen dataclass, for every face.

An operation is a frozen, slotted dataclass whose fields are its parameters and whose
``async run(ctx)`` does the work; :func:`operation` registers it under a name such as
``"account add"``. The faces (the CLI now; the REST API, the web admin and ``msgstore.api``
later) never declare parameters of their own: they read :func:`spec_of` and build their
options, routes and forms from it, so a face cannot disagree with the operation about a
parameter, its type, its default or how its text form is parsed.

    @operation("quota set")
    @dataclass(frozen=True, slots=True)
    class QuotaSet:
        \"\"\"Set an account's quota limits.\"\"\"

        user: str = field(metadata=param("Account name.", positional=True))
        storage: Limit | None = field(
            default=None, metadata=param("Storage limit, e.g. 1G.", parse=Limit.parse_size)
        )

        async def run(self, ctx: ManagementContext) -> QuotaReport: ...

Each parameter is described by :class:`Param`, derived from the field's type and its
:func:`param` metadata:

- ``str`` (or a ``NewType`` of it), ``int``, enums, ``bool`` and ``X | None`` are understood
  from the annotation; ``parse`` overrides how text becomes a value (sizes, limits, names);
- ``bool`` is a flag; ``bool | None`` is a pair of switches (``switch=("disable-login",
  "enable-login")``, default ``--x/--no-x``) where ``None`` means "leave unchanged";
- :class:`Secret` values are never taken from a command line: a face reads them from a
  channel that does not end up in ``ps`` or shell history (the CLI: standard input).

Every text parser raises :class:`~msgstore.core.errors.StoreError` with ``PARAMS`` and a
one-line reason, so each face reports the same message.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import os
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, final

from msgstore.core.accounts import AccountInfo
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.core.units import parse_size
from msgstore.storage.base import Backend

if TYPE_CHECKING:
    from msgstore.config import Config
    from msgstore.management.sessions import SessionDirectory

#: The key under which :func:`param` stores its description in a field's metadata.
_PARAM_KEY: Final = "msgstore.param"
#: Words that mean "no limit" wherever a limit is written as text.
UNLIMITED_WORDS: Final = frozenset({"unlimited", "none", "0"})
#: The last word of operations that only read (not recorded in the audit log unless refused).
READ_VERBS: Final = frozenset({"list", "show", "status", "search", "live"})

_log = logging.getLogger("msgstore.management")


# --- value types operations take --------------------------------------------------------------


@final
class Secret:
    """A password or key: its value never appears in ``repr``, ``str`` or a traceback.

    Modelled on starlette's ``Secret``; call :meth:`reveal` at the one place that needs the
    value (hashing).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Limit:
    """A quota limit as given: a number, or ``None`` for unlimited.

    A parameter typed ``Limit | None`` uses ``None`` for "leave unchanged" and
    ``Limit(None)`` for "remove the limit"; ``0`` and ``unlimited`` both mean no limit, as
    in Dovecot's quota rules.
    """

    value: int | None

    @classmethod
    def parse_size(cls, text: str) -> Limit:
        """``"100M"`` -> ``Limit(104857600)`` octets; ``"unlimited"``/``"0"`` -> no limit."""
        if text.strip().lower() in UNLIMITED_WORDS:
            return cls(None)
        return cls(parse_size(text) or None)

    @classmethod
    def parse_count(cls, text: str) -> Limit:
        """``"1000"`` -> ``Limit(1000)``; ``"unlimited"``/``"0"`` -> no limit."""
        if text.strip().lower() in UNLIMITED_WORDS:
            return cls(None)
        return cls(parse_int(text, what="message limit") or None)

    def __str__(self) -> str:
        return "unlimited" if self.value is None else str(self.value)


UNLIMITED: Final = Limit(None)


def octets_to_kib(octets: int | None) -> int | None:
    """A storage limit in octets as RFC 9208 KiB, rounded up so the limit is never lower
    than asked."""
    return None if octets is None else (octets + 1023) // 1024


def parse_int(text: str, *, what: str = "number") -> int:
    """A non-negative decimal integer of at most 18 digits, or PARAMS."""
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 18:
        raise StoreError(ErrorKind.PARAMS, f"Invalid {what} {text!r}: expected a whole number")
    return int(stripped)


# --- errors that name the parameters they concern ---------------------------------------------

_NO_VALUE: Final = object()


class ParamError(StoreError):
    """PARAMS about one or more parameters, so that a face can say which (REST: the ``fields``
    of a 422).

    Raise it with ``fields=`` when the check knows the parameter's name, or with ``value=``
    (the refused value) when it does not -- a helper such as :func:`account_name` serves many
    operations whose fields are named differently; :func:`run_operation` and the faces then
    name every parameter of the operation holding that value (:func:`name_fields`).
    """

    def __init__(
        self,
        public: str,
        *,
        fields: typing.Iterable[str] = (),
        value: object = _NO_VALUE,
        detail: str | None = None,
    ) -> None:
        super().__init__(ErrorKind.PARAMS, public, detail=detail)
        self.fields: dict[str, str] = dict.fromkeys(fields, public)
        self.value = value


@contextmanager
def about(*names: str) -> Iterator[None]:
    """Re-raise a PARAMS error from the block as a :class:`ParamError` naming ``names``
    (unless it already names some)::

        with about("identifier"):
            identifier = await check_identifier(backend, self.identifier)
    """
    try:
        yield
    except ParamError as exc:
        if not exc.fields:
            exc.fields = dict.fromkeys(names, exc.public)
        raise
    except StoreError as exc:
        if exc.kind is not ErrorKind.PARAMS:
            raise
        raise ParamError(exc.public, fields=names, detail=exc.detail) from exc


def name_fields(exc: StoreError, spec: OperationSpec, values: Mapping[str, object]) -> None:
    """Fill a :class:`ParamError`'s ``fields`` from the value it refused: every parameter in
    ``values`` (the operation's values, or the parsed ones before it was built) holding it."""
    if not isinstance(exc, ParamError) or exc.fields or exc.value is _NO_VALUE:
        return
    for p in spec.params:
        if p.name in values and _same(values[p.name], exc.value):
            exc.fields[p.name] = exc.public


def _same(held: object, refused: object) -> bool:
    if isinstance(held, Secret) or isinstance(refused, Secret):
        return held == refused
    return held is refused or str(held) == str(refused)


# --- the context operations run in ------------------------------------------------------------


class Access(enum.Enum):
    """Who may run an operation (issue #6: one permission check for every face)."""

    #: The operating-system administrator (CLI or Python API on the data directory) and store
    #: accounts with the manager privilege.
    MANAGER = "manager"
    #: Those, and any account acting on itself: the operation's ``self_field`` (default
    #: ``user``) must name the calling account. Changing one's own password, seeing one's own
    #: usage.
    SELF = "self"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who runs an operation: what the permission check decides on and the audit log records.

    ``account`` is None for the operating-system administrator (whoever can read the data
    directory: the local CLI, the Python API, ``msgstore serve`` itself); otherwise the store
    account that authenticated to the REST API, the web pages or poppassd.
    """

    name: str  # the OS user name, or the account name
    account: AccountInfo | None = None
    #: Where the request came from: "cli", "python", "rest 192.0.2.7", "web 192.0.2.7", ...
    origin: str = "cli"

    @property
    def is_manager(self) -> bool:
        """True for the OS administrator and for accounts with the manager privilege."""
        return self.account is None or self.account.manager

    @classmethod
    def os_admin(cls, origin: str = "cli") -> Actor:
        """The local administrator, named after the OS user running this process."""
        import getpass

        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = f"uid {os.getuid()}"
        return cls(name=name, account=None, origin=origin)


@dataclass(frozen=True, slots=True)
class ManagementContext:
    """What an operation runs against: the store, the configuration, and a password hasher.

    The hasher is passed in rather than imported so that management depends on the storage
    interface and the core only (docs/architecture.md); the faces pass
    ``msgstore.auth.passwords.hash_password``. It is a blocking function: operations call it
    in a worker thread.
    """

    backend: Backend
    config: Config
    hash_password: Callable[[str], str]
    #: Who is running the operation; faces other than the local CLI always set it.
    actor: Actor = dataclasses.field(default_factory=Actor.os_admin)
    #: The running server's live sessions and statistics (management/sessions.py); None
    #: when the face cannot reach the server.
    sessions: SessionDirectory | None = None
    #: Called as long operations (export, restore) advance: (what, done, total). A face that
    #: shows progress bars passes one; None: nobody is watching.
    progress: Callable[[str, int, int], None] | None = None
    #: Runs the migration operations (management/migration.py): the faces pass
    #: ``msgstore.migrate.service.run_migration``, which sits above management. None: this
    #: face cannot migrate (NOT_POSSIBLE).
    migrator: Callable[[Operation, ManagementContext], Awaitable[object]] | None = None
    #: Seconds a long operation (``long=True``: migration runs) may take before it stops with
    #: TEMP; None: no limit. The REST API sets ``[web] api_migrate_timeout``.
    time_limit: float | None = None


# --- declaring operations ---------------------------------------------------------------------


class Operation(Protocol):
    """What every registered operation class provides (besides being a dataclass)."""

    def run(self, ctx: ManagementContext) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of an operation, as every face sees it."""

    name: str  # the field name, e.g. "login_disabled"
    help: str
    #: The value type without ``| None``: str, int, bool, an Enum subclass, Secret or Limit.
    type: type
    optional: bool  # the annotation includes None
    required: bool  # the field has no default
    default: object
    positional: bool
    #: Text -> value; raises StoreError(PARAMS). Not used for bool and Secret parameters.
    parse: Callable[[str], object]
    #: For ``bool | None``: the words for True and for False ("disable-login", "enable-login").
    switch: tuple[str, str] | None
    metavar: str | None
    choices: tuple[str, ...] | None  # the accepted text values of an enum parameter
    #: A file parameter whose content travels instead of its name where the operation runs
    #: elsewhere (REST): "out" -- the operation writes the file, the response body is its
    #: content; "in" -- the operation reads it, the request body is its content. None: an
    #: ordinary value.
    stream: Literal["out", "in"] | None = None
    #: The media type of a stream's content ("application/x-tar").
    media_type: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """A registered operation: its name, its class, its parameters and its result type."""

    name: str
    cls: type[Operation]
    params: tuple[Param, ...]
    summary: str  # the first line of the docstring
    doc: str
    #: The annotation of ``run``'s result; ``None`` (the type) for "nothing to print".
    result: object
    #: True if an interactive face should ask before running it (it destroys data).
    confirm: bool
    #: Who may run it, and for Access.SELF the field that names the account acted on.
    access: Access
    self_field: str
    #: The REST route: ("POST", "/accounts/{name}"); path variables are field names, the
    #: other fields come from the query string (GET, DELETE) or the JSON body. None: the
    #: operation is not offered over HTTP (it needs the data directory itself).
    http: tuple[str, str] | None
    #: True if running it changes something (or copies data out): run_operation records it in
    #: the audit log. Reads are recorded only when refused (NO_PERM).
    mutates: bool = True
    #: May run for minutes (migration runs): a face that waits for it (the REST API) bounds
    #: it with ``ManagementContext.time_limit``.
    long: bool = False

    def build(self, values: Mapping[str, object]) -> Operation:
        """Construct the operation from parsed values (missing ones take their defaults)."""
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StoreError(ErrorKind.PARAMS, f"Unknown parameter {unknown[0]!r}")
        missing = [p.name for p in self.params if p.required and p.name not in values]
        if missing:
            raise ParamError(f"{self.name}: {missing[0]} is required", fields=missing)
        return self.cls(**values)


#: Every registered operation by name, in registration order.
OPERATIONS: Final[dict[str, OperationSpec]] = {}
_BY_CLASS: Final[dict[type, OperationSpec]] = {}

_T = TypeVar("_T")


def param(
    help: str,
    *,
    positional: bool = False,
    parse: Callable[[str], object] | None = None,
    switch: tuple[str, str] | None = None,
    metavar: str | None = None,
    stream: Literal["out", "in"] | None = None,
    media_type: str = "application/octet-stream",
) -> dict[str, object]:
    """Field metadata describing a parameter; use as ``field(metadata=param(...))``.

    ``stream`` marks a file name whose content a remote face sends or receives instead
    (:attr:`Param.stream`)."""
    spec = {
        "help": help,
        "positional": positional,
        "parse": parse,
        "switch": switch,
        "metavar": metavar,
        "stream": stream,
        "media_type": media_type,
    }
    return {_PARAM_KEY: spec}


def operation(
    name: str,
    *,
    confirm: bool = False,
    access: Access = Access.MANAGER,
    self_field: str = "user",
    http: tuple[str, str] | None = None,
    mutates: bool | None = None,
    long: bool = False,
) -> Callable[[type[_T]], type[_T]]:
    """Register a frozen dataclass as the operation ``name`` (e.g. ``"account add"``).

    ``access`` says who may run it (:class:`Access`); ``http`` is its REST route (method,
    path under ``/api/v1``), declared here so that every face reads one declaration.
    ``mutates`` says whether the audit log records it; by default every operation except
    those whose last word is a reading verb (:data:`READ_VERBS`: list, show, status, search).

    Raises TypeError at import time if the class is not a frozen dataclass, a field lacks
    :func:`param` metadata, or a field's type is not one the faces understand; so a broken
    declaration fails every test run, not a request.
    """

    def register(cls: type[_T]) -> type[_T]:
        if name in OPERATIONS:
            raise TypeError(f"operation {name!r} is declared twice")
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"operation {name!r}: {cls.__name__} must be a frozen dataclass")
        run = getattr(cls, "run", None)
        if run is None or not inspect.iscoroutinefunction(run):
            raise TypeError(f"operation {name!r}: {cls.__name__} needs 'async def run(self, ctx)'")
        hints = typing.get_type_hints(cls)
        params = tuple(_param_of(name, f, hints[f.name]) for f in dataclasses.fields(cls))
        doc = (cls.__doc__ or "").strip()
        result = typing.get_type_hints(run).get("return")
        spec = OperationSpec(
            name=name,
            cls=typing.cast(type[Operation], cls),
            params=params,
            summary=doc.splitlines()[0] if doc else name,
            doc=doc,
            result=result,
            confirm=confirm,
            access=access,
            self_field=self_field,
            http=http,
            mutates=(name.split()[-1] not in READ_VERBS) if mutates is None else mutates,
            long=long,
        )
        streams = [p for p in params if p.stream is not None]
        if len(streams) > 1 or any(p.type is not str or p.positional for p in streams):
            raise TypeError(f"operation {name!r}: one stream field at most, a str option")
        if access is Access.SELF and self_field not in {p.name for p in params}:
            raise TypeError(f"operation {name!r}: Access.SELF needs a field {self_field!r}")
        if http is not None:
            for var in _path_variables(http[1]):
                if var not in {p.name for p in params}:
                    raise TypeError(f"operation {name!r}: route variable {var!r} is no field")
        OPERATIONS[name] = spec
        _BY_CLASS[cls] = spec
        return cls

    return register


def spec_of(cls: type[Operation]) -> OperationSpec:
    """The declaration of a registered operation class."""
    return _BY_CLASS[cls]


def check_access(spec: OperationSpec, op: Operation, actor: Actor) -> None:
    """Raise NO_PERM unless ``actor`` may run ``op`` (the one permission check of every face)."""
    if actor.is_manager:
        return
    if spec.access is Access.SELF and actor.account is not None:
        target = getattr(op, spec.self_field, None)
        if isinstance(target, str) and target.casefold() == actor.account.name.casefold():
            return
    raise StoreError(ErrorKind.NO_PERM, f"Permission denied: {spec.name} needs a manager")


async def run_operation(op: Operation, ctx: ManagementContext) -> object:
    """Run ``op`` as ``ctx.actor``: the permission check, the operation, the audit record.

    Every face calls this rather than ``op.run`` so that no face can forget the check or the
    audit log. An operation that ``mutates`` is recorded whatever its outcome ("ok" or the
    error kind); any operation refused with NO_PERM is recorded too. A failure to write the
    record is logged, never raised: the change itself has happened.
    """
    spec = spec_of(type(op))
    try:
        check_access(spec, op, ctx.actor)
        result = await op.run(ctx)
    except StoreError as exc:
        name_fields(exc, spec, {p.name: getattr(op, p.name) for p in spec.params})
        if spec.mutates or exc.kind is ErrorKind.NO_PERM:
            await _audit(ctx, spec, op, exc.kind.name.lower(), exc.public)
        raise
    except Exception as exc:
        if spec.mutates:
            await _audit(ctx, spec, op, "internal", f"{type(exc).__name__}")
        raise
    if spec.mutates:
        await _audit(ctx, spec, op, "ok", "")
    return result


#: Written instead of a Secret's value in the audit log.
REDACTED: Final = "<redacted>"


def audit_params(spec: OperationSpec, op: Operation) -> dict[str, object]:
    """The operation's parameters as JSON values, secrets redacted."""
    from msgstore.management.jsonable import to_json

    out: dict[str, object] = {}
    for p in spec.params:
        value = getattr(op, p.name)
        if isinstance(value, Secret):
            out[p.name] = REDACTED
        elif isinstance(value, Limit):
            out[p.name] = "unlimited" if value.value is None else value.value
        else:
            out[p.name] = to_json(value)
    return out


def actor_label(actor: Actor) -> str:
    """How the audit log names an actor: ``os:<user>`` or the account name."""
    return actor.name if actor.account is not None else f"os:{actor.name}"


async def _audit(
    ctx: ManagementContext, spec: OperationSpec, op: Operation, outcome: str, message: str
) -> None:
    import datetime as dt
    import json

    from msgstore.storage.base import AuditRecord

    record = AuditRecord(
        ts=dt.datetime.now(dt.UTC),
        actor=actor_label(ctx.actor),
        origin=ctx.actor.origin,
        operation=spec.name,
        params=json.dumps(audit_params(spec, op), ensure_ascii=False, sort_keys=True),
        outcome=outcome,
        message=message,
    )
    try:
        await ctx.backend.append_audit(record)
    except Exception as exc:  # the change is done; losing its record must not undo the answer
        _log.error("audit log: could not record %s by %s: %s", spec.name, record.actor, exc)


def _path_variables(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _param_of(op: str, f: dataclasses.Field[Any], annotation: object) -> Param:
    meta = f.metadata.get(_PARAM_KEY)
    if meta is None:
        raise TypeError(f"operation {op!r}: field {f.name!r} has no param() metadata")
    value_type, optional = _unwrap_optional(annotation)
    has_default = (
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    )
    default: object = None
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    choices: tuple[str, ...] | None = None
    parse = meta["parse"]
    if isinstance(value_type, type) and issubclass(value_type, enum.Enum):
        choices = tuple(str(member.value) for member in value_type)
        parse = parse or _enum_parser(value_type)
    elif value_type is int:
        parse = parse or (lambda text: parse_int(text, what=f.name.replace("_", " ")))
    elif value_type is str:
        parse = parse or str
    elif value_type in (bool, Secret):
        parse = parse or _no_text_form(f.name)
    elif parse is None:
        raise TypeError(
            f"operation {op!r}: field {f.name!r} of type {value_type!r} needs a parse= function"
        )
    if meta["switch"] is not None and not (value_type is bool and optional):
        raise TypeError(f"operation {op!r}: switch= is for 'bool | None' fields ({f.name!r})")
    if not isinstance(value_type, type):
        raise TypeError(f"operation {op!r}: field {f.name!r} has unsupported type {annotation!r}")
    return Param(
        name=f.name,
        help=meta["help"],
        type=value_type,
        optional=optional,
        required=not has_default,
        default=default,
        positional=meta["positional"],
        parse=parse,
        switch=meta["switch"],
        metavar=meta["metavar"],
        choices=choices,
        stream=meta["stream"],
        media_type=meta["media_type"],
    )


def _unwrap_optional(annotation: object) -> tuple[object, bool]:
    """``X | None`` -> ``(X, True)``; a NewType -> its supertype; anything else as is."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return annotation, optional
        annotation = args[0]
    while isinstance(annotation, typing.NewType):
        annotation = annotation.__supertype__
    return annotation, optional


def _enum_parser(enum_type: type[enum.Enum]) -> Callable[[str], object]:
    def parse(text: str) -> object:
        for member in enum_type:
            if str(member.value) == text.strip().lower():
                return member
        allowed = ", ".join(str(m.value) for m in enum_type)
        raise StoreError(ErrorKind.PARAMS, f"Invalid value {text!r}: expected one of {allowed}")

    return parse


def _no_text_form(name: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        raise StoreError(ErrorKind.PARAMS, f"{name} has no text form")

    return parse
