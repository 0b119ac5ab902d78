"""The one typed configuration of msgstore, read from one TOML file.

Every key is declared once, below, as a pydantic field carrying its type, its default (written as
a user would write it in ``msgstore.toml``) and its documentation; docs/configuration.md is
rendered from these declarations by :func:`config_docs` (``msgstore config docs``) and a test
fails when the committed file differs. Every key is optional: ``Config()`` runs out of the box.

    load_config(path, data_dir=...) -> Config     tomllib + validation, ConfigError on any problem
    Config                                        .imap .pop3 .lmtp .smtp .poppassd .web
                                                  .tls .store .auth .log .server (frozen
                                                  sections)
    HostPort / UnixSocket                         one listen address: "host:port", "unix:/path"
    ConfigError                                   one line per problem: file, dotted key, reason
    config_docs() / dump_toml(config)             the generated manual / the effective file

Adding a key is one line in its section, e.g.::

    max_literal: Size = setting("64K", "Largest literal outside APPEND; larger ones get TOOBIG.")

with one of the value types below (``Listen``, ``Size``, ``Duration``, ``Switch``, ``Count``,
``Text``, ``DataPath``, ``OptionalPath`` or a ``Literal`` of choices). Values with units are
written with their unit ("50M", "30m") and held as plain ``int`` octets or seconds.

Only this module reads TOML; only the CLI reads the environment (``MSGSTORE_CONFIG``,
``MSGSTORE_DATA``) and passes what it found here.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from msgstore.core.errors import StoreError
from msgstore.core.names import mailbox_name
from msgstore.core.units import format_size, parse_duration, parse_size


class ConfigError(Exception):
    """The configuration cannot be used.

    ``str(error)`` is one line per problem, each naming the file, the dotted key and the reason
    (``msgstore.toml: store.max_message_size: invalid size '5X': ...``); the first line is
    useful on its own. ``lines`` holds the same lines as a list.
    """

    def __init__(self, lines: list[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


# --- value types -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostPort:
    """One listen address: ``127.0.0.1:1143``, ``[::1]:143``, ``mail.example.org:993``.

    ``host`` holds an IPv6 address without its brackets. Port 0 asks the system for a free port
    (useful in tests; the server logs the port it got).
    """

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host:port`` or ``[ipv6]:port``. Raises ValueError with the reason."""
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"invalid address {text!r}: write an IPv6 address as [::1]:143")
            host, port_text = text[1:end], text[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(
                    f"invalid address {text!r}: {host!r} is not an IPv6 address"
                ) from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"invalid address {text!r}: write host:port, e.g. 127.0.0.1:1143")
            if ":" in host:
                raise ValueError(
                    f"invalid address {text!r}: write an IPv6 address in brackets, e.g. [::1]:143"
                )
            if not _HOSTNAME_RE.fullmatch(host):
                raise ValueError(f"invalid address {text!r}: {host!r} is not a host name or IP")
        if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
            raise ValueError(f"invalid address {text!r}: the port must be a number")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"invalid address {text!r}: the port must be at most 65535")
        return cls(host, port)


_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

#: Longest Unix socket path, in octets (``sun_path`` is 108 octets with its NUL on Linux).
MAX_UNIX_PATH_OCTETS: Final = 107


@dataclass(frozen=True, slots=True)
class UnixSocket:
    """One Unix-domain listen address: ``unix:/run/msgstore/lmtp.sock``.

    Written as that string (mode 0660, owner and group of the server process) or as a table
    ``{ unix = "/var/spool/postfix/private/msgstore", mode = "0660", owner = "postfix",
    group = "postfix" }``. ``owner`` and ``group`` are names or numeric ids, resolved when the
    socket is bound; changing the owner needs root.
    """

    path: Path
    mode: int = 0o660
    owner: str | None = None
    group: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}"

    @classmethod
    def parse(cls, value: object) -> UnixSocket:
        """Parse ``"unix:PATH"`` or the table form. Raises ValueError with the reason."""
        if isinstance(value, str):
            return cls(_unix_path(value.removeprefix("unix:")))
        if not isinstance(value, dict):
            raise ValueError(f"expected a unix socket table, got {value!r}")
        unknown = sorted(set(value) - {"unix", "mode", "owner", "group"})
        if unknown:
            raise ValueError(
                f"unknown key {unknown[0]!r} in a unix socket table (keys: unix, mode, owner, "
                "group)"
            )
        if "unix" not in value:
            raise ValueError('a unix socket table needs unix = "/path/to/socket"')
        mode_text = value.get("mode", "0660")
        if not (
            isinstance(mode_text, str)
            and 1 <= len(mode_text) <= 4
            and all(ch in "01234567" for ch in mode_text)
        ):
            raise ValueError(
                f'mode must be octal digits in a string, e.g. "0660", got {mode_text!r}'
            )
        names: dict[str, str | None] = {}
        for key in ("owner", "group"):
            name = value.get(key)
            if name is not None and (not isinstance(name, str) or not _ID_RE.fullmatch(name)):
                raise ValueError(f"{key} must be a user or group name or number, got {name!r}")
            names[key] = name
        return cls(_unix_path(value["unix"]), int(mode_text, 8), names["owner"], names["group"])

    def dump(self) -> str | dict[str, str]:
        """The configuration form: the short string when every option is the default."""
        if self.mode == 0o660 and self.owner is None and self.group is None:
            return str(self)
        table = {"unix": str(self.path), "mode": f"{self.mode:04o}"}
        if self.owner is not None:
            table["owner"] = self.owner
        if self.group is not None:
            table["group"] = self.group
        return table


_ID_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")


def _unix_path(value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a socket path, got {value!r}")
    path = Path(os.path.abspath(Path(value).expanduser()))
    if "\0" in str(path):
        raise ValueError(f"invalid socket path {value!r}")
    if len(os.fsencode(path)) > MAX_UNIX_PATH_OCTETS:
        raise ValueError(f"socket path {str(path)!r} is longer than {MAX_UNIX_PATH_OCTETS} octets")
    return path


#: One listen address: TCP host and port, or a Unix-domain socket.
ListenAddress = HostPort | UnixSocket

#: RFC 6154 special-use attributes a mailbox may carry ("" for none).
SPECIAL_USE: Final = frozenset(
    {"", "\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


@dataclass(frozen=True, slots=True)
class _Kind:
    """How a value type is named in docs/configuration.md."""

    name: str


@dataclass(frozen=True, slots=True)
class _Plain:
    """The value's validator: a function of the value as read from TOML. pydantic's
    ``PlainValidator``, without its cost.

    ``PlainValidator`` builds the schema of the annotated type twice per field, for the
    serialiser; for the lists of dataclasses behind ``Listen`` that is costly, and every
    ``msgstore`` process builds this model. This builds it once, and not at all where a
    ``PlainSerializer`` follows (``replaced=True``), which discards that serialiser: the same
    schema for about 40% less time.
    """

    func: Callable[[Any], Any]
    #: A PlainSerializer follows and replaces the serialiser.
    replaced: bool = False

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        serialization = None
        if not self.replaced:
            schema = handler(source_type)
            serialization = schema.get(
                "serialization",
                core_schema.wrap_serializer_function_ser_schema(
                    lambda v, h: h(v), schema=schema, return_schema=schema
                ),
            )
        return core_schema.no_info_plain_validator_function(
            self.func,
            serialization=serialization,
            json_schema_input_schema=core_schema.any_schema(),
        )


def _fail(reason: str) -> PydanticCustomError:
    # The reason goes through the context so that braces in user input are not templates.
    return PydanticCustomError("config_value", "{reason}", {"reason": reason})


def _listen(value: object) -> list[ListenAddress]:
    items = value if isinstance(value, list) else [value]
    addresses: list[ListenAddress] = []
    for item in items:
        if isinstance(item, HostPort | UnixSocket):
            addresses.append(item)
        elif isinstance(item, str | dict):
            try:
                if isinstance(item, dict) or item.startswith("unix:"):
                    addresses.append(UnixSocket.parse(item))
                else:
                    addresses.append(HostPort.parse(item))
            except ValueError as exc:
                raise _fail(str(exc)) from None
        else:
            raise _fail(f'expected "host:port" or a list of them, got {item!r}')
    return addresses


def _dump_listen(addresses: list[ListenAddress]) -> list[str | dict[str, str]]:
    return [a.dump() if isinstance(a, UnixSocket) else str(a) for a in addresses]


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(f"expected a size such as 100M, got {value!r}")
    try:
        return parse_size(value)
    except StoreError as exc:
        raise _fail(exc.public) from None


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(f"expected a duration such as 30m, got {value!r}")
    try:
        return parse_duration(value)
    except StoreError as exc:
        raise _fail(exc.public) from None


def _path(value: object) -> Path:
    if not isinstance(value, str | Path) or str(value) == "":
        raise _fail(f"expected a path, got {value!r}")
    # Relative paths are taken from the current directory, as a shell would.
    return Path(os.path.abspath(Path(value).expanduser()))


def _optional_path(value: object) -> Path | None:
    return None if value is None else _path(value)


def _special_use_table(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(f'expected a table such as {{ Sent = "\\\\Sent" }}, got {value!r}')
    table: dict[str, str] = {}
    for name, use in value.items():
        try:
            canonical = mailbox_name(name)
        except StoreError as exc:
            raise _fail(f"{name!r}: {exc.public}") from None
        if not isinstance(use, str) or use not in SPECIAL_USE:
            choices = ", ".join(sorted(repr(u) for u in SPECIAL_USE if u))
            raise _fail(f"{name!r}: special-use must be one of {choices} or '', got {use!r}")
        table[canonical] = use
    return table


def _switch(value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(f"expected true or false, got {value!r}")
    return value


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(f"expected a whole number >= 0, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _fail(f"expected a string, got {value!r}")
    return value


#: "host:port", "unix:/path" or a list of them; an empty list turns the service off.
Listen = Annotated[
    list[ListenAddress],
    _Plain(_listen, replaced=True),
    PlainSerializer(_dump_listen, return_type=list[str | dict[str, str]]),
    _Kind("address list"),
]
#: Octets, written with binary units: "64K", "50M", "1G".
Size = Annotated[
    int,
    _Plain(_size, replaced=True),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    _Kind("size"),
]
#: Seconds, written with units: "30s", "30m", "2h", "1d".
Duration = Annotated[int, _Plain(_duration), _Kind("duration")]
Switch = Annotated[bool, _Plain(_switch), _Kind("boolean")]
Count = Annotated[int, _Plain(_count), _Kind("integer")]
Text = Annotated[str, _Plain(_text), _Kind("string")]
DataPath = Annotated[
    Path, _Plain(_path, replaced=True), PlainSerializer(str, return_type=str), _Kind("path")
]
OptionalPath = Annotated[
    Path | None,
    _Plain(_optional_path, replaced=True),
    PlainSerializer(lambda p: None if p is None else str(p), return_type=str | None),
    _Kind("path"),
]
SpecialUseTable = Annotated[
    dict[str, str],
    _Plain(_special_use_table),
    _Kind("table of mailbox name = special-use"),
]


def _networks(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _fail(f'expected "10.0.0.0/8"-style networks, got {item!r}')
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise _fail(f"{item!r} is not an IP network such as 10.0.0.0/8 or ::1/128") from None
    return out


def _expire(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and (value == "never" or (value.isascii() and value.isdigit())):
        return value if value == "never" else str(int(value[:9]))
    raise _fail(f'expected a number of days or "never", got {value!r}')


#: IP networks: "10.0.0.0/8", "::1"; an address alone is a network of one.
Networks = Annotated[list[str], _Plain(_networks), _Kind("network list")]
#: POP3 EXPIRE policy: a number of days, or "never".
ExpirePolicy = Annotated[str, _Plain(_expire), _Kind('days or "never"')]


# --- sections ----------------------------------------------------------------------------------


def setting(default: object, description: str) -> Any:
    """Declare a key: its default as written in msgstore.toml, and its documentation.

    Typed ``Any`` because the default is the written form ("50M"), not the parsed value.
    """
    return Field(default, description=description)


def _section(section: type[BaseModel]) -> Any:
    return Field(default_factory=section, description=section.__doc__)


class _Section(BaseModel):
    # validate_default: defaults are written as in the file ("50M", "./data") and go through
    # the same validators, so the docs show exactly what a user would write.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ImapSection(_Section):
    """IMAP server (RFC 9051 IMAP4rev2 and RFC 3501 IMAP4rev1)."""

    listen: Listen = setting(
        ["127.0.0.1:1143"],
        "Addresses for IMAP in plain text with STARTTLS (standard port: 143).",
    )
    tls_listen: Listen = setting(
        ["127.0.0.1:1993"],
        "Addresses for IMAP over implicit TLS, IMAPS (standard port: 993).",
    )
    max_line: Size = setting(
        "64K",
        "Longest command line (literals excluded); RFC 7162 §4 asks for at least 8K. A longer "
        "line gets BAD and BYE.",
    )
    max_literal: Size = setting(
        "64K", "Largest literal outside APPEND; a larger one gets NO [TOOBIG] before it is sent."
    )
    append_limit: Size = setting(
        "0",
        "Largest APPEND message, advertised as APPENDLIMIT (RFC 7889); 0 means [store] "
        "max_message_size, which also caps it.",
    )
    literal_minus_max: Size = setting(
        "4K",
        "Largest non-synchronising literal (LITERAL-, RFC 7888); a larger one gets BAD [TOOBIG] "
        "and BYE. 0 advertises LITERAL+ instead, with the limits above.",
    )
    max_literals: Count = setting(1000, "Literals in one command (MULTIAPPEND needs many).")
    max_nesting: Count = setting(
        32, "Nesting depth of parenthesised lists in one command; deeper input gets BAD."
    )
    auth_timeout: Duration = setting(
        "3m",
        "Before login: time allowed for each command (and a SASL answer); a silent client is "
        "disconnected with BYE.",
    )
    idle_timeout: Duration = setting(
        "30m",
        "After login, and during IDLE: inactivity before autologout with BYE (RFC 9051 §5.4 "
        "asks for at least 30 minutes).",
    )
    idle_keepalive: Duration = setting(
        "2m", "Interval of the `* OK Still here` keepalives sent during IDLE."
    )
    command_timeout: Duration = setting(
        "2m",
        "Time to finish a command once its first octet arrived; each further 64K received "
        "restarts it, so a client dripping octets is disconnected with BYE.",
    )
    tls_handshake_timeout: Duration = setting(
        "30s", "Time a client has to finish the TLS handshake (IMAPS and STARTTLS)."
    )
    output_timeout: Duration = setting(
        "2m",
        "Time a client may leave the server's replies unread: a command whose output fills "
        "the session's buffers (64K of replies plus the socket's) waits for the client, and "
        "after this long without progress the connection is closed.",
    )
    max_connections_per_user: Count = setting(
        10,
        "Logged-in connections of one account from one client address, IMAP and POP3 "
        "together; the next LOGIN gets NO [LIMIT]. 0: no limit. Counted across every worker.",
    )
    max_connections_per_ip: Count = setting(
        100,
        "Not yet logged-in connections from one client address, IMAP and POP3 together; the "
        "next one gets BYE. 0: no limit. Counted across every worker.",
    )
    max_bad_commands: Count = setting(
        10, "Consecutive BAD replies after which the connection is closed with BYE."
    )

    @model_validator(mode="after")
    def _usable_limits(self) -> ImapSection:
        if self.max_line < 1024:
            raise _at("imap.max_line", "must be at least 1K")
        if self.max_nesting < 1:
            raise _at("imap.max_nesting", "must be at least 1")
        return self


class Pop3Section(_Section):
    """POP3 server (RFC 1939, RFC 2449 extensions)."""

    listen: Listen = setting(
        ["127.0.0.1:1110"],
        "Addresses for POP3 in plain text with STLS (standard port: 110).",
    )
    tls_listen: Listen = setting(
        ["127.0.0.1:1995"],
        "Addresses for POP3 over implicit TLS, POP3S (standard port: 995).",
    )
    max_line: Size = setting(
        "255",
        "Longest command line, CRLF included (RFC 2449 §4 sets 255). A longer line gets "
        "-ERR and is skipped; the session goes on.",
    )
    auth_timeout: Duration = setting(
        "60s",
        "Before login: time allowed for each command line (and for the TLS handshake); "
        "a client that stays silent or sends a line slower than this is disconnected.",
    )
    idle_timeout: Duration = setting(
        "10m",
        "After login: time allowed for each command line. RFC 1939 §3 asks for at least 10 "
        "minutes. A disconnected session deletes nothing.",
    )
    login_delay: Duration = setting(
        "0",
        "Minimum time between two logins of one account, advertised as LOGIN-DELAY "
        "(RFC 2449 §6.8) and enforced with -ERR [LOGIN-DELAY]; 0 turns it off.",
    )
    expire: ExpirePolicy = setting(
        "never",
        "Message retention advertised as EXPIRE (RFC 2449 §6.7). never: mail stays until the "
        "client deletes it. 0: messages retrieved in a session are deleted at its QUIT even "
        "without DELE. n days: at QUIT, retrieved (\\\\Seen) messages older than n days are "
        "deleted.",
    )
    max_connections_per_user: Count = setting(
        10,
        "Logged-in connections of one account from one client address, IMAP and POP3 "
        "together; a login past it gets -ERR [IN-USE]. 0: no limit. Counted across every "
        "worker.",
    )
    max_connections_per_ip: Count = setting(
        100,
        "Not yet logged-in connections from one client address, IMAP and POP3 together; the "
        "next one gets -ERR [SYS/TEMP] and is closed. 0: no limit. Counted across every worker.",
    )
    read_ahead: Size = setting(
        "1M",
        "Most octets of following messages a session reads along with the one a RETR asks "
        "for while the client retrieves messages in order (fetchmail, getmail), so that one "
        "store call serves many RETRs; the window starts at 64K and doubles while the client "
        "keeps going in order. Held per session for at most 5 seconds; a larger message is "
        "streamed. 0 turns it off.",
    )


class _ChannelSection(_Section):
    """Limits shared by the LMTP and SMTP delivery channels (``listen`` is per section)."""

    listen: Listen = setting([], "Addresses.")
    max_line: Size = setting(
        "1000",
        "Longest command line, CRLF included (RFC 5321 §4.5.3.1 allows 512 plus extension "
        "parameters). A longer line gets 500 5.5.2. Message lines after DATA are not limited "
        "by it.",
    )
    max_recipients: Count = setting(
        1000,
        "Recipients of one transaction; the next RCPT gets 452 4.5.3 (the sender sends the "
        "rest in another transaction).",
    )
    max_unknown_recipients: Count = setting(
        20,
        "Unknown recipients on one connection after which it is closed with 421 (address "
        "harvesting defence). 0: no limit.",
    )
    max_errors: Count = setting(
        10,
        "Syntax and sequence errors on one connection after which it is closed with 421.",
    )
    command_timeout: Duration = setting(
        "5m",
        "Time allowed for each command line (RFC 5321 §4.5.3.2.7 asks for 5 minutes); a "
        "silent client is disconnected with 421.",
    )
    data_timeout: Duration = setting(
        "10m",
        "Time allowed for the whole message after DATA, or for one BDAT chunk; a transfer "
        "that does not end in time is dropped with 421 and nothing is stored.",
    )


class LmtpSection(_ChannelSection):
    """LMTP delivery channel (RFC 2033): how a mail transfer agent hands mail to the store."""

    listen: Listen = setting(
        ["127.0.0.1:2424"],
        "Addresses for LMTP (usual port: 24). Keep it on loopback or a trusted "
        "network: LMTP has no authentication.",
    )
    max_unknown_recipients: Count = setting(
        100,
        "Unknown recipients on one connection after which it is closed with 421. 0: no limit.",
    )


class SmtpSection(_ChannelSection):
    """SMTP delivery channel (RFC 5321), for senders that cannot speak LMTP."""

    listen: Listen = setting(
        ["127.0.0.1:2525"],
        "Addresses for inbound SMTP delivery into the store.",
    )
    max_recipients: Count = setting(
        100,
        "Recipients of one transaction (RFC 5321 §4.5.3.1.8: at least 100); the next RCPT "
        "gets 452 4.5.3.",
    )


def _domains(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not (
            item == "localhost" or (_HOSTNAME_RE.fullmatch(item) and "." in item)
        ):
            raise _fail(f'expected domain names such as "example.org", got {item!r}')
        out.append(item.lower())
    return out


#: Mail domains: ["example.org", "example.net"].
Domains = Annotated[list[str], _Plain(_domains), _Kind("domain list")]


class DeliverySection(_Section):
    """Local delivery, shared by LMTP, SMTP and `msgstore deliver`."""

    domains: Domains = setting(
        [],
        "Mail domains whose addresses are local accounts (virtual domains): user@domain "
        "delivers to the account user. Empty: every domain is local. SMTP refuses a "
        "recipient in any other domain with 550 5.7.1 (no relaying).",
    )
    over_quota_temporary: Switch = setting(
        False,
        "Answer a recipient over quota with 452 4.2.2 (the sender retries) instead of "
        "552 5.2.2 (the sender bounces).",
    )
    socketmap_listen: Listen = setting(
        [],
        "Addresses of the Postfix socketmap lookup service (socketmap_table(5)), which "
        "answers whether an address is deliverable so that Postfix refuses unknown "
        "recipients at RCPT, before it queues anything. Maps: recipients, recipient_access, "
        "domains (docs/postfix.md). Keep it on loopback or a Unix socket: it has no "
        "authentication. Empty: off.",
    )


def _smarthost(value: object) -> str:
    if not isinstance(value, str):
        raise _fail(f'expected "host:port", got {value!r}')
    if value == "":
        return value
    try:
        return str(HostPort.parse(value))
    except ValueError as exc:
        raise _fail(str(exc)) from None


#: "host:port" of an SMTP server, or "" for none.
Smarthost = Annotated[str, _Plain(_smarthost), _Kind("host:port")]


class RelaySection(_Section):
    """The outbound relay queue: forwarded mail for external addresses (docs/delivery.md)."""

    smarthost: Smarthost = setting(
        "",
        'SMTP server that takes every outbound message ("host:port", e.g. '
        '"mail.example.org:587"). Empty: messages wait on the queue (and expire after '
        "max_age) until one is configured.",
    )
    starttls: Switch = setting(
        False, "Require STARTTLS with the smarthost (the message is not sent without it)."
    )
    tls_verify: Switch = setting(
        True, "Verify the smarthost's certificate and host name when STARTTLS is used."
    )
    tls_ca: OptionalPath = setting(
        None, "CA certificates (PEM) to verify the smarthost with; default: the system's."
    )
    auth_user: Text = setting("", "User name for SMTP AUTH at the smarthost; empty: no AUTH.")
    auth_password: Text = setting("", "Password for SMTP AUTH at the smarthost.")
    helo: Text = setting("", "Name sent in EHLO and written in DSNs; empty: the host name.")
    timeout: Duration = setting("5m", "Time allowed for each SMTP command to the smarthost.")
    retry_first: Duration = setting(
        "1m",
        "Delay before the first retry of a message the smarthost deferred (4xx) or could not "
        "take (unreachable); it doubles with each further attempt, up to retry_max.",
    )
    retry_max: Duration = setting("1h", "Longest delay between two attempts.")
    max_age: Duration = setting(
        "5d",
        "A message still undelivered this long after it was queued is given up: a delivery "
        "status notification (RFC 3464) goes to its envelope sender (none for <>).",
    )
    postmaster: Text = setting(
        "",
        "From address of delivery status notifications; empty: MAILER-DAEMON@<helo name>.",
    )
    concurrency: Count = setting(4, "Messages sent to the smarthost at the same time.")
    poll_interval: Duration = setting(
        "5s",
        "How often the queue runner looks for messages queued by other processes (messages "
        "queued in its own process wake it at once).",
    )


class PoppassdSection(_Section):
    """poppassd: the password-change protocol some mail clients use."""

    listen: Listen = setting(
        ["127.0.0.1:1106"],
        "Addresses for poppassd (usual port: 106). The protocol has no TLS: keep it on "
        "loopback or a trusted network.",
    )
    timeout: Duration = setting(
        "60s",
        "Time allowed for each line; a silent client is disconnected.",
    )


_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_COLOUR_RE: Final = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def _names(value: object) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not _NAME_RE.fullmatch(item):
            raise _fail(f'expected names such as "usage" (a-z, 0-9, "-", "_"), got {item!r}')
        out.append(item)
    return out


def _colour(value: object) -> str:
    if not isinstance(value, str) or not _COLOUR_RE.fullmatch(value):
        raise _fail(f'expected a colour such as "#1f6feb" or "#333", got {value!r}')
    return value.lower()


#: Names of pages or panels, in order: ["usage", "password"].
Names = Annotated[list[str], _Plain(_names), _Kind("name list")]
#: A CSS colour in hex: "#1f6feb".
Colour = Annotated[str, _Plain(_colour), _Kind('colour "#rrggbb"')]


class WebSection(_Section):
    """Web user interface, web admin and REST API (one HTTP listener)."""

    listen: Listen = setting(
        ["127.0.0.1:8080"],
        "Addresses for HTTP. Put a TLS-terminating reverse proxy in front of it "
        "when it leaves loopback.",
    )
    templates_dir: OptionalPath = setting(
        None,
        "Directory of Jinja2 templates that replace the built-in pages file by file: a "
        "`usage.html` here is used instead of msgstore's (docs/web.md). Not set: built-in only.",
    )
    static_dir: OptionalPath = setting(
        None,
        "Directory of static files (CSS, images, scripts) served under /static/ before the "
        "built-in ones: a `style.css` here replaces msgstore's. Not set: built-in only.",
    )
    menu: Names = setting(
        [
            "usage",
            "messages",
            "password",
            "dashboard",
            "accounts",
            "forwarding",
            "public",
            "queue",
            "sessions",
            "audit",
        ],
        "Pages in the menu, in order. Each user sees those that apply (messages: POP-only "
        "accounts; the management pages: managers); a page left out is still reachable "
        "by its address. Unknown names stop the server.",
    )
    dashboard: Names = setting(
        ["sessions", "activity", "storage", "queue", "errors"],
        "Panels of the management dashboard, in order: sessions (live sessions per "
        "protocol), activity (deliveries and logins per minute, last hour), storage, queue, "
        "errors (recent failed management operations).",
    )
    site_name: Text = setting("msgstore", "Name shown in the page header and titles.")
    logo: Text = setting(
        "",
        "File name of a logo under /static/ (put it in static_dir), shown before the site "
        'name, e.g. "logo.svg". Empty: no logo.',
    )
    accent_colour: Colour = setting("#1f6feb", "Colour of links, buttons and bars.")
    header_colour: Colour = setting("#24292f", "Background colour of the page header.")
    max_decoded_message: Size = setting(
        "10M",
        "Largest message the messages page of a POP-only account decodes (MIME parts, "
        "attachments to download); a larger one is shown as its raw first megabyte.",
    )
    session_idle_timeout: Duration = setting(
        "30m", "A web session not used for this long ends; the user logs in again."
    )
    session_max_age: Duration = setting(
        "12h", "A web session ends this long after its login, used or not."
    )
    secure_cookies: Literal["auto", "always", "never"] = setting(
        "auto",
        "When the session cookie carries the Secure attribute (sent over HTTPS only). auto: "
        "always, except when the browser addressed the server by a loopback name "
        "(localhost, 127.0.0.1, [::1]) over plain HTTP. Behind a TLS proxy leave it auto "
        "or set always; never only for plain HTTP on a trusted network.",
    )
    metrics_access: Literal["loopback", "public", "manager", "off"] = setting(
        "loopback",
        "Who may read /metrics (Prometheus text format). loopback: requests from a loopback "
        "address or a Unix socket without credentials, anyone else only with a manager's "
        "credentials (HTTP Basic or a bearer token); public: anyone; manager: a manager's "
        "credentials always; off: 404. A reverse proxy on the same machine makes every "
        "request look local: choose manager there, or keep /metrics off the proxied paths.",
    )
    api_max_restore_size: Size = setting(
        "2G",
        "Largest tar archive `POST /api/v1/accounts/{name}/restore` accepts (the remote "
        "`account restore`); it is spooled to [store] data_dir/tmp, never held in memory. "
        "Other REST requests carry parameters and are capped at 1 MiB.",
    )
    api_migrate_timeout: Duration = setting(
        "30m",
        "How long a migration run started over the REST API (`POST /api/v1/migrate/...`) "
        "may take before it is stopped and answered 503. What it copied stays; running it "
        "again resumes without copying anything twice. The CLI and Python API have no limit.",
    )
    api_migrate_dir: OptionalPath = setting(
        None,
        "Directory under which a migration started by a store account (REST API, remote CLI) "
        "may read mbox files, Maildir trees, passwd and CA files; relative paths are taken "
        "from it. Not set: such runs may only copy from a remote IMAP server. The OS "
        "administrator's CLI and the Python API may read any path.",
    )


class TlsSection(_Section):
    """The server certificate, used by STARTTLS/STLS and the implicit-TLS listeners."""

    cert: OptionalPath = setting(
        None,
        "PEM certificate chain (leaf first). When neither cert nor key is set, a "
        "self-signed pair is generated into DATA/tls/ on first start and reused after. "
        "Relative paths are taken from the current directory.",
    )
    key: OptionalPath = setting(
        None,
        "PEM private key of the certificate; must be set together with cert.",
    )


class AclSection(_Section):
    """Sharing policy for IMAP ACLs (RFC 4314)."""

    allow_anyone: Switch = setting(
        True,
        "Let ordinary users grant rights to the identifiers `anyone` and `authenticated` "
        "with SETACL (also as negative rights). false refuses that with NO [NOPERM], so "
        "nobody can share a folder with every user at once (Dovecot `acl_anyone = forbid`); "
        "managers may still, for the public folders.",
    )


class StoreSection(_Section):
    """Where and how mail is stored."""

    data_dir: DataPath = setting(
        "./data",
        "Data directory: system database, user trees, queue, generated TLS files. "
        "`--data` and MSGSTORE_DATA override it. Relative paths are taken from the current "
        "directory.",
    )
    max_message_size: Size = setting(
        "50M",
        "Largest message accepted by delivery, APPEND and migration.",
    )
    autocreate: SpecialUseTable = setting(
        {"Drafts": "\\Drafts", "Sent": "\\Sent", "Trash": "\\Trash", "Junk": "\\Junk"},
        "Mailboxes created with each new IMAP account, with their RFC 6154 "
        'special-use attribute ("" for none). INBOX always exists.',
    )
    default_quota: Size = setting(
        "0",
        "Storage limit of a new account when `account add` is given no --quota; 0 means "
        "unlimited.",
    )
    default_message_limit: Count = setting(
        0,
        "Message count limit of a new account when `account add` is given no --messages; "
        "0 means unlimited.",
    )

    @model_validator(mode="after")
    def _positive_size(self) -> StoreSection:
        if self.max_message_size <= 0:
            raise _at("store.max_message_size", "must be larger than 0")
        return self


class StorageSection(_Section):
    """Which storage backend holds accounts and mail (docs/storage-postgres.md)."""

    backend: Literal["local", "postgres"] = setting(
        "local",
        "local: SQLite databases and one file per message under [store] data_dir. "
        "postgres: one PostgreSQL database shared by any number of front-end processes "
        "(run `msgstore db upgrade` first); data_dir then holds only temporary files.",
    )
    dsn: Text = setting(
        "postgresql://127.0.0.1:5432/msgstore",
        'PostgreSQL connection string (libpq URI) for backend = "postgres"; query '
        "parameters other than the libpq ones are session settings, e.g. "
        "`?search_path=mail`.",
    )
    pool_min: Count = setting(2, "Connections each process keeps open to PostgreSQL.")
    pool_max: Count = setting(
        20,
        "Most connections each process opens to PostgreSQL (plus one for LISTEN).",
    )
    pool_timeout: Duration = setting(
        "10s",
        "How long a request waits for a free connection before it fails with a temporary "
        "error (IMAP NO [UNAVAILABLE], LMTP 451).",
    )

    @model_validator(mode="after")
    def _pool_sizes(self) -> StorageSection:
        if self.pool_max < 1:
            raise _at("storage.pool_max", "must be at least 1")
        if self.pool_min > self.pool_max:
            raise _at("storage.pool_min", "must not be larger than storage.pool_max")
        return self


class AuthSection(_Section):
    """Authentication policy."""

    plaintext_on_loopback: Switch = setting(
        True,
        "Allow LOGIN, USER/PASS and AUTH PLAIN/LOGIN before TLS when the client "
        "connects from a loopback address. Other clients must start TLS first (IMAP advertises "
        "LOGINDISABLED).",
    )
    failure_delay_ms: Count = setting(
        2000,
        "Delay, in milliseconds, before the next login attempt after one failure; it doubles "
        "with each further failure of the same client address or the same account name.",
    )
    failure_delay_max_ms: Count = setting(
        15000,
        "Cap of the login failure delay, in milliseconds.",
    )
    max_failures_per_connection: Count = setting(
        3,
        "Failed logins after which a connection is closed.",
    )
    trusted_networks: Networks = setting(
        [],
        "Client networks exempt from login throttling, e.g. a webmail host: "
        '["10.1.2.3", "192.168.0.0/24"].',
    )
    scram_sha_256: Switch = setting(
        False,
        "Offer SASL SCRAM-SHA-256 (RFC 7677). Only accounts whose password is stored as a "
        "{SCRAM-SHA-256} secret (imported from Dovecot) can use it: an argon2id hash cannot "
        "serve SCRAM, so those accounts fail it and use PLAIN.",
    )
    password_min_length: Count = setting(
        8,
        "Shortest password (in characters) an account may choose, or a manager may give an "
        "account, through the REST API, the web pages or poppassd. The operating-system "
        "administrator (CLI, Python API) is held only to the hard limits: not empty, no NUL, "
        "CR or LF, at most 1024 octets. A password may also never equal the account name.",
    )
    password_max_length: Count = setting(
        1024,
        "Longest password in octets of UTF-8 (at most 1024, the hard limit).",
    )
    password_classes: Count = setting(
        1,
        "How many of the character classes lower case, upper case, digits and other "
        "characters a password must mix (1 to 4); `msgstore password reset` generates "
        "passwords that satisfy it.",
    )


class LogSection(_Section):
    """Logging to standard error."""

    level: Literal["debug", "info", "warning", "error"] = setting("info", "Lowest level written.")
    format: Literal["text", "json"] = setting(
        "text",
        "text: one Dovecot-style line per event (`imap(alice)<pid><session>: Info: "
        "...`); json: one JSON object per line.",
    )


class ServerSection(_Section):
    """Processes of `msgstore serve`."""

    workers: Count = setting(
        1,
        "Server processes. Each runs every service on its own event loop and they share the "
        "listening sockets, each accepting its even share of every protocol's connections; the "
        "first process supervises them (restarts one that dies). "
        "`msgstore serve --workers` overrides it; 0 means one per CPU core.",
    )
    accept_wait_ms: Count = setting(
        20,
        "With several workers, how long (milliseconds) a new connection may wait for the "
        "worker whose turn it is (the one holding the fewest of that protocol's connections) "
        "before a busier worker takes it. An awake worker takes its turn within microseconds; "
        "the wait matters when it is stopped, busy in a long step or waiting for a CPU on a "
        "loaded machine. Longer keeps the split even under load, shorter bounds the delay a "
        "stuck worker adds; 0 lets any worker take a connection it sees first.",
    )
    event_loop: Literal["auto", "uvloop", "asyncio"] = setting(
        "auto",
        "Event loop of the server processes: `uvloop` (faster, less memory per TLS "
        "connection), `asyncio` (the standard library's), or `auto`: uvloop when it is "
        "installed (it is a dependency everywhere but Windows), asyncio otherwise. `uvloop` "
        "when it is not installed stops `msgstore serve` with an error.",
    )


class Config(BaseModel):
    """The whole configuration: one attribute per ``[section]`` of msgstore.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    imap: ImapSection = _section(ImapSection)
    pop3: Pop3Section = _section(Pop3Section)
    lmtp: LmtpSection = _section(LmtpSection)
    smtp: SmtpSection = _section(SmtpSection)
    delivery: DeliverySection = _section(DeliverySection)
    relay: RelaySection = _section(RelaySection)
    poppassd: PoppassdSection = _section(PoppassdSection)
    web: WebSection = _section(WebSection)
    tls: TlsSection = _section(TlsSection)
    store: StoreSection = _section(StoreSection)
    storage: StorageSection = _section(StorageSection)
    acl: AclSection = _section(AclSection)
    auth: AuthSection = _section(AuthSection)
    log: LogSection = _section(LogSection)
    server: ServerSection = _section(ServerSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if (self.tls.cert is None) != (self.tls.key is None):
            missing, given = ("key", "cert") if self.tls.key is None else ("cert", "key")
            raise _at(f"tls.{missing}", f"must be set when tls.{given} is (set both or neither)")
        seen: dict[HostPort | Path, str] = {}
        for key, addresses in listen_keys(self):
            for address in addresses:
                if isinstance(address, HostPort) and address.port == 0:
                    continue
                where = address.path if isinstance(address, UnixSocket) else address
                if where in seen:
                    raise _at(key, f"{address} is also configured as {seen[where]}")
                seen[where] = key
        return self


def _at(key: str, reason: str) -> PydanticCustomError:
    # A rule across fields: the error names the key itself, not the model it was checked in.
    return PydanticCustomError("config_rule", "{reason}", {"reason": reason, "key": key})


def _is_listen(info: FieldInfo) -> bool:
    return any(isinstance(m, _Kind) and m.name == "address list" for m in info.metadata)


def listen_keys(config: Config) -> Iterator[tuple[str, list[ListenAddress]]]:
    """Every listen key with its addresses, in declaration order: ("imap.listen", [...]), ..."""
    for section_name in type(config).model_fields:
        section = getattr(config, section_name)
        for key, info in type(section).model_fields.items():
            if _is_listen(info):
                yield f"{section_name}.{key}", getattr(section, key)


# --- loading -----------------------------------------------------------------------------------


def load_config(path: Path | None = None, *, data_dir: Path | None = None) -> Config:
    """Read and validate the configuration.

    Args:
        path: the TOML file; None means every default. A missing file given here is an error.
        data_dir: overrides ``[store] data_dir`` (``--data``, MSGSTORE_DATA).

    Raises:
        ConfigError: one line per problem, naming the file, the dotted key and the reason.
    """
    label = str(path) if path is not None else "(defaults)"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{label}: configuration file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{label}: is a directory, not a configuration file") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{label}: invalid TOML: the file is not UTF-8") from None
    if data_dir is not None:
        store = raw.setdefault("store", {})
        if isinstance(store, dict):
            store["data_dir"] = str(data_dir)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            [f"{label}: {line}" for line in _describe(exc.errors(include_url=False))]
        ) from None


def _describe(errors: list[Any]) -> list[str]:
    lines = []
    for error in errors:
        loc = [str(part) for part in error["loc"]]
        ctx = error.get("ctx") or {}
        kind = error["type"]
        if kind == "extra_forbidden":
            lines.append(_unknown_key(loc))
        elif kind == "config_rule":
            lines.append(f"{ctx['key']}: {ctx['reason']}")
        elif kind == "config_value":
            lines.append(f"{'.'.join(loc)}: {ctx['reason']}")
        elif kind in ("model_type", "model_attributes_type") and len(loc) == 1:
            lines.append(f"{loc[0]}: expected a table ([{loc[0]}]), got {error['input']!r}")
        else:
            msg = str(error["msg"])
            msg = msg[:1].lower() + msg[1:]
            lines.append(f"{'.'.join(loc) or '(top level)'}: {msg}, got {error['input']!r}")
    return lines


#: Keys that existed once: an old file that sets one is told what replaced it.
_REMOVED_KEYS: Final = {
    "poppassd.min_length": "poppassd now applies the [auth] password policy "
    "(auth.password_min_length, password_max_length, password_classes): move the value "
    "there or delete the key",
}


def _unknown_key(loc: list[str]) -> str:
    removed = _REMOVED_KEYS.get(".".join(loc))
    if removed is not None:
        return f"{'.'.join(loc)} was removed: {removed}"
    fields = Config.model_fields
    if len(loc) == 1:
        name = loc[0]
        close = difflib.get_close_matches(name, list(fields), n=1)
        if close:
            return f"unknown section [{name}] (did you mean [{close[0]}]?)"
        homes = [
            f"{section}.{name}"
            for section, info in fields.items()
            if name in _section_type(info).model_fields
        ]
        if homes:
            return f"unknown key {name} (keys belong in a section: did you mean {homes[0]}?)"
        return f"unknown section [{name}] (sections: {', '.join(fields)})"
    section, name = loc[0], ".".join(loc[1:])
    keys = list(_section_type(fields[section]).model_fields) if section in fields else []
    close = difflib.get_close_matches(name, keys, n=1)
    hint = f"did you mean {section}.{close[0]}?" if close else f"keys: {', '.join(keys)}"
    return f"unknown key {section}.{name} ({hint})"


def _section_type(info: FieldInfo) -> type[BaseModel]:
    section = info.annotation
    assert isinstance(section, type)
    assert issubclass(section, BaseModel)
    return section


# --- rendering ---------------------------------------------------------------------------------

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no TOML form for {value!r}")


def dump_toml(config: Config) -> str:
    """The effective configuration as a msgstore.toml that loads back to the same values."""
    data = config.model_dump(mode="json")
    out: list[str] = []
    for section, values in data.items():
        out.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                out.append(f"# {key} is not set")
            else:
                out.append(f"{_toml_key(key)} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def dump_json(config: Config) -> str:
    """The effective configuration as JSON (sizes and durations keep their written form)."""
    return json.dumps(config.model_dump(mode="json"), indent=2) + "\n"


def _type_name(info: FieldInfo) -> str:
    for meta in info.metadata:
        if isinstance(meta, _Kind):
            return meta.name
    if get_origin(info.annotation) is Literal:
        return "one of " + ", ".join(f'"{choice}"' for choice in get_args(info.annotation))
    raise TypeError(f"config field of type {info.annotation!r} has no documented kind")


def _default_text(info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "not set"
    if isinstance(default, Mapping):
        return _toml_value(dict(default))
    if isinstance(default, list | str | bool | int):
        return _toml_value(default)
    raise TypeError(f"no TOML form for default {default!r}")


_DOC_INTRO: Final = """\
# Configuration

<!-- Generated by `msgstore config docs > docs/configuration.md` from src/msgstore/config.py.
     Do not edit by hand: change the field declarations and regenerate. -->

msgstore reads one TOML file. Every key is optional: with no file at all, `msgstore serve`
creates `./data`, generates a self-signed TLS certificate into `./data/tls/`, and listens on
127.0.0.1 on unprivileged ports. The standard ports are one change of a `listen` key away.

- The file is given with `--config FILE` or `MSGSTORE_CONFIG=FILE`. A file that is named
  but missing is an error.
- `--data DIR` or `MSGSTORE_DATA=DIR` overrides `[store] data_dir`.
- Unknown keys, wrong types and bad values are refused at startup with one line per problem,
  naming the file, the key and the reason: `msgstore.toml: unknown key imap.listn (did you
  mean imap.listen?)`. `msgstore config check` runs the same validation without starting
  anything; `msgstore config show` prints the effective configuration (`--json` for JSON).

## Value types

- **address list**: `"host:port"` or a list of them, e.g. `["0.0.0.0:143", "[::]:143"]`;
  IPv6 addresses go in brackets; an empty list `[]` turns the service off. A Unix-domain
  socket is `"unix:/run/msgstore/lmtp.sock"` (mode 0660), or a table with its permissions:
  `{ unix = "/var/spool/postfix/private/msgstore-lmtp", mode = "0660", owner = "postfix",
  group = "postfix" }`. A socket file left by a stopped server is replaced; any other file
  at that path is an error.
- **size**: a number with a binary unit, K = 1024, M = 1024², G = 1024³, e.g. `"50M"`; a
  number without unit counts octets.
- **duration**: a number with s, m, h or d, e.g. `"30m"`; a number without unit counts seconds.
- **path**: a file or directory, e.g. `"/var/lib/msgstore"`; `~` is expanded and relative
  paths start at the current directory.
- **boolean**: `true` or `false`.
- **network list**: IP networks, e.g. `["10.0.0.0/8", "::1"]`; an address alone is a network
  of one.

## Example

A server on the standard ports, with a real certificate:

```toml
{example}```
"""

#: The example in docs/configuration.md; tests/config load it, so it stays valid.
EXAMPLE_TOML: Final = """\
[imap]
listen = ["0.0.0.0:143", "[::]:143"]
tls_listen = ["0.0.0.0:993", "[::]:993"]

[pop3]
listen = []                          # no plain-text POP3
tls_listen = ["0.0.0.0:995", "[::]:995"]

[lmtp]
listen = "127.0.0.1:24"              # the MTA on this machine delivers here

[smtp]
listen = []

[poppassd]
listen = "127.0.0.1:106"

[web]
listen = "127.0.0.1:8080"            # behind a TLS-terminating reverse proxy

[tls]
cert = "/etc/msgstore/tls/fullchain.pem"
key = "/etc/msgstore/tls/privkey.pem"

[store]
data_dir = "/var/lib/msgstore"
max_message_size = "100M"

[store.autocreate]
Drafts = "\\\\Drafts"
Sent = "\\\\Sent"
Trash = "\\\\Trash"
Junk = "\\\\Junk"
Archive = "\\\\Archive"

[auth]
plaintext_on_loopback = true

[log]
format = "json"
"""


def config_docs() -> str:
    """docs/configuration.md: every section and key with type, default and description."""
    out = [_DOC_INTRO.replace("{example}", EXAMPLE_TOML)]
    for section_name, section_info in Config.model_fields.items():
        out.append(f"## [{section_name}]\n")
        out.append(f"{section_info.description}\n")
        for key, info in _section_type(section_info).model_fields.items():
            out.append(f"### `{section_name}.{key}`\n")
            out.append(f"- type: {_type_name(info)}")
            out.append(f"- default: `{_default_text(info)}`\n")
            if not info.description:
                raise TypeError(f"config key {section_name}.{key} has no description")
            out.append(f"{info.description}\n")
    return "\n".join(out)
