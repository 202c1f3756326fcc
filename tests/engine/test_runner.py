"""The local engine against the real database: results, clear errors, no partial writes, no lost updates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.engine.runner import Limits, LocalTarget, run_local
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.documents import create_document, replace_document
from patchbay.services.orgs import ensure_default_org
from patchbay.settings import Settings
from patchbay.store.db import make_engine
from patchbay.store.models import Document

pytestmark = pytest.mark.anyio

LIMITS = Limits(max_input_bytes=2000, max_document_bytes=1500, max_result_bytes=3000)


async def _document(sm: async_sessionmaker[AsyncSession], value: Any) -> str:
    async with sm() as session:
        org = await ensure_default_org(session)
        doc = await create_document(session, org_id=org.id, name="shop", value=value, project=None, limits=LIMITS)
        await session.commit()
        return doc.id


async def _stored(sm: async_sessionmaker[AsyncSession], doc_id: str) -> tuple[Any, int]:
    async with sm() as session:
        row = (await session.execute(select(Document.value, Document.version).where(Document.id == doc_id))).one()
        return row[0], row[1]


def _tool(doc_id: str, path: str, kind: str) -> LocalTarget:
    return LocalTarget(tool_id="t", document_id=doc_id, path=path, kind=kind)


async def test_each_kind_reads_or_writes_the_value_at_its_path(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    doc_id = await _document(sessionmaker, {"items": [{"n": 1}], "meta": {"a": 1}})

    async def run(path: str, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        return await run_local(engine, target=_tool(doc_id, path, kind), arguments=args, limits=LIMITS)

    assert await run("/items", "query", {"expression": "[].n"}) == {"result": [1], "version": 1}
    assert await run("/meta", "get", {}) == {"value": {"a": 1}, "version": 1}
    assert await run("/items", "create", {"value": {"n": 2}}) == {"index": 1, "value": {"n": 2}, "version": 2}
    assert (await run("/meta", "create", {"key": "b", "value": 2}))["version"] == 3
    assert await run("/meta", "update", {"merge": {"a": None, "c": 3}}) == {"value": {"b": 2, "c": 3}, "version": 4}
    patched = await run("/items", "update", {"patch": [{"op": "replace", "path": "/0/n", "value": 10}]})
    assert patched == {"value": [{"n": 10}, {"n": 2}], "version": 5}
    assert await run("/items", "delete", {"key": 1}) == {"key": 1, "value": {"n": 2}, "version": 6}
    assert await run("", "get", {}) == {"value": {"items": [{"n": 10}], "meta": {"b": 2, "c": 3}}, "version": 6}
    assert await _stored(sessionmaker, doc_id) == ({"items": [{"n": 10}], "meta": {"b": 2, "c": 3}}, 6)


@pytest.mark.parametrize(
    ("path", "kind", "args", "error", "message"),
    [
        ("/items", "query", {}, InvalidInput, "'expression' is a required property"),
        ("/items", "query", {"expression": "[?"}, InvalidInput, "JMESPath expression '\\[\\?' fails"),
        ("/items", "update", {"merge": {}, "patch": []}, InvalidInput, "invalid arguments"),
        ("/items", "create", {"value": "x" * 2100}, InvalidInput, "more than the limit of 2000"),
        ("/items", "create", {"value": "x" * 1900}, InvalidInput, "document shop would be .* bytes"),
        ("/items", "create", {"key": "k", "value": 1}, InvalidInput, "is an array"),
        ("/meta", "create", {"key": "a", "value": 1}, Conflict, "/meta/a already exists"),
        ("/meta", "delete", {"key": "zz"}, NotFound, "/meta/zz does not exist"),
        ("/gone", "get", {}, NotFound, "document shop \\(version 1\\): /gone does not exist"),
        ("/meta", "update", {"merge": {"a": 2}, "version": 7}, Conflict, "it is at version 1, not 7"),
        (
            "/items",
            "update",
            {"patch": [{"op": "add", "path": "/-", "value": 1}, {"op": "remove", "path": "/9"}]},
            NotFound,
            "patch operation 2 \\(remove\\)",
        ),
    ],
)
async def test_bad_calls_fail_clearly_and_write_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    path: str,
    kind: str,
    args: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    before = {"items": [{"n": 1}], "meta": {"a": 1}}
    doc_id = await _document(sessionmaker, before)
    with pytest.raises(error, match=message):
        await run_local(engine, target=_tool(doc_id, path, kind), arguments=args, limits=LIMITS)
    assert await _stored(sessionmaker, doc_id) == (before, 1)


async def test_a_path_that_disappears_when_the_document_is_replaced_is_a_clear_error(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    doc_id = await _document(sessionmaker, {"meta": {"a": 1}})
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        await replace_document(
            session, org_id=org.id, name="shop", value={"other": 1}, expected_version=1, limits=LIMITS
        )
        await session.commit()
    with pytest.raises(NotFound, match="document shop \\(version 2\\): /meta does not exist"):
        await run_local(engine, target=_tool(doc_id, "/meta", "update"), arguments={"merge": {}}, limits=LIMITS)


async def test_parallel_writers_never_lose_an_update(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Writers on separate engines (as separate gateway replicas would be) race in the database itself."""
    doc_id = await _document(sessionmaker, {"log": [], "counter": {}})
    replicas, writers, each = 4, 3, 5
    engines = [make_engine(settings.effective_database_url) for _ in range(replicas)]
    append = _tool(doc_id, "/log", "create")
    count = _tool(doc_id, "/counter", "create")
    limits = Limits(max_input_bytes=2000, max_document_bytes=1_000_000, max_result_bytes=1_000_000)

    async def writer(engine: AsyncEngine, name: str) -> None:
        for step in range(each):
            entry = f"{name}:{step}"
            await run_local(engine, target=append, arguments={"value": entry}, limits=limits)
            await run_local(engine, target=count, arguments={"key": entry, "value": 1}, limits=limits)

    try:
        async with asyncio.timeout(90):
            await asyncio.gather(
                *(writer(engine, f"{r}.{w}") for r, engine in enumerate(engines) for w in range(writers))
            )
    finally:
        for engine in engines:
            await engine.dispose()
    value, version = await _stored(sessionmaker, doc_id)
    expected = {f"{r}.{w}:{s}" for r in range(replicas) for w in range(writers) for s in range(each)}
    assert sorted(value["log"]) == sorted(expected)
    assert set(value["counter"]) == expected
    assert version == 1 + 2 * len(expected)
