"""Operations whose file travels as the HTTP body: ``account export`` and ``account restore``.

A field declared with ``param(stream=...)`` (management/operation.py) names a file where the
operation runs. Over REST the caller has no file on the server, so the route spools one in
``[store] data_dir/tmp`` and the content travels instead:

- ``stream="out"`` (``GET /accounts/{name}/export``): the operation writes the spool file;
  the response streams it from disk in :data:`CHUNK` pieces with its ``Content-Length``, and
  the operation's JSON result goes in the :data:`RESULT_HEADER` header. The file is unlinked
  as soon as it is open, so nothing is left behind when the client goes away mid-download.
- ``stream="in"`` (``POST /accounts/{name}/restore``): the request body is written to the
  spool file as it arrives, refused with 413 beyond ``[web] api_max_restore_size``, then the
  operation reads it; the answer is its JSON result.

The other fields travel in the query string; an archive is never held in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from msgstore.config import Config
from msgstore.core.errors import ErrorKind, StoreError
from msgstore.management.jsonable import to_json

#: Octets read from or written to the spool file at a time.
CHUNK: Final = 256 * 1024
#: The header of an export response that carries the operation's JSON result.
RESULT_HEADER: Final = "X-Msgstore-Result"


def spool_dir(config: Config) -> Path:
    """A new private directory ``data_dir/tmp/api-<pid>-*`` (the caller removes it); those
    of server processes that died meanwhile go first."""
    base = Path(config.store.data_dir) / "tmp"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in base.glob("api-*-*"):
        pid = entry.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"api-{os.getpid()}-", dir=base))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


async def receive_body(request: Request, destination: Path, limit: int) -> int:
    """Write the request body to ``destination``; TOO_BIG past ``limit`` octets (the
    Content-Length is checked before the first octet is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise StoreError(ErrorKind.TOO_BIG, f"Archive larger than {limit} octets")
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    with await asyncio.to_thread(destination.open, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise StoreError(ErrorKind.TOO_BIG, f"Archive larger than {limit} octets")
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= CHUNK:
                await asyncio.to_thread(out.write, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            await asyncio.to_thread(out.write, b"".join(pending))
    return size


def _content_disposition(filename: str) -> str:
    ascii_name = "".join(
        c if (c.isascii() and c.isalnum()) or c in "-_.@" else "_" for c in filename
    )
    quoted = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


async def send_file(
    path: Path, *, media_type: str, filename: str, result: object, cleanup: Callable[[], None]
) -> Response:
    """Stream ``path`` (then call ``cleanup``, which may remove it: it is open by then)."""

    def open_it() -> tuple[BinaryIO, int]:
        source = path.open("rb")  # a file object: closed when collected, if never streamed
        return source, os.fstat(source.fileno()).st_size

    try:
        source, size = await asyncio.to_thread(open_it)
    finally:
        await asyncio.to_thread(cleanup)

    async def chunks() -> AsyncIterator[bytes]:
        with source:
            while data := await asyncio.to_thread(source.read, CHUNK):
                yield data

    headers = {
        "Content-Length": str(size),
        "Content-Disposition": _content_disposition(filename),
        RESULT_HEADER: json.dumps(to_json(result), ensure_ascii=True, separators=(",", ":")),
    }
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


def remover(directory: Path) -> Callable[[], None]:
    def remove() -> None:
        shutil.rmtree(directory, ignore_errors=True)

    return remove


__all__ = [
    "CHUNK",
    "RESULT_HEADER",
    "receive_body",
    "remover",
    "send_file",
    "spool_dir",
]
