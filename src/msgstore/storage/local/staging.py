"""Receiving one message: CRLF-normalised into ``DATA/tmp``, size-capped, fsynced, parsed once.

Small messages stay in memory until :meth:`LocalStagedMessage.finish`, which then creates,
writes, fsyncs, hashes and parses in one hop to a worker thread; larger ones spill to the temp
file every ``SPILL_OCTETS`` as they arrive. Either way the file exists, complete and fsynced,
before ``finish`` returns, and nothing is left behind when the staging context ends or fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mmap
import os
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Final, TypeVar

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.mime.normalize import CrlfNormalizer
from msgstore.mime.parse import METADATA_VERSION, ParsedMessage, parse_message
from msgstore.storage.local import files
from msgstore.storage.local.db import store_error
from msgstore.storage.local.files import FileOps, TempPool
from msgstore.storage.local.index import StagedFile

#: Buffered octets above which a message being received is written out to its temp file.
SPILL_OCTETS: Final = 256 * 1024

T = TypeVar("T")


class LocalStagedMessage:
    """Implements ``storage.base.StagedMessage`` over a temp file in ``DATA/tmp``."""

    def __init__(
        self, *, pool: TempPool, ops: FileOps, executor: Executor, max_octets: int
    ) -> None:
        if max_octets < 0:
            raise StoreError(ErrorKind.PARAMS, "max_octets must not be negative")
        self._pool = pool
        self._ops = ops
        self._executor = executor
        self._max_octets = max_octets
        self._normalizer = CrlfNormalizer()
        self._buffer = bytearray()
        self._size = 0
        self._hash = hashlib.sha256()
        self._path: Path | None = None
        self._fd = -1
        self._spilled = False
        self._result: StagedFile | None = None
        self._error: StoreError | None = None

    @property
    def size(self) -> int:
        return self.staged_file().size

    @property
    def sha256(self) -> bytes:
        return self.staged_file().sha256

    def staged_file(self) -> StagedFile:
        """The finished message; PARAMS before ``finish`` succeeded."""
        if self._result is None:
            raise StoreError(ErrorKind.PARAMS, "The message has not been finished")
        return self._result

    async def write(self, data: bytes) -> None:
        self._check_open()
        out = self._normalizer.feed(data)
        await self._grow(len(out))
        self._buffer += out
        if len(self._buffer) >= SPILL_OCTETS:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            await self._in_thread(self._spill, chunk)

    async def finish(self) -> None:
        chunk = await self.last_chunk()
        self._result = await self._in_thread(self._finish, chunk)

    async def last_chunk(self) -> bytes:
        """The first half of :meth:`finish`, on the event loop: the octets still to write
        (size limit checked). :meth:`finish_here` on a worker thread is the second half."""
        self._check_open()
        tail = self._normalizer.finish()
        await self._grow(len(tail))
        chunk = bytes(self._buffer) + tail
        self._buffer.clear()
        return chunk

    def finish_here(self, chunk: bytes) -> StagedFile:
        """The second half of :meth:`finish`, on the calling (worker) thread: write ``chunk``,
        fsync, parse; on failure the temp file is removed and the error kept, as by
        :meth:`finish`."""
        try:
            self._result = self._finish(chunk)
        except (OSError, StoreError) as exc:
            err = store_error(exc, damaged_text="")
            if err.kind is ErrorKind.INTERNAL:
                raise
            self._error = err
            self._remove()
            raise err from exc
        return self._result

    def released(self) -> None:
        """The store removed the finished temp file itself (``deliver_many(release=True)``,
        after the commit): nothing is left to discard."""
        if self._fd < 0:
            self._path = None

    async def discard(self) -> None:
        """Close and remove the temp file (the end of the staging context)."""
        if self._fd < 0 and self._path is None:
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, self._remove)

    # --- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._result is not None:
            raise StoreError(ErrorKind.PARAMS, "The message is already finished")

    async def _grow(self, octets: int) -> None:
        """Count normalised octets; past the limit, drop everything at once: TOO_BIG."""
        self._size += octets
        if self._size > self._max_octets:
            self._error = StoreError(
                ErrorKind.TOO_BIG,
                f"Message is larger than the limit of {self._max_octets} octets",
            )
            self._buffer.clear()
            await self.discard()
            raise self._error

    async def _in_thread(self, fn: Callable[[bytes], T], chunk: bytes) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, chunk)
        except (OSError, StoreError) as exc:
            err = store_error(exc, damaged_text="")
            if err.kind is ErrorKind.INTERNAL:
                raise
            self._error = err
            await loop.run_in_executor(self._executor, self._remove)
            raise err from exc

    def _open(self) -> None:
        if self._fd < 0:
            self._path, self._fd = self._pool.take()

    def _spill(self, chunk: bytes) -> None:
        self._open()
        self._ops.write_all(self._fd, chunk)
        self._hash.update(chunk)
        self._spilled = True

    def _finish(self, chunk: bytes) -> StagedFile:
        self._open()
        assert self._path is not None
        if chunk:
            self._ops.write_all(self._fd, chunk)
            self._hash.update(chunk)
        if not self._spilled or self._size == 0:
            # Parse on another thread while this one waits for the fsync; if no thread is
            # free to start it by then, parse here (never wait for a job that cannot run).
            parsing = self._executor.submit(parse_message, chunk)
            self._sync_and_close()
            parsed = parse_message(chunk) if parsing.cancel() else parsing.result()
            return _staged(self._path, self._size, self._hash.digest(), parsed)
        self._sync_and_close()
        with open(self._path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            parsed = parse_message(m)
            return _staged(self._path, self._size, self._hash.digest(), parsed)

    def _sync_and_close(self) -> None:
        self._ops.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1

    def _remove(self) -> None:
        if self._fd >= 0:
            files.close_quietly(self._fd)
            self._fd = -1
        if self._path is not None:
            self._ops.remove_quietly(self._path)
            self._path = None


def _staged(path: Path, size: int, sha256: bytes, parsed: ParsedMessage) -> StagedFile:
    """Copy what the parser produced into plain bytes (it may point into an mmap)."""
    return StagedFile(
        path=path,
        size=size,
        sha256=sha256,
        envelope=bytes(parsed.envelope),
        body=bytes(parsed.body),
        bodystructure=bytes(parsed.bodystructure),
        partmap=bytes(parsed.partmap.to_bytes()),
        headers_json=json.dumps(dict(parsed.headers), ensure_ascii=False, separators=(",", ":")),
        meta_version=METADATA_VERSION,
    )
