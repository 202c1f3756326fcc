"""Object storage for audit payloads: one Protocol, a local folder by default, S3 when configured.

``PATCHBAY_OBJECT_STORE_URL`` picks the backend: unset means ``{data dir}/objects``;
``file:///path`` a folder; ``s3://bucket/prefix`` any S3-compatible store (credentials,
region and endpoint from the usual ``AWS_*`` variables, see ``patchbay.audit.s3``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import anyio.to_thread

from patchbay.errors import InvalidInput, NotFound

T = TypeVar("T")


class ObjectStore(Protocol):
    """Where payloads live; keys are relative, ``/``-separated paths."""

    @property
    def location(self) -> str:
        """Where objects go, for operators (never carries a credential)."""
        ...

    async def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing any object there."""
        ...

    async def put_many(self, items: Sequence[tuple[str, bytes]], *, content_type: str) -> list[Exception | None]:
        """Store several objects at once; per item, None when stored or the error that stopped it."""
        ...

    async def get(self, key: str) -> bytes:
        """The object under ``key``; ``NotFound`` when there is none."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove the objects under ``keys``; missing ones are not an error."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be written to now (readiness)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a plain relative path (no ``..``, no leading ``/``, no empty segment)."""
    # Substring tests on the key framed by slashes: several times cheaper than splitting it, and
    # the payload writer checks one key per call.
    framed = f"/{key}/"
    if "//" in framed or "/./" in framed or "/../" in framed or "\\" in key or "\0" in key:
        raise InvalidInput(f"not a valid object key: {key!r}")
    return key


class LocalObjectStore:
    """Objects as files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)
        self._known_dirs: set[str] = set()
        self._writer: ThreadPoolExecutor | None = None

    @property
    def location(self) -> str:
        return f"file://{self.root.resolve()}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def in_thread(self, work: Callable[..., T], *args: object) -> T:
        """Run ``work`` on the store's own writer thread (one thread: writes never race each other).

        A plain executor hop costs several times less CPU than anyio's worker-thread machinery.
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="patchbay-objects")
        return await asyncio.get_running_loop().run_in_executor(self._writer, work, *args)

    async def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        error = (await self.put_many([(key, data)], content_type=content_type))[0]
        if error is not None:
            raise error

    async def put_many(self, items: Sequence[tuple[str, bytes]], *, content_type: str) -> list[Exception | None]:
        # One thread hop for the whole batch: per payload, a hop costs more CPU than the write itself.
        return await self.in_thread(self.put_many_sync, list(items))

    def put_many_sync(self, items: Sequence[tuple[str, bytes]]) -> list[Exception | None]:
        """``put_many`` in the calling thread (the payload writer runs it through ``in_thread``)."""
        results: list[Exception | None] = []
        for key, data in items:
            try:
                self._put_one(key, data)
            except (OSError, InvalidInput) as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    def _put_one(self, key: str, data: bytes) -> None:
        # Plain strings and os calls: Path objects cost more CPU here than the write itself.
        path = f"{self._root}/{check_key(key)}"
        parent = path.rpartition("/")[0]
        if parent not in self._known_dirs:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            if len(self._known_dirs) > 10_000:
                self._known_dirs.clear()
            self._known_dirs.add(parent)
        # Written in place, no temporary name and rename: a payload is found only through its audit
        # record, which is written after the object is complete. (Creating files is the dearest
        # part of capture on this machine; the rename cost ~40% more CPU.)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except FileNotFoundError:  # the folder was pruned since we made it
            self._known_dirs.discard(parent)
            os.makedirs(parent, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"no stored object {key!r}") from None

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]
        await anyio.to_thread.run_sync(self._delete_sync, paths)

    def _delete_sync(self, paths: list[Path]) -> None:
        parents: set[Path] = set()
        for path in paths:
            path.unlink(missing_ok=True)
            parents.add(path.parent)
        self._known_dirs.clear()
        # Day folders empty out as retention prunes them; leave no empty tree behind.
        root = self.root.resolve()
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            current = parent.resolve()
            while current != root and root in current.parents:
                try:
                    current.rmdir()
                except OSError:
                    break
                current = current.parent

    async def ping(self) -> None:
        await anyio.to_thread.run_sync(self._ping_sync)

    def _ping_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(self.root, os.W_OK):
            raise OSError(f"object folder {self.root} is not writable")

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=False)


def make_object_store(url: str | None, *, default_root: Path, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The object store ``url`` names (see the module doc); a clear error for anything else."""
    if not url:
        return LocalObjectStore(default_root)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise InvalidInput(
                f"PATCHBAY_OBJECT_STORE_URL: a file URL needs an absolute path, e.g. file:///var/lib/x: {url!r}"
            )
        return LocalObjectStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from patchbay.audit.s3 import S3ObjectStore, s3_config

        return S3ObjectStore(s3_config(url, os.environ if environ is None else environ))
    raise InvalidInput(f"PATCHBAY_OBJECT_STORE_URL must start with file:// or s3://, not {url!r}")
