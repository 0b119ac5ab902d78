"""Receiving one message for PostgreSQL: CRLF-normalised, size-capped, hashed, parsed once.

The message stays in memory up to ``SPILL_OCTETS`` and spills to a temp file in
``DATA/tmp`` beyond that; ``finish`` parses it (``mime.parse``, exactly as the local backend
does) and computes its SHA-256, the key of its content in the ``blobs`` table. Appends read
it back in ``CHUNK_OCTETS`` pieces. The temp file goes when the staging context ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from msgstore.core.errors import ErrorKind, StoreError
from msgstore.mime.normalize import CrlfNormalizer
from msgstore.mime.parse import METADATA_VERSION, ParsedMessage, parse_message

T = TypeVar("T")

#: Buffered octets above which a message being received goes to its temp file.
SPILL_OCTETS: Final = 256 * 1024
#: Octets per ``blob_chunks`` row.
CHUNK_OCTETS: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ParsedMeta:
    """What delivery computes once and every copy shares (columns of ``blobs``)."""

    meta_version: int
    envelope: bytes
    body: bytes
    bodystructure: bytes
    partmap: bytes
    headers_json: str


def parsed_meta(parsed: ParsedMessage) -> ParsedMeta:
    return ParsedMeta(
        meta_version=METADATA_VERSION,
        envelope=bytes(parsed.envelope),
        body=bytes(parsed.body),
        bodystructure=bytes(parsed.bodystructure),
        partmap=bytes(parsed.partmap.to_bytes()),
        headers_json=json.dumps(dict(parsed.headers), ensure_ascii=False, separators=(",", ":")),
    )


class PgStagedMessage:
    """Implements ``storage.base.StagedMessage`` for the PostgreSQL backend."""

    def __init__(self, *, tmp_dir: Path, max_octets: int) -> None:
        if max_octets < 0:
            raise StoreError(ErrorKind.PARAMS, "max_octets must not be negative")
        self._tmp_dir = tmp_dir
        self._max_octets = max_octets
        self._normalizer = CrlfNormalizer()
        self._buffer = bytearray()
        self._data: bytes | None = None  # the whole message, when it stayed in memory
        self._size = 0
        self._hash = hashlib.sha256()
        self._path: Path | None = None
        self._fd = -1
        self._meta: ParsedMeta | None = None
        self._digest = b""
        self._error: StoreError | None = None

    @property
    def size(self) -> int:
        self.meta()
        return self._size

    @property
    def sha256(self) -> bytes:
        self.meta()
        return self._digest

    def meta(self) -> ParsedMeta:
        if self._meta is None:
            raise StoreError(ErrorKind.PARAMS, "The message has not been finished")
        return self._meta

    async def write(self, data: bytes) -> None:
        self._check_open()
        out = self._normalizer.feed(data)
        self._grow(len(out))
        self._buffer += out
        if len(self._buffer) >= SPILL_OCTETS:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            await self._in_thread(self._spill, chunk)

    async def finish(self) -> None:
        self._check_open()
        tail = self._normalizer.finish()
        self._grow(len(tail))
        chunk = bytes(self._buffer) + tail
        self._buffer.clear()
        if self._fd < 0:
            self._hash.update(chunk)
            self._data = chunk
            if len(chunk) < 64 * 1024:
                self._meta = parsed_meta(parse_message(chunk))
            else:
                self._meta = await self._in_thread(lambda c: parsed_meta(parse_message(c)), chunk)
        else:
            self._meta = await self._in_thread(self._finish_file, chunk)
        self._digest = self._hash.digest()

    def chunks(self) -> Iterator[bytes]:
        """The normalised message in ``CHUNK_OCTETS`` pieces (blocking for a spilled one)."""
        if self._data is not None:
            data = self._data
            for pos in range(0, len(data), CHUNK_OCTETS):
                yield data[pos : pos + CHUNK_OCTETS]
            return
        assert self._path is not None
        with open(self._path, "rb") as f:
            while True:
                piece = f.read(CHUNK_OCTETS)
                if not piece:
                    return
                yield piece

    @property
    def in_memory(self) -> bool:
        """True when the message never spilled to a file (``chunks`` does not block)."""
        return self._data is not None

    def read_chunks(self) -> list[bytes]:
        return list(self.chunks())

    def discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None
        self._data = None

    # --- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._meta is not None:
            raise StoreError(ErrorKind.PARAMS, "The message is already finished")

    def _grow(self, octets: int) -> None:
        self._size += octets
        if self._size > self._max_octets:
            self._error = StoreError(
                ErrorKind.TOO_BIG,
                f"Message is larger than the limit of {self._max_octets} octets",
            )
            self._buffer.clear()
            self.discard()
            raise self._error

    async def _in_thread(self, fn: Callable[[bytes], T], chunk: bytes) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, fn, chunk)
        except OSError as exc:
            self._error = StoreError(
                ErrorKind.TEMP, "Cannot write a temporary file", detail=str(exc)
            )
            self.discard()
            raise self._error from exc

    def _spill(self, chunk: bytes) -> None:
        if self._fd < 0:
            self._tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f"{os.getpid()}-", suffix=".pgmsg", dir=self._tmp_dir
            )
            self._fd, self._path = fd, Path(name)
        view = memoryview(chunk)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._hash.update(chunk)

    def _finish_file(self, chunk: bytes) -> ParsedMeta:
        if chunk:
            self._spill(chunk)
        os.close(self._fd)
        self._fd = -1
        assert self._path is not None
        with open(self._path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return parsed_meta(parse_message(m))
