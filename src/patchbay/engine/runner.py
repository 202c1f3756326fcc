"""Running one local tool call against the database: validate, load, operate, store (or not).

Writes are compare-and-swap on ``documents.version``: the new value is stored only if the
version is still the one that was read, otherwise the call starts again from a fresh read.
On PostgreSQL the read also takes the row lock (``FOR UPDATE``), so concurrent writers
queue instead of retrying; on SQLite the database lock serialises writers and the version
check catches a read that went stale in between. Either way no update is ever lost, and a
failing operation raises before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema.exceptions import best_match
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from patchbay.engine.operations import OPERATIONS, Operation, Outcome
from patchbay.engine.pointer import parse
from patchbay.engine.schemas import READ_KINDS, validator
from patchbay.errors import Conflict, InvalidInput, NotFound, PatchbayError, PathNotFound, TooLarge
from patchbay.store.models import Document, utcnow

_MAX_ATTEMPTS = 50
# One lock per (engine, document) being written in this process; a lock nobody holds or waits for goes
# away. Per engine, because an engine stands for a replica: two engines must still meet in the database.
_LOCKS: weakref.WeakValueDictionary[tuple[int, str], asyncio.Lock] = weakref.WeakValueDictionary()


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """A local tool as the engine needs it (what the catalog or a lookup resolved)."""

    tool_id: str
    document_id: str
    path: str
    kind: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits, in bytes of compact JSON."""

    max_input_bytes: int = 64 * 1024
    max_document_bytes: int = 1024 * 1024
    max_result_bytes: int = 1024 * 1024


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the size limits count)."""
    try:
        return len(orjson.dumps(value))
    except TypeError as exc:
        raise InvalidInput(f"not a JSON value: {exc}") from None


def check_arguments(kind: str, arguments: Any, limits: Limits) -> dict[str, Any]:
    """The arguments if they fit the size limit and the kind's input schema; InvalidInput says why not."""
    size = json_size(arguments)
    if size > limits.max_input_bytes:
        raise TooLarge(f"arguments are {size} bytes, more than the limit of {limits.max_input_bytes}")
    error = best_match(validator(kind).iter_errors(arguments))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise InvalidInput(f"invalid arguments{' at ' + where if where else ''}: {error.message}")
    assert isinstance(arguments, dict)  # the schema says "type": "object"
    return arguments


def check_document_size(size: int, limits: Limits, *, name: str) -> None:
    """TooLarge when a document of ``size`` bytes would exceed the limit."""
    if size > limits.max_document_bytes:
        raise TooLarge(f"document {name} would be {size} bytes, more than the limit of {limits.max_document_bytes}")


async def run_local(engine: AsyncEngine, *, target: LocalTarget, arguments: Any, limits: Limits) -> dict[str, Any]:
    """Execute one call; the result always carries the document ``version`` it saw or wrote."""
    args = check_arguments(target.kind, arguments, limits)
    path = parse(target.path)
    operation = OPERATIONS[target.kind]
    if target.kind in READ_KINDS:
        async with engine.connect() as conn:
            name, value, version = await _load(conn, target, lock=False)
        _, result = _operate(operation, value, path, args, name=name, version=version)
        return _finish(result, version, limits)
    # Writers of one document in this process take turns: they would only make each other retry.
    async with _document_lock(engine, target.document_id):
        return await _write(engine, target, path, operation, args, limits)


async def _write(
    engine: AsyncEngine,
    target: LocalTarget,
    path: tuple[str, ...],
    operation: Operation,
    args: dict[str, Any],
    limits: Limits,
) -> dict[str, Any]:
    expected = args.get("version")
    for _ in range(_MAX_ATTEMPTS):
        async with engine.begin() as conn:
            name, value, version = await _load(conn, target, lock=True)
            if expected is not None and expected != version:
                raise Conflict(f"document {name} changed: it is at version {version}, not {expected}")
            new_value, result = _operate(operation, value, path, args, name=name, version=version)
            size = json_size(new_value)
            check_document_size(size, limits, name=name)
            stored = await conn.execute(
                update(Document)
                .where(Document.id == target.document_id, Document.version == version)
                .values(value=new_value, version=version + 1, size_bytes=size, updated_at=utcnow())
            )
            if stored.rowcount == 1:
                return _finish(result, version + 1, limits)
            # Another process wrote in between: leaving the block rolls nothing back (nothing was
            # written) and the next attempt starts from a fresh read.
    raise Conflict("the document kept changing while this call ran; try again")


@contextlib.asynccontextmanager
async def _document_lock(engine: AsyncEngine, document_id: str) -> AsyncIterator[None]:
    key = (id(engine), document_id)
    lock = _LOCKS.get(key)
    if lock is None:
        lock = _LOCKS[key] = asyncio.Lock()
    async with lock:
        yield


async def _load(conn: AsyncConnection, target: LocalTarget, *, lock: bool) -> tuple[str, Any, int]:
    query = select(Document.name, Document.value, Document.version).where(Document.id == target.document_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("the tool's document no longer exists")
    return row[0], row[1], row[2]


def _operate(
    operation: Operation, value: Any, path: tuple[str, ...], args: dict[str, Any], *, name: str, version: int
) -> Outcome:
    try:
        return operation(value, path, args)
    except PatchbayError as exc:
        kind = PathNotFound if isinstance(exc, NotFound) else type(exc)
        raise kind(f"document {name} (version {version}): {exc}") from None


def _finish(result: dict[str, Any], version: int, limits: Limits) -> dict[str, Any]:
    result["version"] = version
    size = json_size(result)
    if size > limits.max_result_bytes:
        raise TooLarge(
            f"the result would be {size} bytes, more than the limit of {limits.max_result_bytes}; narrow the query"
        )
    return result
