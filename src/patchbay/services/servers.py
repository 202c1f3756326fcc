"""Servers: what one MCP endpoint exposes, built from upstreams and an allow-list of their tools."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.naming import SEPARATOR, default_tool_name, sanitize_tool_name
from patchbay.services.revisions import bump_server
from patchbay.services.slugs import require_slug, slugify
from patchbay.services.tools import ToolRow, load_server, server_tools
from patchbay.services.upstreams import get_upstream
from patchbay.store.models import (
    ApiKey,
    Server,
    ServerTemplate,
    ServerTemplateLink,
    ServerTool,
    Tool,
    new_id,
)

MAX_SERVER_SLUG = 64


@dataclass(frozen=True)
class ServerSummary:
    server: Server
    upstreams: list[str]
    tools: int
    enabled_tools: int
    keys: int


async def create_server(
    session: AsyncSession,
    *,
    org_id: str,
    name: str,
    upstream_slugs: Sequence[str],
    tools: Sequence[str] | None,
    plain_names: bool,
    new_tools: str = "disabled",
    compact: bool = False,
) -> Server:
    """A server over ``upstream_slugs`` with all their active tools, or only ``tools``."""
    if new_tools not in ("enabled", "disabled"):
        raise InvalidInput(f"new-tools policy must be enabled or disabled, not {new_tools!r}")
    clean_name = name.strip()
    slug = require_slug(clean_name, what="server", max_length=MAX_SERVER_SLUG)
    if await session.scalar(select(Server.id).where(Server.org_id == org_id, Server.slug == slug)):
        raise Conflict(f"server {slug!r} already exists")
    templates: list[ServerTemplate] = []
    for wanted in upstream_slugs:
        template = await get_upstream(session, slug=wanted, org_id=org_id)
        if any(t.id == template.id for t in templates):
            raise InvalidInput(f"upstream {template.slug!r} is given twice")
        templates.append(template)
    offered = await _active_tools(session, templates)
    chosen = offered if tools is None else _pick(tools, offered, templates)
    if plain_names:
        _refuse_plain_clashes(chosen)
    server = Server(
        id=new_id(),
        org_id=org_id,
        name=clean_name,
        slug=slug,
        plain_names=plain_names,
        new_tools=new_tools,
        compact=compact,
    )
    session.add(server)
    for position, template in enumerate(templates):
        session.add(ServerTemplateLink(server_id=server.id, template_id=template.id, position=position))
    for _template, tool in chosen:
        session.add(ServerTool(id=new_id(), server_id=server.id, tool_id=tool.id, enabled=True))
    await session.flush()
    return server


async def _active_tools(
    session: AsyncSession, templates: Sequence[ServerTemplate]
) -> list[tuple[ServerTemplate, Tool]]:
    by_id = {t.id: t for t in templates}
    rows = (
        await session.scalars(
            select(Tool).where(Tool.template_id.in_(list(by_id)), Tool.status == "active").order_by(Tool.name)
        )
    ).all()
    order = {t.id: i for i, t in enumerate(templates)}
    pairs = [(by_id[tool.template_id], tool) for tool in rows if tool.template_id in by_id]
    return sorted(pairs, key=lambda pair: (order[pair[0].id], pair[1].name))


def _pick(
    requested: Sequence[str],
    offered: list[tuple[ServerTemplate, Tool]],
    templates: Sequence[ServerTemplate],
) -> list[tuple[ServerTemplate, Tool]]:
    """The offered tools named by ``requested``: bare upstream names or ``slug__tool``."""
    names = [r.strip() for r in requested if r.strip()]
    if not names:
        raise InvalidInput("the tool list is empty")
    picked: dict[str, tuple[ServerTemplate, Tool]] = {}
    for wanted in names:
        slug, sep, rest = wanted.partition(SEPARATOR)
        matches = [
            (t, tool)
            for t, tool in offered
            if (sep and t.slug == slug and tool.name == rest)
            or wanted == default_tool_name(slug=t.slug, tool_name=tool.name, plain=False)
        ]
        if not matches:
            matches = [(t, tool) for t, tool in offered if tool.name == wanted]
        if not matches:
            where = ", ".join(t.slug for t in templates) or "no upstreams"
            raise InvalidInput(f"no active tool {wanted!r} in the upstreams given ({where})")
        if len(matches) > 1:
            options = " or ".join(f"{t.slug}{SEPARATOR}{tool.name}" for t, tool in matches)
            raise InvalidInput(f"tool {wanted!r} is offered by several upstreams; write {options}")
        picked.setdefault(matches[0][1].id, matches[0])
    order = {tool.id: i for i, (_t, tool) in enumerate(offered)}
    return sorted(picked.values(), key=lambda pair: order[pair[1].id])


def _refuse_plain_clashes(chosen: Sequence[tuple[ServerTemplate, Tool]]) -> None:
    owners: dict[str, list[str]] = {}
    for template, tool in chosen:
        owners.setdefault(sanitize_tool_name(tool.name), []).append(template.slug)
    for name, slugs in owners.items():
        if len(slugs) > 1:
            raise InvalidInput(
                f"with plain names, tool {name!r} would come from both {' and '.join(slugs[:2])}; "
                "drop --plain-names or choose tools with --tools"
            )


async def get_server(session: AsyncSession, *, org_id: str, name_or_slug: str) -> Server:
    """The org's server called ``name_or_slug`` (its slug, its exact name, or its id)."""
    wanted = name_or_slug.strip()
    found = await session.scalar(
        select(Server)
        .where(
            Server.org_id == org_id,
            (Server.slug == slugify(wanted, max_length=MAX_SERVER_SLUG))
            | (Server.name == wanted)
            | (Server.id == wanted),
        )
        .order_by(Server.created_at)
    )
    if found is None:
        raise NotFound(f"server {wanted!r} does not exist")
    return found


async def list_servers(session: AsyncSession, *, org_id: str) -> list[ServerSummary]:
    """The org's servers by slug, with their upstreams and counts."""
    servers = (await session.scalars(select(Server).where(Server.org_id == org_id).order_by(Server.slug))).all()
    summaries: list[ServerSummary] = []
    for server in servers:
        loaded = await load_server(session, server_id=server.id)
        keys = await session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.server_id == server.id))
        summaries.append(
            ServerSummary(
                server=loaded,
                upstreams=[link.template.slug for link in loaded.templates],
                tools=len(loaded.tools),
                enabled_tools=sum(1 for st in loaded.tools if st.enabled),
                keys=keys or 0,
            )
        )
    return summaries


async def set_tools_enabled(
    session: AsyncSession,
    *,
    server: Server,
    enable: Sequence[str],
    disable: Sequence[str],
    channel: security.Channel = "cli",
) -> list[ToolRow]:
    """Switch tools on or off by exposed name; returns the server's tools afterwards."""
    both = sorted(set(enable) & set(disable))
    if both:
        raise InvalidInput(f"tool {both[0]!r} is both enabled and disabled")
    rows = {row.name: row for row in await server_tools(session, server=server)}
    for name in [*enable, *disable]:
        if name not in rows:
            raise InvalidInput(f"server {server.slug!r} has no tool named {name!r}")
    wanted = {name: True for name in enable} | {name: False for name in disable}
    changed = False
    for name, enabled in wanted.items():
        row = rows[name]
        if row.enabled != enabled and row.server_tool_id is not None:
            attached = await session.get(ServerTool, row.server_tool_id)
            if attached is not None:
                attached.enabled = enabled
                changed = True
                event = security.security_event(
                    event="permission.changed",
                    channel=channel,
                    detail="tool enabled" if enabled else "tool disabled",
                    org_id=server.org_id,
                    server_id=server.id,
                    tool_id=row.tool_id,
                    tool_name=name,
                )
                security.record(session, event)
    if changed:
        await bump_server(session, server)
    return await server_tools(session, server=server)


async def set_payload_capture(
    session: AsyncSession, *, server: Server, enabled: bool, channel: security.Channel = "cli"
) -> Server:
    """Switch storing request/response bodies of this server's calls on or off (records are kept either way)."""
    if server.capture_payloads != enabled:
        server.capture_payloads = enabled
        await bump_server(session, server)
        event = security.security_event(
            event="payload_capture.changed",
            channel=channel,
            org_id=server.org_id,
            server_id=server.id,
            detail="payload capture on" if enabled else "payload capture off",
        )
        security.record(session, event)
    return server
