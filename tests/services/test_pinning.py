"""Pinning: rewritten tools wait for review, approvals restore them, new tools follow the server's policy."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import InvalidInput, NotFound
from patchbay.services.pinning import decide_tool, quarantined_tools
from patchbay.services.server_changes import set_server_options
from patchbay.services.servers import create_server
from patchbay.services.tools import server_tools
from patchbay.services.upstreams import sync_tools
from patchbay.store.models import AuditRecord, Organization, Tool
from tests.services.conftest import make_upstream, tool

pytestmark = pytest.mark.anyio


async def _status(db: AsyncSession, name: str) -> str | None:
    return await db.scalar(select(Tool.status).where(Tool.name == name))


async def test_a_changed_schema_quarantines_and_review_shows_the_difference(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    template = await make_upstream(db, org=org, secret=secret, name="up", tools=[tool("a"), tool("b")])
    server = await create_server(db, org_id=org.id, name="s", upstream_slugs=["up"], tools=None, plain_names=False)
    widened = tool("a")
    widened["inputSchema"] = {"type": "object", "properties": {"path": {"type": "string"}}}
    result = await sync_tools(db, template=template, tools=[widened, tool("b")])
    await db.commit()
    assert result.quarantined == ["a"]
    assert await _status(db, "a") == "quarantined"

    [review] = await quarantined_tools(db, org_id=org.id, server=server)
    assert review.name == "up__a"
    assert '+      "path": {' in review.diff
    assert review.approved["inputSchema"] == {"type": "object", "properties": {}}
    event = await db.scalar(select(AuditRecord).where(AuditRecord.event == "tool.quarantined"))
    assert event is not None and event.tool_name == "a" and event.org_id == org.id

    approved = await decide_tool(db, decision="approve", org_id=org.id, name="up__a")
    await db.commit()
    assert approved.pending == widened
    assert await _status(db, "a") == "active"
    assert await db.scalar(select(Tool.input_schema).where(Tool.name == "a")) == widened["inputSchema"]
    assert await quarantined_tools(db, org_id=org.id) == []
    assert await db.scalar(select(AuditRecord.tool_name).where(AuditRecord.event == "tool.approved")) == "a"


async def test_an_upstream_that_reverts_to_the_approved_definition_is_trusted_again(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    template = await make_upstream(db, org=org, secret=secret, name="up", tools=[tool("a")])
    await sync_tools(db, template=template, tools=[tool("a", description="sneaky")])
    assert await _status(db, "a") == "quarantined"
    again = await sync_tools(db, template=template, tools=[tool("a", description="sneakier")])
    assert again.quarantined == ["a"], "a second rewrite replaces what waits for review"
    reverted = await sync_tools(db, template=template, tools=[tool("a")])
    assert reverted.changed == ["a"]
    assert await _status(db, "a") == "active"
    assert await db.scalar(select(Tool.pending_definition).where(Tool.name == "a")) is None


async def test_approving_needs_a_quarantined_tool_by_a_known_name(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    await make_upstream(db, org=org, secret=secret, name="up", tools=[tool("a")])
    with pytest.raises(InvalidInput, match="'up__a' is not waiting for review"):
        await decide_tool(db, decision="approve", org_id=org.id, name="up__a")
    with pytest.raises(NotFound, match="no tool 'up__zzz'"):
        await decide_tool(db, decision="approve", org_id=org.id, name="up__zzz")


async def test_new_tools_start_as_each_servers_policy_says(db: AsyncSession, org: Organization, secret: bytes) -> None:
    template = await make_upstream(db, org=org, secret=secret, name="up", tools=[tool("a")])
    careful = await create_server(
        db, org_id=org.id, name="careful", upstream_slugs=["up"], tools=None, plain_names=False
    )
    open_ = await create_server(
        db, org_id=org.id, name="open", upstream_slugs=["up"], tools=None, plain_names=False, new_tools="enabled"
    )
    await sync_tools(db, template=template, tools=[tool("a"), tool("fresh")])
    assert {r.name: r.enabled for r in await server_tools(db, server=careful)} == {"up__a": True, "up__fresh": False}
    assert {r.name: r.enabled for r in await server_tools(db, server=open_)} == {"up__a": True, "up__fresh": True}

    before = careful.revision
    await set_server_options(db, server=careful, new_tools="enabled")
    assert careful.revision == before + 1
    with pytest.raises(InvalidInput, match="enabled or disabled"):
        await set_server_options(db, server=careful, new_tools="maybe")
