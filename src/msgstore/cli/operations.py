"""The management operations as click commands, built from their declarations.

Nothing here declares a parameter: each command's arguments and options are derived from the
operation's fields (:func:`msgstore.management.operation.spec_of`), so the CLI cannot drift
from the REST API or the Python API. The mapping from field to command line:

- a ``positional`` field is an argument; every other field an option named after it
  (``special_use`` -> ``--special-use``);
- ``bool`` -> a flag; ``bool | None`` -> a pair of switches (``--manager/--no-manager``, or the
  declared words such as ``--disable-login/--enable-login``); not given = unchanged;
- an enum -> a choice of its values;
- a :class:`~msgstore.management.operation.Secret` -> ``--<name>-stdin``: the first line of
  standard input, trailing newline removed. Secrets never come from the command line (``ps``
  and shell history show it); on a terminal the command prompts instead;
- every text value is parsed by the field's parser, so a bad value is the same one-line
  ``PARAMS`` error (exit 65) as from any other face;
- every command that returns something takes ``--json``; an operation declared with
  ``confirm=True`` takes ``--yes`` (and asks on a terminal without it).

:data:`COMMANDS` says where each operation sits in the command tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

import click

from msgstore.cli.errors import EX_USAGE, fail
from msgstore.core.errors import ErrorKind, StoreError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from msgstore.management.operation import (
        ManagementContext,
        Operation,
        OperationSpec,
        Param,
        Secret,
    )

# The management layer is imported inside the functions: this module is also the command
# table that ``msgstore --help`` reads (cli/commands.py), and a command imports only the
# management module that declares its operation (:data:`DECLARED_IN`).

#: Command path -> operation name. Every operation appears at least once (a test checks).
COMMANDS: Final[dict[tuple[str, ...], str]] = {
    ("account", "add"): "account add",
    ("account", "del"): "account delete",
    ("account", "list"): "account list",
    ("account", "show"): "account show",
    ("account", "modify"): "account modify",
    ("account", "search"): "account search",
    ("account", "rename"): "account rename",
    ("account", "reconstruct"): "account reconstruct",
    ("account", "export"): "account export",
    ("account", "restore"): "account restore",
    ("passwd",): "password set",
    ("password", "set"): "password set",
    ("password", "reset"): "password reset",
    ("mailbox", "status"): "mailbox status",
    ("acl", "show"): "acl show",
    ("acl", "set"): "acl set",
    ("acl", "delete"): "acl delete",
    ("public", "list"): "public list",
    ("public", "create"): "public create",
    ("public", "delete"): "public delete",
    ("public", "owner"): "public owner",
    ("public", "acl", "show"): "public acl show",
    ("public", "acl", "set"): "public acl set",
    ("public", "acl", "delete"): "public acl delete",
    ("public", "quota", "show"): "public quota show",
    ("public", "quota", "set"): "public quota set",
    ("stats", "show"): "stats show",
    ("audit", "list"): "audit list",
    ("mailbox", "list"): "mailbox list",
    ("mailbox", "create"): "mailbox create",
    ("mailbox", "delete"): "mailbox delete",
    ("mailbox", "rename"): "mailbox rename",
    ("quota", "set"): "quota set",
    ("quota", "show"): "quota show",
    ("forward", "add"): "forward add",
    ("forward", "del"): "forward delete",
    ("forward", "list"): "forward list",
    ("forward", "show"): "forward show",
    ("forward", "account"): "forward account show",
    ("queue", "list"): "queue list",
    ("queue", "show"): "queue show",
    ("queue", "flush"): "queue flush",
    ("queue", "retry"): "queue retry",
    ("queue", "delete"): "queue delete",
    ("token", "create"): "token create",
    ("token", "list"): "token list",
    ("token", "revoke"): "token revoke",
    ("session", "list"): "session list",
    ("session", "kill"): "session kill",
    ("stats", "live"): "stats live",
    # built by cli/migrate.py (face-only options: --quiet, --password-file):
    ("migrate", "mbox"): "migrate mbox",
    ("migrate", "maildir"): "migrate maildir",
    ("migrate", "imap"): "migrate imap",
    ("migrate", "pop"): "migrate pop",
}
#: Commands another module builds from the operation (with face-only extras); the command
#: table (cli/commands.py) takes them from there.
BUILT_ELSEWHERE: Final = frozenset({"migrate"})
#: Other spellings accepted but not listed in --help.
ALIASES: Final[dict[tuple[str, ...], str]] = {
    ("account", "delete"): "account delete",
    ("forward", "delete"): "forward delete",
}
GROUP_HELP: Final = {
    "account": "Create, list, search, show, change, rename, delete, reconstruct, export and "
    "restore accounts.",
    "password": "Set an account's password, or reset it to a generated one.",
    "acl": "Show and change the access rights (RFC 4314) on any account's mailbox.",
    "public": "Public folders: create, delete, list, owners, ACLs and quota.",
    "public acl": "Show and change a public folder's access rights.",
    "public quota": "Show and set the quota of the public folder tree.",
    "audit": "The record of management changes: who, from where, what, when.",
    "mailbox": "List, create, delete, rename an account's mailboxes and show their status.",
    "quota": "Show and set an account's quota limits.",
    "forward": "Forward mail for an address to accounts, public folders or elsewhere.",
    "queue": "Show and manage the outbound relay queue.",
    "token": "Create, list and revoke bearer tokens for the REST API.",
    "session": "List and disconnect the live sessions of the running server.",
    "stats": "Statistics of the store and the running server.",
}
#: The ``msgstore --help`` line of a top-level command that is one operation: its summary (a
#: test checks it is the operation's).
ROOT_SUMMARY: Final = {"passwd": "Set an account's password (stored as an argon2id hash)."}
#: The module of msgstore.management declaring the operations named ``<word> ...``, and the
#: exceptions by full name. Only a shortcut: an operation not found there is looked up with
#: load_operations() (a test checks the table).
DECLARED_IN: Final = {
    "account": "accounts",
    "account export": "backup",
    "account reconstruct": "backup",
    "account restore": "backup",
    "acl": "acl",
    "audit": "audit",
    "forward": "forwarding",
    "mailbox": "mailboxes",
    "migrate": "migration",
    "password": "accounts",
    "public": "public",
    "queue": "queue",
    "quota": "quotas",
    "session": "sessions",
    "stats": "stats",
    "stats live": "stats_live",
    "token": "tokens",
}


def operation_spec(name: str) -> OperationSpec:
    """The declaration of operation ``name``, importing only the module that declares it."""
    from msgstore.management import OPERATIONS, load_operations

    if name not in OPERATIONS:
        module = DECLARED_IN.get(name) or DECLARED_IN.get(name.split()[0])
        if module is not None:
            importlib.import_module(f"msgstore.management.{module}")
    if name not in OPERATIONS:
        load_operations()
    return OPERATIONS[name]


def _dash(name: str) -> str:
    return name.replace("_", "-")


def _secret_option(p: Param) -> str:
    return f"{p.name}_stdin"


def _click_params(spec: OperationSpec) -> list[click.Parameter]:
    from msgstore.management.operation import Secret

    out: list[click.Parameter] = []
    for p in spec.params:
        if p.type is Secret:
            out.append(
                click.Option(
                    [f"--{_dash(p.name)}-stdin", _secret_option(p)],
                    is_flag=True,
                    help=f"Read the {_dash(p.name)} from the first line of standard input.",
                )
            )
        elif p.type is bool and p.optional:
            on, off = p.switch or (_dash(p.name), "no-" + _dash(p.name))
            out.append(click.Option([f"--{on}/--{off}", p.name], default=None, help=p.help))
        elif p.type is bool:
            out.append(
                click.Option(
                    [f"--{_dash(p.name)}", p.name],
                    is_flag=True,
                    default=bool(p.default),
                    help=p.help,
                )
            )
        elif p.positional:
            out.append(
                click.Argument([p.name], required=p.required, metavar=p.metavar or p.name.upper())
            )
        else:
            out.append(
                click.Option(
                    [f"--{_dash(p.name)}", p.name],
                    default=None,
                    type=click.Choice(p.choices) if p.choices else click.STRING,
                    metavar=p.metavar,
                    help=p.help,
                )
            )
    if spec.result is not type(None):
        out.append(click.Option(["--json", "as_json"], is_flag=True, help="Print JSON."))
    if spec.confirm:
        out.append(click.Option(["--yes", "yes"], is_flag=True, help="Do not ask to confirm."))
    return out


def read_secret(what: str, from_stdin: bool, option: str) -> Secret:
    """The first line of standard input; a prompt on a terminal; otherwise a usage error."""
    from msgstore.management.operation import Secret

    if from_stdin:
        line = sys.stdin.buffer.readline()
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StoreError(ErrorKind.PARAMS, f"the {what} is not valid UTF-8") from exc
        return Secret(text.removesuffix("\n").removesuffix("\r"))
    if sys.stdin.isatty():
        return Secret(click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=True))
    fail(f"no {what} given: write it on standard input and pass {option}", EX_USAGE)


def collect(
    spec: OperationSpec, raw: dict[str, object], *, secrets: Mapping[str, Secret] | None = None
) -> tuple[dict[str, object], dict[str, object]]:
    """(parsed values, values as typed) from a command's click arguments; ``raw`` loses the
    operation's fields. A Secret comes from ``secrets`` if there, else standard input."""
    from msgstore.management.operation import Secret

    values: dict[str, object] = {}
    given: dict[str, object] = {}  # as typed: what remote mode sends
    for p in spec.params:
        if p.type is Secret:
            from_stdin = bool(raw.pop(_secret_option(p)))
            if secrets and p.name in secrets:
                values[p.name] = given[p.name] = secrets[p.name]
                continue
            option = f"--{_dash(p.name)}-stdin"
            values[p.name] = given[p.name] = read_secret(
                p.name.replace("_", " "), from_stdin, option
            )
            continue
        value = raw.pop(p.name)
        if value is None:
            continue
        given[p.name] = value
        values[p.name] = value if p.type is bool else p.parse(str(value))
    return values, given


def execute(
    spec: OperationSpec,
    op: Operation,
    given: Mapping[str, object],
    password: str | None,
    *,
    bars: bool = True,
) -> object:
    """Run ``op`` on the data directory, or (``password`` given: remote mode) on the server;
    progress bars on a terminal for the operations that report progress, unless ``bars`` is
    False."""
    if password is not None:
        from msgstore.cli import remote
        from msgstore.cli.runtime import cli_context

        return remote.call(cli_context(), spec, given, password)
    return _run_locally(op, bars=bars and (spec.name in SHOWS_PROGRESS or spec.long))


def remote_password() -> str | None:
    """The remote account's password in remote mode (read before any secret), else None."""
    from msgstore.cli.runtime import cli_context

    cli = cli_context()
    if cli.url is None:
        return None
    from msgstore.cli import remote

    return remote.password_of(cli)  # the first line of stdin, before any secret


def _callback(spec: OperationSpec) -> Callable[..., None]:
    def run(**raw: object) -> None:
        as_json = bool(raw.pop("as_json", False))
        yes = bool(raw.pop("yes", False))
        password = remote_password()
        values, given = collect(spec, raw)
        op = spec.build(values)  # the same PARAMS errors locally and remotely
        if spec.confirm and not yes:
            what = " ".join(str(values[p.name]) for p in spec.params if p.positional)
            if not sys.stdin.isatty():
                fail(f"'{spec.name} {what}' destroys data: pass --yes to confirm", EX_USAGE)
            click.confirm(f"{spec.name} {what}: this cannot be undone. Continue?", abort=True)
        result = execute(spec, op, given, password)
        if spec.result is not type(None):
            from msgstore.cli.printers import print_result

            print_result(result, as_json=as_json)

    return run


#: Operations that report progress (ManagementContext.progress): bars on a terminal.
SHOWS_PROGRESS: Final = frozenset({"account export", "account restore", "account reconstruct"})


def _run_locally(op: Operation, *, bars: bool) -> object:
    """Run on the data directory as the OS administrator, with progress bars on a terminal."""
    from msgstore.cli.runtime import cli_context, run_with_store
    from msgstore.management.operation import run_operation

    with progress_bars(enabled=bars) as progress:

        async def work(ctx: ManagementContext) -> object:
            ctx = dataclasses.replace(ctx, progress=progress, migrator=_migrator)
            return await run_operation(op, ctx)

        return run_with_store(cli_context(), work)


async def _migrator(op: Operation, ctx: ManagementContext) -> object:
    """The migration engine, imported only when a migration runs."""
    from msgstore.migrate.service import run_migration

    return await run_migration(op, ctx)


@contextlib.contextmanager
def progress_bars(*, enabled: bool = True) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress callback drawing rich bars on standard error when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bars = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(what: str, done: int, total: int) -> None:
        """``total`` 0: not known (an open-ended bar) until the task is done."""
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total or None)
        bars.update(tasks[what], completed=done, total=total or None)

    with bars:
        yield update


def command_for(spec: OperationSpec, name: str, *, hidden: bool = False) -> click.Command:
    """A click command for one operation."""
    return click.Command(
        name,
        callback=_callback(spec),
        params=_click_params(spec),
        help=spec.doc,
        short_help=spec.summary,
        hidden=hidden,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _under(path: tuple[str, ...]) -> set[str]:
    """The words that follow ``path`` in the command tree (aliases included)."""
    n = len(path)
    return {p[n] for table in (COMMANDS, ALIASES) for p in table if len(p) > n and p[:n] == path}


def _make(path: tuple[str, ...]) -> click.Command | None:
    """The command or group at ``path``; None if there is none."""
    if path in COMMANDS:
        return command_for(operation_spec(COMMANDS[path]), path[-1])
    if path in ALIASES:
        return command_for(operation_spec(ALIASES[path]), path[-1], hidden=True)
    if _under(path):
        return OperationGroup(path)
    return None


class OperationGroup(click.Group):
    """A group of operation commands (``account``, ``public acl``): each subcommand is made
    from its operation when asked for, importing only the module that declares it."""

    def __init__(self, path: tuple[str, ...]) -> None:
        super().__init__(path[-1], help=GROUP_HELP.get(" ".join(path)))
        self.path = path

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_under(self.path) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            made = _make((*self.path, cmd_name))
            if made is None:
                return None
            self.add_command(made, cmd_name)
        return self.commands[cmd_name]


def top_level(name: str) -> click.Command:
    """The top-level command ``name`` of the operations (cli/commands.py)."""
    made = _make((name,))
    if made is None:
        raise KeyError(name)
    return made
