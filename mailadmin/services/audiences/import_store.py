"""An import's files — the uploaded CSV and its rejected rows — kept in the database as ordered
chunks of bytes (`import_chunks`), so that the web process that takes the upload and the worker
that imports it need not share a disk (README "Audiences": why the database and not Redis).

Both directions stream: `store` writes CHUNK_BYTES at a time from any binary stream, `open_binary`
reads a stored file back one chunk at a time (never the whole file in memory). The upload is
deleted in the import's own transaction; the rejected rows, and anything an import never picked
up, go once they are older than IMPORT_TTL (`purge_expired`, run at each new import).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from enum import StrEnum
from typing import IO

from sqlalchemy import delete, insert, select

from mailadmin.extensions import db
from mailadmin.models import ImportChunk
from mailadmin.models.types import utcnow
from mailadmin.services.audiences.bounds import CHUNK_BYTES, IMPORT_TTL
from mailadmin.services.transaction import transaction


class FileKind(StrEnum):
    UPLOAD = "upload"
    REJECTED = "rejected"


def store(import_id: str, kind: FileKind, source: IO[bytes]) -> int:
    """Copy `source` into the database (replacing any earlier file of this kind), CHUNK_BYTES at a time,
    in one transaction; returns its size in bytes."""
    size = 0
    with transaction():
        discard(import_id, kind)
        seq = 0
        while chunk := source.read(CHUNK_BYTES):
            db.session.execute(insert(ImportChunk), {"import_id": import_id, "kind": kind.value, "seq": seq,
                                                     "data": chunk, "created_at": utcnow()})
            size += len(chunk)
            seq += 1
    return size


def exists(import_id: str, kind: FileKind) -> bool:
    return db.session.scalar(select(ImportChunk.seq).where(
        ImportChunk.import_id == import_id, ImportChunk.kind == kind.value).limit(1)) is not None


def discard(import_id: str, kind: FileKind) -> None:
    """Delete a stored file (in the caller's transaction; nothing if there is none)."""
    with transaction():
        db.session.execute(delete(ImportChunk).where(ImportChunk.import_id == import_id,
                                                     ImportChunk.kind == kind.value))


def purge_expired() -> int:
    """Delete every stored file older than IMPORT_TTL (its import's record is gone too); how many chunks."""
    with transaction():
        return db.session.execute(delete(ImportChunk).where(
            ImportChunk.created_at < utcnow() - timedelta(seconds=IMPORT_TTL))).rowcount


class _ChunkReader(io.RawIOBase):
    """A stored file as a raw binary stream: each chunk is fetched when the previous one is used up."""

    def __init__(self, import_id: str, kind: FileKind) -> None:
        self._import_id, self._kind = import_id, kind.value
        self._seq = 0
        self._chunk = memoryview(b"")

    def readable(self) -> bool:
        return True

    def next_chunk(self) -> bytes | None:
        data = db.session.scalar(select(ImportChunk.data).where(
            ImportChunk.import_id == self._import_id, ImportChunk.kind == self._kind, ImportChunk.seq == self._seq))
        self._seq += data is not None
        return data

    def readinto(self, buffer) -> int:
        if not self._chunk:
            data = self.next_chunk()
            if data is None:
                return 0
            self._chunk = memoryview(data)
        size = min(len(buffer), len(self._chunk))
        buffer[:size] = self._chunk[:size]
        self._chunk = self._chunk[size:]
        return size


def chunks(import_id: str, kind: FileKind) -> Iterator[bytes]:
    """The stored file's bytes, one chunk at a time (a streamed download)."""
    reader = _ChunkReader(import_id, kind)
    while data := reader.next_chunk():
        yield data


def open_binary(import_id: str, kind: FileKind) -> IO[bytes]:
    """The stored file as a buffered binary stream, read chunk by chunk."""
    return io.BufferedReader(_ChunkReader(import_id, kind), buffer_size=64 * 1024)
