"""Run a command under ``strace -f -tt`` and read the log back as a list of calls.

Each :class:`Call` knows the log line where it started and the one where it completed (an
``<unfinished ...>`` call completes on its ``<... resumed>`` line), so "A finished before B
started" is ``a.end < b.start`` even when threads interleave. File descriptors are mapped to
paths from the ``openat`` lines (and forgotten when a ``close`` starts) as the log is read, so
``fsync(7)`` is known to be the fsync of ``.../mail/3`` even when fd 7 is reused later.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: The brief's list, plus ``close`` (to keep the fd map right) and ``unlink``/``unlinkat``
#: (expunge).
TRACED: Final = (
    "openat,close,write,pwrite64,fsync,fdatasync,rename,renameat,renameat2,link,linkat,"
    "unlink,unlinkat"
)
_LINE: Final = re.compile(r"^(\d+)\s+\d\d:\d\d:\d\d\.\d+\s+(.*)$")
_CALL: Final = re.compile(r"^(\w+)\((.*)$")
_RESUMED: Final = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_RESULT: Final = re.compile(r"\)\s+=\s+(-?\d+|\?)")
_STRING: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')
_AT_FDCWD: Final = "AT_FDCWD"


def strace_binary() -> str:
    """Path of strace; the syscall tests fail (never skip) without it."""
    found = shutil.which("strace")
    assert found, "strace is required for this test: apt-get install strace"
    return found


@dataclass(slots=True)
class Call:
    pid: int
    name: str
    args: str
    start: int
    end: int
    result: int | None  # None: killed or still running when the log ended
    fd: int | None = None  # first argument, for fd-taking calls
    path: str | None = None  # the fd's path (fd calls) or the first path (path calls)
    path2: str | None = None  # the second path of rename/link
    text: str = ""  # first string argument, as strace printed it (write/pwrite64)


def _strings(args: str) -> list[str]:
    return [m.group(1) for m in _STRING.finditer(args)]


def _resolve(dirfd: str, rel: str, fds: dict[int, str], cwd: str) -> str:
    if rel.startswith("/"):
        return os.path.normpath(rel)
    if dirfd == _AT_FDCWD:
        return os.path.normpath(os.path.join(cwd, rel))
    base = fds.get(int(dirfd), f"<fd {dirfd}>")
    return os.path.normpath(os.path.join(base, rel))


def _fill(call: Call, fds: dict[int, str], cwd: str) -> None:
    """Decode the arguments a test needs, resolving fds with the map as it is now."""
    lead = re.match(r"\s*(AT_FDCWD|-?\d+)", call.args)
    first = lead.group(1) if lead else ""
    strings = _strings(call.args)
    if call.name in ("write", "pwrite64", "fsync", "fdatasync", "close"):
        call.fd = int(first)
        call.path = fds.get(call.fd)
        call.text = strings[0] if strings else ""
    elif call.name in ("rename", "link", "unlink") and strings:
        call.path = _resolve(_AT_FDCWD, strings[0], fds, cwd)
        if len(strings) > 1:
            call.path2 = _resolve(_AT_FDCWD, strings[1], fds, cwd)
    elif call.name in ("renameat", "renameat2", "linkat", "unlinkat") and strings:
        dirfds = re.findall(r"(?:^|,\s*)(AT_FDCWD|\d+),\s*\"", call.args)
        call.path = _resolve(dirfds[0] if dirfds else _AT_FDCWD, strings[0], fds, cwd)
        if len(strings) > 1:
            call.path2 = _resolve(
                dirfds[1] if len(dirfds) > 1 else _AT_FDCWD, strings[1], fds, cwd
            )
    elif call.name == "openat" and strings:
        call.path = _resolve(first, strings[0], fds, cwd)


def parse(log: str, cwd: Path) -> list[Call]:
    """Calls in order of their first line; fds resolved at the call's start, relative paths
    against ``cwd`` (the traced process's working directory)."""
    calls: list[Call] = []
    pending: dict[tuple[int, str], Call] = {}
    fds: dict[int, str] = {}

    def complete(call: Call, rest: str, index: int) -> None:
        call.end = index
        m = _RESULT.search(rest)
        call.result = int(m.group(1)) if m and m.group(1) != "?" else None
        if call.result is None or call.result < 0:
            return
        if call.name == "openat" and call.path is not None:
            fds[call.result] = call.path

    for index, raw in enumerate(log.splitlines()):
        line = _LINE.match(raw)
        if line is None:
            continue
        pid, body = int(line.group(1)), line.group(2)
        resumed = _RESUMED.match(body)
        if resumed:
            call = pending.pop((pid, resumed.group(1)))
            call.args += resumed.group(2)
            complete(call, resumed.group(2), index)
            continue
        head = _CALL.match(body)
        if head is None:  # signals, exits
            continue
        call = Call(pid, head.group(1), head.group(2), index, index, None)
        calls.append(call)
        _fill(call, fds, str(cwd))
        if call.name == "close" and call.fd is not None:
            # The kernel frees the fd when close() starts, so another thread's openat may
            # return it (and be logged) before this close's ``resumed`` line.
            fds.pop(call.fd, None)
        if body.endswith("<unfinished ...>"):
            pending[pid, call.name] = call
        else:
            complete(call, body, index)
    return calls


def run_traced(
    argv: list[str],
    log: Path,
    *,
    cwd: Path,
    timeout_s: float,
    kill_at: tuple[str, Path] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` under strace, the log written to ``log``.

    ``kill_at=(syscall, path)`` delivers SIGKILL on entry to the first ``syscall`` that
    touches ``path`` (strace ``-P path -e inject=syscall:signal=SIGKILL``): a crash at an
    exact point of a write sequence, without instrumenting the code under test. Only that
    path's calls are then logged.
    """
    cmd = [strace_binary(), "-f", "-tt", "-o", str(log)]
    if kill_at is None:
        cmd += ["-e", f"trace={TRACED}"]
    else:
        syscall, path = kill_at
        cmd += ["-P", str(path), "-e", f"trace={syscall}"]
        cmd += ["-e", f"inject={syscall}:signal=SIGKILL:when=1"]
    return subprocess.run(
        [*cmd, *argv], cwd=cwd, capture_output=True, timeout=timeout_s, check=False
    )
