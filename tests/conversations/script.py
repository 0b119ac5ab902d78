"""Scripted protocol conversations (STYLE.md §14.1): parse a script file, run it on sockets.

A file is a header, a ``---`` line, then the conversation in execution order::

    # USER/PASS, then STAT counts the fixture (the first comment block is the description).
    users: alice(kind=pop)
    fixture: alice<-three.mbox
    ---
    S: +OK $*
    C: USER $alice
    S: +OK $*
    C: PASS $alice.password
    S: +OK $*
    C: STAT
    S: +OK 3 $_

=====================  ========================================================================
syntax                 meaning
=====================  ========================================================================
``key: value``         header, before ``---``: ``protocol`` (default: the folder name),
                       ``users`` (``name`` or ``name(kind=pop,password=TEXT,quota=1K)``;
                       created fresh with unique real names), ``connections`` (informational),
                       ``fixture: USER<-FILE.mbox`` (deliver every message of a fixture to a
                       user's INBOX; ``INBOX<-FILE`` means the first user; may repeat),
                       ``tls: starttls`` (the runner starts TLS after a positive reply to
                       STLS/STARTTLS) or ``tls: implicit`` (connect to the TLS port),
                       ``config: pop3.login_delay=2s auth.scram_sha_256=true`` (forces a
                       dedicated server with these settings)
``C:`` / ``C2:``       the client sends this line (CRLF added) on connection 1 / 2
``S:`` / ``S2:``       the next line from that connection must match
``S*:``                zero or more consecutive lines matching (multi-line replies); it
                       stops early at a line matching the next ``S:`` of its connection
``S!:``                a matching line must not arrive before the next ``S:`` line matches
``$name``              first use captures one token, later uses must equal it; ``$alice``,
                       ``$alice.password`` and ``$domain`` are predefined from the header
``$*`` / ``$_``        rest of the line / any one token
``{base64:TEXT}``      in a ``C:`` line: the base64 of TEXT (after ``$`` expansion; ``\\0`` is
                       NUL), for SASL
``C: <<file:NAME``     LMTP/SMTP: send fixture NAME as message data, CRLF line ends,
                       dot-stuffed, then the ending ``.`` line
``C: <disconnect>``    the client drops the connection (no QUIT)
``S: <closed>``        the server must close the connection now (nothing more arrives)
``#``                  comment; the first comment block describes the test
=====================  ========================================================================

Connections open at their first use. On failure the error names ``file:line``, shows the
expected and the received line, and the last 20 lines of the transcript. Literals
(``{file:NAME}``) belong to the IMAP runner's needs and are refused until a script needs them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from msgstore.management.accounts import AccountModify
from msgstore.management.operation import Limit
from tests.conversations.harness import LineClient, MsgstoreServer, User

DOMAIN: Final = "example.org"
_STEP_RE: Final = re.compile(r"^(C|S\*|S!|S)(\d*):(?: (.*))?$")
_VAR_RE: Final = re.compile(r"\$(\*|_|[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)")
_USER_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(?:\(([^)]*)\))?")
_B64_RE: Final = re.compile(r"\{base64:([^}]*)\}")
#: Listen keys of each protocol: (plain, implicit TLS).
PORTS: Final[Mapping[str, tuple[str, str]]] = {
    "pop3": ("pop3.listen", "pop3.tls_listen"),
    "poppassd": ("poppassd.listen", "poppassd.listen"),
    "imap": ("imap.listen", "imap.tls_listen"),
    "lmtp": ("lmtp.listen", "lmtp.listen"),
    "smtp": ("smtp.listen", "smtp.listen"),
}


class ScriptError(Exception):
    """The script itself is malformed."""


class ConversationFailed(AssertionError):  # noqa: N818 -- a test failure
    pass


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # "C", "S", "S*", "S!"
    conn: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class UserSpec:
    label: str
    kind: str = "imap"
    password: str | None = None
    quota: str | None = None


@dataclass(slots=True)
class Script:
    path: Path
    description: str
    protocol: str
    users: list[UserSpec] = field(default_factory=list)
    fixtures: list[tuple[str, str]] = field(default_factory=list)
    tls: str = ""
    config: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


def parse_script(path: Path) -> Script:
    lines = path.read_text(encoding="utf-8").splitlines()
    description: list[str] = []
    in_first_comment = True
    script = Script(path, "", path.parent.name)
    try:
        separator = lines.index("---")
    except ValueError:
        raise ScriptError(f"{path}: no '---' line between header and conversation") from None
    for number, raw in enumerate(lines[:separator], 1):
        if raw.startswith("#"):
            if in_first_comment:
                description.append(raw[1:].strip())
            continue
        in_first_comment = False
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            raise ScriptError(f"{path}:{number}: expected 'key: value'")
        key, value = key.strip(), value.strip()
        if key == "protocol":
            script.protocol = value
        elif key == "users":
            for m in _USER_RE.finditer(value):
                options = dict(
                    opt.split("=", 1) for opt in (m.group(2) or "").split(",") if "=" in opt
                )
                script.users.append(
                    UserSpec(
                        m.group(1),
                        options.get("kind", "imap"),
                        options.get("password"),
                        options.get("quota"),
                    )
                )
        elif key == "connections":
            int(value)
        elif key == "fixture":
            target, arrow, file = value.partition("<-")
            if not arrow:
                raise ScriptError(f"{path}:{number}: fixture: USER<-FILE")
            script.fixtures.append((target.strip(), file.strip()))
        elif key == "tls":
            if value not in ("starttls", "implicit"):
                raise ScriptError(f"{path}:{number}: tls: starttls or implicit")
            script.tls = value
        elif key == "config":
            for item in value.split():
                k, eq, v = item.partition("=")
                if not eq:
                    raise ScriptError(f"{path}:{number}: config: section.key=value ...")
                script.config[k] = v
        else:
            raise ScriptError(f"{path}:{number}: unknown header key {key!r}")
    script.description = "\n".join(description)
    for number, raw in enumerate(lines[separator + 1 :], separator + 2):
        if not raw.strip() or raw.startswith("#"):
            continue
        step = _STEP_RE.match(raw)
        if step is None:
            raise ScriptError(f"{path}:{number}: expected C:, S:, S*: or S!: ({raw!r})")
        text = step.group(3) or ""
        if step.group(1) == "C" and ("{file:" in text or "{file+:" in text):
            raise ScriptError(f"{path}:{number}: literals are not supported yet")
        script.steps.append(Step(step.group(1), int(step.group(2) or 1), text, number))
    if script.protocol not in PORTS:
        raise ScriptError(f"{path}: unknown protocol {script.protocol!r}")
    return script


def _parse_value(text: str) -> object:
    if text in ("true", "false"):
        return text == "true"
    if text.isdigit():
        return int(text)
    return text


def dedicated_settings(script: Script) -> dict[str, object]:
    return {k: _parse_value(v) for k, v in script.config.items()}


class Runner:
    """Runs one script against a server."""

    def __init__(self, script: Script, server: MsgstoreServer, fixtures_dir: Path) -> None:
        self.script = script
        self.server = server
        self.fixtures_dir = fixtures_dir
        self.vars: dict[str, str] = {"domain": DOMAIN}
        self.clients: dict[int, LineClient] = {}
        self.lookahead: dict[int, list[bytes | None]] = {}
        self.negatives: dict[int, list[Step]] = {}
        self.starttls_pending: set[int] = set()
        self.transcript: list[str] = []

    # --- setup --------------------------------------------------------------------------------

    def setup(self) -> None:
        users: list[User] = []
        for spec in self.script.users:
            user = self.server.admin.add_user(spec.label, kind=spec.kind, password=spec.password)
            users.append(user)
            if spec.quota is not None:
                admin = self.server.admin
                change = AccountModify(name=user.name, quota=Limit.parse_size(spec.quota))
                admin.call(change.run(admin.ctx))
            self.vars[spec.label] = user.name
            self.vars[f"{spec.label}.password"] = user.password
        for target, file in self.script.fixtures:
            if target == "INBOX":
                if not users:
                    raise ScriptError(f"{self.script.path}: INBOX fixture without users")
                name = users[0].name
            else:
                name = self.vars.get(target) or ""
                if not name:
                    raise ScriptError(f"{self.script.path}: fixture for unknown user {target}")
            for msg in read_mbox(self.fixtures_dir / file):
                self.server.admin.deliver(name, msg)

    # --- running ------------------------------------------------------------------------------

    def run(self) -> None:
        self.setup()
        try:
            for index, step in enumerate(self.script.steps):
                self._index = index
                if step.kind == "C":
                    self._client(step)
                elif step.kind == "S":
                    self._expect(step)
                elif step.kind == "S*":
                    self._expect_many(step)
                else:
                    self.negatives.setdefault(step.conn, []).append(step)
        finally:
            for client in self.clients.values():
                client.close()

    def _connection(self, number: int) -> LineClient:
        client = self.clients.get(number)
        if client is None:
            plain_key, tls_key = PORTS[self.script.protocol]
            if self.script.tls == "implicit":
                client = LineClient(self.server.port(tls_key), tls=self.server.client_tls())
            else:
                client = LineClient(self.server.port(plain_key))
            self.clients[number] = client
            self.lookahead[number] = []
        return client

    def _client(self, step: Step) -> None:
        client = self._connection(step.conn)
        if step.text == "<disconnect>":
            self.transcript.append(f"C{step.conn}: <disconnect>")
            client.close()
            del self.clients[step.conn]
            return
        if step.text.startswith("<<file:"):
            name = step.text.removeprefix("<<file:")
            self.transcript.append(f"C{step.conn}: <message data of {name}>")
            client.send(data_block((self.fixtures_dir / name).read_bytes()))
            return
        text = self._expand(step.text)
        self.transcript.append(f"C{step.conn}: {text}")
        words = text.upper().split()[:2]
        if self.script.tls == "starttls" and ("STLS" in words or "STARTTLS" in words):
            self.starttls_pending.add(step.conn)
        client.send_line(text.encode("utf-8"))

    def _expand(self, text: str) -> str:
        def var(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.vars:
                raise ScriptError(f"{self.script.path}: ${name} used before it was captured")
            return self.vars[name]

        expanded = _VAR_RE.sub(var, text)

        def b64(m: re.Match[str]) -> str:
            raw = m.group(1).replace("\\0", "\0").encode("utf-8")
            return base64.b64encode(raw).decode()

        return _B64_RE.sub(b64, expanded)

    def _next_line(self, conn: int) -> bytes | None:
        pending = self.lookahead.setdefault(conn, [])
        if pending:
            return pending.pop(0)
        client = self.clients.get(conn)
        if client is None:
            raise ScriptError(f"S{conn}: used before C{conn} opened the connection")
        try:
            return client.read_line()
        except TimeoutError:
            raise ConversationFailed(
                self._report(self._step, "a line", "nothing (timeout)")
            ) from None

    _step: Step

    def _expect(self, step: Step) -> None:
        self._step = step
        self._connection(step.conn)
        line = self._next_line(step.conn)
        shown = "<closed>" if line is None else line.decode("utf-8", "replace")
        self.transcript.append(f"S{step.conn}: {shown}")
        self._check_negatives(step, line)
        if step.text == "<closed>":
            if line is not None:
                raise ConversationFailed(self._report(step, "<closed>", shown))
            return
        if line is None:
            raise ConversationFailed(self._report(step, step.text, "<closed>"))
        captures = self._match(step.text, shown)
        if captures is None:
            raise ConversationFailed(self._report(step, step.text, shown))
        self.vars.update(captures)
        self.negatives.pop(step.conn, None)
        if step.conn in self.starttls_pending:
            self.starttls_pending.discard(step.conn)
            if shown.startswith(("+OK", "220")) or shown.split(" ")[1:2] == ["OK"]:
                self.clients[step.conn].start_tls(self.server.client_tls())

    _index = 0

    def _following(self, step: Step) -> Step | None:
        """The next ``S:`` step of the same connection, if no ``C:`` comes first."""
        for later in self.script.steps[self._index + 1 :]:
            if later.conn != step.conn:
                continue
            if later.kind == "S":
                return later
            if later.kind == "C":
                return None
        return None

    def _expect_many(self, step: Step) -> None:
        """Lines matching the pattern, up to one that matches the following ``S:`` line."""
        self._step = step
        self._connection(step.conn)
        following = self._following(step)
        while True:
            line = self._next_line(step.conn)
            if line is None:
                self.lookahead[step.conn].insert(0, None)
                return
            shown = line.decode("utf-8", "replace")
            captures = self._match(step.text, shown)
            stop = following is not None and self._match(following.text, shown) is not None
            if captures is None or stop:
                self.lookahead[step.conn].insert(0, line)
                return
            self._check_negatives(step, line)
            self.transcript.append(f"S{step.conn}: {shown}")
            self.vars.update(captures)

    def _check_negatives(self, step: Step, line: bytes | None) -> None:
        if line is None:
            return
        shown = line.decode("utf-8", "replace")
        for negative in self.negatives.get(step.conn, []):
            if self._match(negative.text, shown) is not None:
                raise ConversationFailed(
                    self._report(negative, f"no line like {negative.text!r}", shown)
                )

    def _match(self, pattern: str, line: str) -> dict[str, str] | None:
        regex, names = compile_pattern(pattern, self.vars)
        m = regex.fullmatch(line)
        if m is None:
            return None
        return {name: m.group(group) for group, name in names.items()}

    def _report(self, step: Step, expected: str, received: str) -> str:
        tail = "\n".join(f"    {line}" for line in self.transcript[-20:])
        return (
            f"{self.script.path}:{step.line}: {self.script.description}\n"
            f"  expected: {expected}\n  received: {received}\n  transcript:\n{tail}"
        )


def compile_pattern(
    pattern: str, known: Mapping[str, str]
) -> tuple[re.Pattern[str], dict[str, str]]:
    """A regex for an ``S:`` pattern, and its capture groups -> variable names."""
    parts: list[str] = []
    names: dict[str, str] = {}
    pos = 0
    for m in _VAR_RE.finditer(pattern):
        parts.append(re.escape(pattern[pos : m.start()]))
        name = m.group(1)
        if name == "*":
            parts.append(".*")
        elif name == "_":
            parts.append(r"\S+")
        elif name in known:
            parts.append(re.escape(known[name]))
        elif name in names.values():
            group = next(g for g, n in names.items() if n == name)
            parts.append(f"(?P={group})")
        else:
            group = f"v{len(names)}"
            names[group] = name
            parts.append(f"(?P<{group}>\\S+)")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts)), names


def data_block(message: bytes) -> bytes:
    """A message as SMTP/LMTP DATA: CRLF line ends, dot-stuffed, ending with ``.``."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"".join(line + b"\r\n" for line in stuffed) + b".\r\n"


def read_mbox(path: Path) -> list[bytes]:
    """Messages of an mbox file (``From `` separator lines; ``>From `` un-quoted), CRLF."""
    messages: list[list[bytes]] = []
    for line in path.read_bytes().splitlines():
        if line.startswith(b"From "):
            messages.append([])
            continue
        if not messages:
            raise ScriptError(f"{path}: does not start with a 'From ' line")
        if re.match(rb"^>+From ", line):
            line = line[1:]
        messages[-1].append(line)
    return [b"\r\n".join(lines).rstrip(b"\r\n") + b"\r\n" for lines in messages]


def run_script(
    script: Script,
    server: MsgstoreServer,
    fixtures_dir: Path,
    *,
    on_done: Callable[[Runner], None] | None = None,
) -> None:
    runner = Runner(script, server, fixtures_dir)
    runner.run()
    if on_done is not None:
        on_done(runner)
