"""A shop document with one local tool of every kind on a server, and the table of calls every channel must agree on."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.engine.runner import Limits
from patchbay.services.documents import create_document, get_document, replace_document
from patchbay.services.local_tools import attach_tool, create_local_tool
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import create_server
from patchbay.settings import Settings

SHOP: dict[str, Any] = {
    "items": [{"name": "apple", "price": 3}, {"name": "pear", "price": 12}],
    "meta": {"owner": "ann"},
}

# name, path, kind
TOOLS = [
    ("find_items", "/items", "query"),
    ("read_meta", "/meta", "get"),
    ("add_item", "/items", "create"),
    ("add_meta", "/meta", "create"),
    ("edit_meta", "/meta", "update"),
    ("edit_items", "/items", "update"),
    ("drop_item", "/items", "delete"),
    ("drop_meta", "/meta", "delete"),
]

# Small limits so that "too large" is cheap to provoke; the same on every channel.
MAX_INPUT = 1500
MAX_DOCUMENT = 1000
LIMIT_SETTINGS = {"max_tool_input_bytes": MAX_INPUT, "max_document_bytes": MAX_DOCUMENT}


def with_limits(settings: Settings) -> Settings:
    """``settings`` with the small local tool limits (mutated in place, as other tests do)."""
    settings.max_tool_input_bytes = MAX_INPUT
    settings.max_document_bytes = MAX_DOCUMENT
    return settings


@dataclass(frozen=True)
class Case:
    """One call and what must come of it, whichever channel carries it."""

    id: str
    tool: str
    arguments: dict[str, Any]
    result: dict[str, Any] | None = None  # expected result fields (besides "version")
    error: str | None = None  # a substring of the error message
    http: int | None = None  # the HTTP status REST answers an error with
    after: dict[str, Any] | None = None  # the document afterwards (None: unchanged)
    document: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SHOP))  # the document before


def _shop(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(SHOP)
    out.update(changes)
    return out


CASES = [
    Case("query", "find_items", {"expression": "[?price > `5`].name"}, result={"result": ["pear"]}),
    Case("get", "read_meta", {}, result={"value": {"owner": "ann"}}),
    Case(
        "create-appends-to-an-array",
        "add_item",
        {"value": {"name": "fig", "price": 7}},
        result={"index": 2},
        after=_shop(items=[*SHOP["items"], {"name": "fig", "price": 7}]),
    ),
    Case(
        "create-adds-a-key",
        "add_meta",
        {"key": "color", "value": "red"},
        result={"key": "color", "value": "red"},
        after=_shop(meta={"owner": "ann", "color": "red"}),
    ),
    Case(
        "create-refuses-an-existing-key", "add_meta", {"key": "owner", "value": "x"}, error="already exists", http=409
    ),
    Case(
        "update-with-a-merge-patch",
        "edit_meta",
        {"merge": {"owner": None, "team": "b"}},
        result={"value": {"team": "b"}},
        after=_shop(meta={"team": "b"}),
    ),
    Case(
        "update-with-a-json-patch",
        "edit_items",
        {"patch": [{"op": "replace", "path": "/0/price", "value": 4}, {"op": "remove", "path": "/1"}]},
        result={"value": [{"name": "apple", "price": 4}]},
        after=_shop(items=[{"name": "apple", "price": 4}]),
    ),
    Case(
        "a-json-patch-failing-half-way-writes-nothing",
        "edit_items",
        {"patch": [{"op": "replace", "path": "/0/price", "value": 99}, {"op": "remove", "path": "/7"}]},
        error="patch operation 2 (remove)",
        http=404,
    ),
    Case(
        "delete-by-index",
        "drop_item",
        {"key": 0},
        result={"key": 0, "value": {"name": "apple", "price": 3}},
        after=_shop(items=[{"name": "pear", "price": 12}]),
    ),
    Case("delete-a-missing-key", "drop_meta", {"key": "nope"}, error="/meta/nope does not exist", http=404),
    Case("schema-violation", "find_items", {}, error="'expression' is a required property", http=400),
    Case(
        "schema-violation-names-its-path",
        "edit_items",
        {"patch": [{"op": "swap", "path": "/0"}]},
        error="invalid arguments at patch/0/op",
        http=400,
    ),
    Case("unknown-argument", "read_meta", {"extra": 1}, error="Additional properties are not allowed", http=400),
    Case("bad-query", "find_items", {"expression": "[?"}, error="JMESPath expression '[?' fails", http=400),
    Case(
        "oversized-input", "add_item", {"value": "x" * MAX_INPUT}, error=f"more than the limit of {MAX_INPUT}", http=413
    ),
    Case(
        "document-too-large", "add_item", {"value": "x" * (MAX_DOCUMENT - 20)}, error="document shop would be", http=413
    ),
    Case("stale-version", "edit_meta", {"merge": {"a": 1}, "version": 99}, error="not 99", http=409),
    Case(
        "path-gone-after-the-document-changed",
        "read_meta",
        {},
        error="/meta does not exist",
        http=404,
        document={"items": []},
    ),
]


async def provision(sessionmaker: async_sessionmaker[AsyncSession], *, server: str = "docs") -> None:
    """The shop document, its tools, and a server ``server`` with every tool attached."""
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        limits = Limits(max_input_bytes=MAX_INPUT, max_document_bytes=MAX_DOCUMENT)
        await create_document(session, org_id=org.id, name="shop", value=SHOP, project=None, limits=limits)
        srv = await create_server(session, org_id=org.id, name=server, upstream_slugs=[], tools=None, plain_names=False)
        for name, path, kind in TOOLS:
            tool = await create_local_tool(session, org_id=org.id, name=name, document="shop", path=path, kind=kind)
            await attach_tool(session, server=srv, tool=tool)
        await session.commit()


async def set_document(sessionmaker: async_sessionmaker[AsyncSession], value: dict[str, Any]) -> None:
    """Replace the shop document (its version goes up by one)."""
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        await replace_document(session, org_id=org.id, name="shop", value=value, expected_version=None, limits=Limits())
        await session.commit()


async def read_document(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[Any, int]:
    """The shop document's value and version."""
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        doc = await get_document(session, org_id=org.id, name="shop")
        return doc.value, doc.version
