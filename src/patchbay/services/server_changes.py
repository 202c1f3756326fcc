"""Changing what a running server exposes: names, descriptions, attached tools, upstreams, policy.

Each function changes rows and bumps the server's revision in the caller's transaction;
once it commits, every gateway process notices and tells connected clients
(``patchbay.mcp.live``). The CLI and the REST API call these same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.security import Channel
from patchbay.errors import Conflict, InvalidInput
from patchbay.services.naming import default_tool_name, is_valid_tool_name
from patchbay.services.revisions import bump_server
from patchbay.services.tools import ToolRow, server_tools
from patchbay.services.upstreams import get_upstream
from patchbay.store.models import Server, ServerTemplate, ServerTemplateLink, ServerTool, Tool, new_id

NEW_TOOL_POLICIES = ("enabled", "disabled")
MAX_DESCRIPTION = 10_000


async def set_server_options(
    session: AsyncSession, *, server: Server, new_tools: str | None = None, compact: bool | None = None
) -> Server:
    """Set the server's policy for tools upstreams add later, and its compact mode."""
    changed = False
    if new_tools is not None:
        if new_tools not in NEW_TOOL_POLICIES:
            raise InvalidInput(f"new-tools policy must be enabled or disabled, not {new_tools!r}")
        changed |= server.new_tools != new_tools
        server.new_tools = new_tools
    if compact is not None:
        changed |= server.compact != compact
        server.compact = compact
    if changed:
        await bump_server(session, server)
    return server


async def _rows(session: AsyncSession, server: Server) -> dict[str, ToolRow]:
    return {row.name: row for row in await server_tools(session, server=server)}


def _row(rows: Mapping[str, ToolRow], server: Server, name: str) -> ToolRow:
    row = rows.get(name)
    if row is None or row.server_tool_id is None:
        raise InvalidInput(f"server {server.slug!r} has no tool named {name!r}")
    return row


async def override_tools(
    session: AsyncSession,
    *,
    server: Server,
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> list[ToolRow]:
    """Rename tools (exposed name -> new name; "" restores the default) and override descriptions ("" clears)."""
    rows = await _rows(session, server)
    changed = False
    for current, text in (descriptions or {}).items():
        if len(text) > MAX_DESCRIPTION:
            raise InvalidInput(f"the description for {current!r} is longer than {MAX_DESCRIPTION} characters")
        attached = await session.get(ServerTool, _row(rows, server, current).server_tool_id)
        if attached is not None and attached.override_description != (text or None):
            attached.override_description = text or None
            changed = True
    wanted = {current: new.strip() for current, new in (names or {}).items()}
    targets = [new for new in wanted.values() if new]
    if len(set(targets)) != len(targets):
        raise InvalidInput("two tools cannot be given the same name")
    keep = {name for name in rows if name not in wanted}
    for current, new in wanted.items():
        row = _row(rows, server, current)
        if new and not is_valid_tool_name(new):
            raise InvalidInput(f"{new!r} is not a valid tool name (1-128 of A-Z a-z 0-9 _ . -)")
        if new in keep:
            raise Conflict(f"server {server.slug!r} already has a tool named {new!r}")
        attached = await session.get(ServerTool, row.server_tool_id)
        if attached is not None and attached.override_name != (new or None):
            attached.override_name = new or None
            changed = True
    if changed:
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def attach_tools(session: AsyncSession, *, server: Server, tools: Sequence[str]) -> list[ToolRow]:
    """Attach upstream tools (``slug__tool``, or a tool id) enabled; their upstream is linked if it was not."""
    linked = {link.template_id for link in (await _links(session, server))}
    attached = {row.tool_id for row in await server_tools(session, server=server)}
    changed = False
    for wanted in tools:
        tool, template = await _org_tool(session, server=server, name=wanted.strip())
        if tool.id in attached:
            continue
        if template.id not in linked:
            await _link(session, server=server, template=template)
            linked.add(template.id)
        session.add(ServerTool(id=new_id(), server_id=server.id, tool_id=tool.id, enabled=True))
        attached.add(tool.id)
        changed = True
    if changed:
        await session.flush()
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def detach_tools(session: AsyncSession, *, server: Server, tools: Sequence[str]) -> list[ToolRow]:
    """Take tools (by exposed name) off the server."""
    rows = await _rows(session, server)
    ids = [_row(rows, server, name).server_tool_id for name in tools]
    if ids:
        await session.execute(delete(ServerTool).where(ServerTool.id.in_(ids)))
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def link_upstreams(session: AsyncSession, *, server: Server, upstreams: Sequence[str]) -> list[ToolRow]:
    """Add upstreams to the server with all their active tools enabled."""
    linked = {link.template_id for link in (await _links(session, server))}
    attached = {row.tool_id for row in await server_tools(session, server=server)}
    for slug in upstreams:
        template = await get_upstream(session, slug=slug, org_id=server.org_id)
        if template.id in linked:
            raise Conflict(f"server {server.slug!r} already uses upstream {template.slug!r}")
        await _link(session, server=server, template=template)
        linked.add(template.id)
        active = await session.scalars(select(Tool).where(Tool.template_id == template.id, Tool.status == "active"))
        for tool in active:
            if tool.id not in attached:
                session.add(ServerTool(id=new_id(), server_id=server.id, tool_id=tool.id, enabled=True))
    if upstreams:
        await session.flush()
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def unlink_upstreams(session: AsyncSession, *, server: Server, upstreams: Sequence[str]) -> list[ToolRow]:
    """Remove upstreams from the server, with every tool of theirs it exposed."""
    links = {link.template_id: link for link in await _links(session, server)}
    for slug in upstreams:
        template = await get_upstream(session, slug=slug, org_id=server.org_id)
        link = links.pop(template.id, None)
        if link is None:
            raise InvalidInput(f"server {server.slug!r} does not use upstream {template.slug!r}")
        tool_ids = select(Tool.id).where(Tool.template_id == template.id)
        await session.execute(
            delete(ServerTool).where(ServerTool.server_id == server.id, ServerTool.tool_id.in_(tool_ids))
        )
        await session.delete(link)
    if upstreams:
        await session.flush()
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def change_tools(
    session: AsyncSession,
    *,
    server: Server,
    enable: Sequence[str] = (),
    disable: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    attach: Sequence[str] = (),
    detach: Sequence[str] = (),
    channel: Channel = "cli",
) -> list[ToolRow]:
    """Every change ``patchbay server tools`` and ``PATCH …/servers/{s}/tools`` make, in one order:
    attach, switch on/off, rename/describe, detach. Answers the server's tools afterwards."""
    from patchbay.services.servers import set_tools_enabled

    if attach:
        await attach_tools(session, server=server, tools=attach)
    if enable or disable:
        await set_tools_enabled(session, server=server, enable=enable, disable=disable, channel=channel)
    if names or descriptions:
        await override_tools(session, server=server, names=dict(names or {}), descriptions=dict(descriptions or {}))
    if detach:
        await detach_tools(session, server=server, tools=detach)
    return await server_tools(session, server=server)


async def change_upstreams(
    session: AsyncSession, *, server: Server, add: Sequence[str] = (), remove: Sequence[str] = ()
) -> list[ToolRow]:
    """Take upstreams off a server, then link new ones (all their tools on); the tools afterwards."""
    if remove:
        await unlink_upstreams(session, server=server, upstreams=remove)
    if add:
        await link_upstreams(session, server=server, upstreams=add)
    return await server_tools(session, server=server)


async def _links(session: AsyncSession, server: Server) -> list[ServerTemplateLink]:
    found = await session.scalars(select(ServerTemplateLink).where(ServerTemplateLink.server_id == server.id))
    return list(found.all())


async def _link(session: AsyncSession, *, server: Server, template: ServerTemplate) -> None:
    last = await session.scalar(
        select(func.max(ServerTemplateLink.position)).where(ServerTemplateLink.server_id == server.id)
    )
    session.add(ServerTemplateLink(server_id=server.id, template_id=template.id, position=(last or 0) + 1))
    await session.flush()


async def _org_tool(session: AsyncSession, *, server: Server, name: str) -> tuple[Tool, ServerTemplate]:
    rows = await session.execute(
        select(Tool, ServerTemplate)
        .join(ServerTemplate, Tool.template_id == ServerTemplate.id)
        .where((ServerTemplate.org_id == server.org_id) | ServerTemplate.org_id.is_(None))
    )
    for tool, template in rows.all():
        if name in (tool.id, default_tool_name(slug=template.slug, tool_name=tool.name, plain=False)):
            if tool.status != "active":
                raise InvalidInput(f"tool {name!r} is {tool.status}; only active tools can be attached")
            return tool, template
    raise InvalidInput(f"no upstream tool {name!r} (write it as upstream__tool)")
