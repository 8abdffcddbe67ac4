"""The durable file store behind batches: whole objects, put once, read by range, deleted.

Nothing here appends to an object in place, so an S3-compatible store fits the same interface:
a batch's results arrive as many small segment objects (one per group commit) and are assembled
into the output files at finalize. `LocalStore` keeps objects as files under a data directory,
each written to a temporary name, fsynced and renamed, so an object either exists whole or not.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


class FileStore(Protocol):
    async def put(self, key: str, chunks: Iterable[bytes] | AsyncIterator[bytes]) -> int:
        """Writes the object whole (replacing any old one); returns its size."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The object's bytes [start, end), in chunks. Raises FileNotFoundError."""
        ...

    def read_lines(self, key: str, start: int = 0) -> Iterator[bytes]:
        """The object's lines from byte `start`, synchronously (for a worker thread)."""
        ...

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...


class LocalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"key outside the store: {key!r}")
        return path

    async def put(self, key: str, chunks: Iterable[bytes] | AsyncIterator[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        size = 0
        # Writes of 1 MB chunks land in the page cache in well under a millisecond; only the fsync
        # waits on the disk, and it runs in a thread.
        with open(tmp, "wb") as f:  # noqa: ASYNC230
            if isinstance(chunks, AsyncIterator):
                async for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
            else:
                for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
            f.flush()
            await asyncio.to_thread(os.fsync, f.fileno())
        os.replace(tmp, path)
        return size

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        with open(self._path(key), "rb") as f:  # noqa: ASYNC230 (page-cache reads, as above)
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def read_lines(self, key: str, start: int = 0) -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            f.seek(start)
            yield from f

    async def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        for key in await self.list(prefix):
            await self.delete(key)

    async def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()
                      and not p.name.startswith("."))


@lru_cache(maxsize=8)
def store_for(data_dir: str) -> FileStore:
    """One store per data directory per process."""
    return LocalStore(data_dir)
