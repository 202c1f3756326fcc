"""Tools as people see them: by exposed name, per server or across the org's catalog."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from patchbay.services.naming import default_tool_name, exposed_tool_names
from patchbay.store.models import LocalTool, Server, ServerTemplate, ServerTemplateLink, ServerTool, Tool

LOCAL = "local"  # what the upstream column says for a local tool (one over a stored document)


@dataclass(frozen=True, slots=True)
class ToolRow:
    """One tool line: ``server_tool_id``/``enabled`` are None outside a server."""

    name: str
    upstream: str
    upstream_name: str
    status: str
    read_only: bool
    enabled: bool | None
    tool_id: str
    server_tool_id: str | None = None
    server: str | None = None

    @property
    def usable(self) -> bool:
        return self.status == "active" and self.enabled is not False


async def load_server(session: AsyncSession, *, server_id: str) -> Server:
    """A server with its links, templates and tools loaded (what naming needs), fresh from the db."""
    return (
        await session.execute(
            select(Server)
            .where(Server.id == server_id)
            .options(
                selectinload(Server.templates).selectinload(ServerTemplateLink.template),
                selectinload(Server.tools).selectinload(ServerTool.tool),
            )
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def server_tools(session: AsyncSession, *, server: Server) -> list[ToolRow]:
    """Every tool attached to ``server`` under its exposed name, sorted by that name."""
    loaded = await load_server(session, server_id=server.id)
    names = exposed_tool_names(loaded, loaded.tools)
    slugs = {link.template_id: link.template.slug for link in loaded.templates}
    rows = [
        ToolRow(
            name=names[st.id],
            upstream=slugs.get(st.tool.template_id, "") if st.tool.template_id else LOCAL,
            upstream_name=st.tool.name,
            status=st.tool.status,
            read_only=st.tool.read_only,
            enabled=st.enabled,
            tool_id=st.tool.id,
            server_tool_id=st.id,
            server=loaded.slug,
        )
        for st in loaded.tools
    ]
    return sorted(rows, key=lambda r: r.name)


async def list_tools(session: AsyncSession, *, org_id: str, server: Server | None = None) -> list[ToolRow]:
    """A server's tools, or (without one) every tool the org can attach: upstream tools by default name, then
    local tools."""
    if server is not None:
        return await server_tools(session, server=server)
    result = await session.execute(
        select(Tool, ServerTemplate.slug)
        .join(ServerTemplate, Tool.template_id == ServerTemplate.id)
        .where((ServerTemplate.org_id == org_id) | ServerTemplate.org_id.is_(None))
        .order_by(ServerTemplate.slug, Tool.name)
    )
    rows = [
        ToolRow(
            name=default_tool_name(slug=slug, tool_name=tool.name, plain=False),
            upstream=slug,
            upstream_name=tool.name,
            status=tool.status,
            read_only=tool.read_only,
            enabled=None,
            tool_id=tool.id,
        )
        for tool, slug in result.all()
    ]
    local = await session.scalars(
        select(Tool).join(LocalTool, LocalTool.tool_id == Tool.id).where(LocalTool.org_id == org_id).order_by(Tool.name)
    )
    rows.extend(
        ToolRow(
            name=tool.name,
            upstream=LOCAL,
            upstream_name=tool.name,
            status=tool.status,
            read_only=tool.read_only,
            enabled=None,
            tool_id=tool.id,
        )
        for tool in local.all()
    )
    return rows
