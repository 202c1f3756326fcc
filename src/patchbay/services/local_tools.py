"""Local tools: a tool in the one registry (``tools``) bound to a document, a pointer and an operation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from patchbay.engine.pointer import parse, resolve
from patchbay.engine.runner import LocalTarget
from patchbay.engine.schemas import KINDS, default_description, input_schema, tool_annotations
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.documents import get_document, servers_with
from patchbay.services.naming import SEPARATOR, is_valid_tool_name
from patchbay.services.revisions import bump_server, bump_servers
from patchbay.services.tools import ToolRow, server_tools
from patchbay.store.models import (
    Document,
    LocalTool,
    Server,
    ServerTemplate,
    ServerTemplateLink,
    ServerTool,
    Tool,
    new_id,
)

MAX_RATE_LIMIT = 1_000_000


class Keep(Enum):
    KEEP = "keep"


KEEP: Final = Keep.KEEP  # an update argument left as it is


@dataclass(frozen=True, slots=True)
class LocalToolInfo:
    """A local tool as people and scripts see it."""

    tool_id: str
    name: str
    document: str
    path: str
    kind: str
    description: str
    rate_limit: int | None
    read_only: bool
    input_schema: dict[str, Any]
    servers: tuple[str, ...]


def definition_hash(definition: dict[str, Any]) -> str:
    """The pin of a tool definition (sorted-key JSON, SHA-256)."""
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_rate_limit(value: int | None) -> int | None:
    """A calls-per-minute limit, or None for unlimited."""
    if value is not None and not (1 <= value <= MAX_RATE_LIMIT):
        raise InvalidInput(f"a rate limit is a number of calls per minute between 1 and {MAX_RATE_LIMIT}")
    return value


async def create_local_tool(
    session: AsyncSession,
    *,
    org_id: str,
    name: str,
    document: str,
    path: str,
    kind: str,
    description: str | None = None,
    rate_limit: int | None = None,
) -> Tool:
    """A new local tool; its path must exist in the document now, and (document, path, kind) be free."""
    clean = _local_name(name)
    if kind not in KINDS:
        raise InvalidInput(f"tool type must be one of {', '.join(KINDS)}, not {kind!r}")
    check_rate_limit(rate_limit)
    doc = await get_document(session, org_id=org_id, name=document)
    tokens = parse(path)
    try:
        resolve(doc.value, tokens)
    except NotFound as exc:
        raise InvalidInput(f"document {doc.slug} has no value at {path}: {exc}") from None
    await _refuse_taken(session, org_id=org_id, name=clean)
    same = await session.scalar(
        select(LocalTool.name).where(LocalTool.document_id == doc.id, LocalTool.path == path, LocalTool.kind == kind)
    )
    if same is not None:
        raise Conflict(f"tool {same!r} is already the {kind} tool at {path or '/'} of document {doc.slug}")
    text = (description or "").strip() or default_description(kind, path=path, document=doc.slug)
    schema = input_schema(kind)
    notes = tool_annotations(kind)
    definition: dict[str, Any] = {"name": clean, "description": text, "inputSchema": schema, "annotations": notes}
    tool = Tool(
        id=new_id(),
        template_id=None,
        name=clean,
        description=text,
        input_schema=schema,
        annotations=notes,
        definition=definition,
        definition_hash=definition_hash(definition),
        status="active",
        rate_limit=rate_limit,
    )
    session.add(tool)
    session.add(LocalTool(tool_id=tool.id, org_id=org_id, name=clean, document_id=doc.id, path=path, kind=kind))
    await session.flush()
    return tool


def _local_name(name: str) -> str:
    clean = name.strip()
    if not is_valid_tool_name(clean) or SEPARATOR in clean:
        raise InvalidInput(
            f"tool name {name!r} must be 1-128 characters of letters, digits, '_', '-' or '.', without '__'"
        )
    return clean


async def _refuse_taken(session: AsyncSession, *, org_id: str, name: str) -> None:
    taken = await session.scalar(select(LocalTool.name).where(LocalTool.org_id == org_id, LocalTool.name == name))
    if taken is not None:
        raise Conflict(f"tool {name!r} already exists")


async def update_tool(
    session: AsyncSession,
    *,
    org_id: str,
    name: str,
    new_name: str | Keep = KEEP,
    description: str | Keep | None = KEEP,
    rate_limit: int | Keep | None = KEEP,
) -> Tool:
    """Rename or redescribe a local tool, or set any tool's rate limit; servers that have it change at once."""
    tool = await find_tool(session, org_id=org_id, name=name)
    local = await session.scalar(
        select(LocalTool).where(LocalTool.tool_id == tool.id).options(selectinload(LocalTool.document))
    )
    if local is None and (new_name is not KEEP or description is not KEEP):
        raise InvalidInput(
            f"tool {tool.name!r} takes its name and description from its upstream; override them where it is attached"
        )
    if not isinstance(rate_limit, Keep):
        tool.rate_limit = check_rate_limit(rate_limit)
    if local is not None:
        if not isinstance(new_name, Keep) and (clean := _local_name(new_name)) != tool.name:
            await _refuse_taken(session, org_id=org_id, name=clean)
            tool.name = local.name = clean
        if not isinstance(description, Keep):
            text = (description or "").strip()
            tool.description = text or default_description(local.kind, path=local.path, document=local.document.slug)
        definition = {**tool.definition, "name": tool.name, "description": tool.description}
        tool.definition, tool.definition_hash = definition, definition_hash(definition)
    await bump_servers(session, servers_with([tool.id]))
    await session.flush()
    return tool


async def get_local_tool(session: AsyncSession, *, org_id: str, name: str) -> LocalToolInfo:
    """One local tool of the org by name or id, as a plain value."""
    tool = await find_tool(session, org_id=org_id, name=name)
    for found in await list_local_tools(session, org_id=org_id, tool_id=tool.id):
        return found
    raise NotFound(f"tool {tool.name!r} is not a local tool")


async def find_tool(session: AsyncSession, *, org_id: str, name: str) -> Tool:
    """A tool of the org's registry: a local tool by name, any tool by id, an upstream tool as ``slug__tool``."""
    wanted = name.strip()
    tool = await session.scalar(
        select(Tool)
        .join(LocalTool, LocalTool.tool_id == Tool.id)
        .where(LocalTool.org_id == org_id, LocalTool.name == wanted)
    )
    if tool is None:
        tool = await session.scalar(
            select(Tool)
            .outerjoin(LocalTool, LocalTool.tool_id == Tool.id)
            .outerjoin(ServerTemplate, ServerTemplate.id == Tool.template_id)
            .where(
                Tool.id == wanted,
                # An outer join leaves the template's columns null for a local tool: only a real
                # global template (id set, org null) may match on "no org".
                (LocalTool.org_id == org_id)
                | (ServerTemplate.org_id == org_id)
                | (ServerTemplate.id.is_not(None) & ServerTemplate.org_id.is_(None)),
            )
        )
    if tool is None and SEPARATOR in wanted:
        slug, _, upstream_name = wanted.partition(SEPARATOR)
        tool = await session.scalar(
            select(Tool)
            .join(ServerTemplate, ServerTemplate.id == Tool.template_id)
            .where(
                ServerTemplate.slug == slug,
                Tool.name == upstream_name,
                (ServerTemplate.org_id == org_id) | ServerTemplate.org_id.is_(None),
            )
        )
    if tool is None:
        raise NotFound(f"tool {wanted!r} does not exist")
    return tool


async def local_target(session: AsyncSession, *, tool_id: str) -> LocalTarget | None:
    """What the engine needs to run ``tool_id``, or None when it is not a local tool."""
    row = (
        await session.execute(
            select(LocalTool.document_id, LocalTool.path, LocalTool.kind).where(LocalTool.tool_id == tool_id)
        )
    ).first()
    if row is None:
        return None
    return LocalTarget(tool_id=tool_id, document_id=row[0], path=row[1], kind=row[2])


def _override_name(name: str | None) -> str | None:
    if name is not None and not is_valid_tool_name(name.strip()):
        raise InvalidInput(f"tool name {name!r} must be 1-128 characters of letters, digits, '_', '-', '.'")
    return name.strip() if name else None


async def attach_tool(
    session: AsyncSession,
    *,
    server: Server,
    tool: Tool,
    override_name: str | None = None,
    override_description: str | None = None,
    enabled: bool = True,
) -> ToolRow:
    """Attach a registry tool to a server (it appears in tools/list at once); returns its row there."""
    if tool.template_id is not None:
        linked = await session.scalar(
            select(ServerTemplateLink.id).where(
                ServerTemplateLink.server_id == server.id, ServerTemplateLink.template_id == tool.template_id
            )
        )
        if linked is None:
            raise InvalidInput(f"tool {tool.name!r} comes from an upstream that server {server.slug!r} does not use")
    exposed = _override_name(override_name)
    exists = await session.scalar(
        select(ServerTool.id).where(ServerTool.server_id == server.id, ServerTool.tool_id == tool.id)
    )
    if exists is not None:
        raise Conflict(f"tool {tool.name!r} is already attached to server {server.slug!r}")
    attached = ServerTool(
        id=new_id(),
        server_id=server.id,
        tool_id=tool.id,
        override_name=exposed,
        override_description=override_description,
        enabled=enabled,
    )
    session.add(attached)
    await bump_server(session, server)
    rows = await server_tools(session, server=server)
    return next(row for row in rows if row.server_tool_id == attached.id)


async def set_attachment(
    session: AsyncSession,
    *,
    server: Server,
    tool: Tool,
    override_name: str | None,
    override_description: str | None,
    enabled: bool,
) -> ToolRow:
    """Attach a tool to a server, or change how the server exposes it (name, description, enabled)."""
    attached = await session.scalar(
        select(ServerTool).where(ServerTool.server_id == server.id, ServerTool.tool_id == tool.id)
    )
    if attached is None:
        return await attach_tool(
            session,
            server=server,
            tool=tool,
            override_name=override_name,
            override_description=override_description,
            enabled=enabled,
        )
    exposed = _override_name(override_name)
    attached.override_name = exposed
    attached.override_description = override_description
    attached.enabled = enabled
    await bump_server(session, server)
    rows = await server_tools(session, server=server)
    return next(row for row in rows if row.server_tool_id == attached.id)


async def detach_tool(session: AsyncSession, *, server: Server, tool: Tool) -> None:
    """Take a tool off a server (it leaves tools/list at once)."""
    attached = await session.scalar(
        select(ServerTool).where(ServerTool.server_id == server.id, ServerTool.tool_id == tool.id)
    )
    if attached is None:
        raise NotFound(f"tool {tool.name!r} is not attached to server {server.slug!r}")
    await session.delete(attached)
    await bump_server(session, server)


async def delete_local_tool(session: AsyncSession, *, org_id: str, name: str) -> None:
    """Delete a local tool, its keys and its attachments; servers that had it change at once."""
    tool = await find_tool(session, org_id=org_id, name=name)
    if tool.template_id is not None:
        raise InvalidInput(f"tool {tool.name!r} belongs to an upstream; remove the upstream instead")
    await bump_servers(session, servers_with([tool.id]))
    await session.delete(tool)
    await session.flush()


async def list_local_tools(
    session: AsyncSession, *, org_id: str, document: str | None = None, tool_id: str | None = None
) -> list[LocalToolInfo]:
    """The org's local tools (or one document's, or one tool), by name."""
    query = (
        select(LocalTool)
        .where(LocalTool.org_id == org_id)
        .options(selectinload(LocalTool.tool), selectinload(LocalTool.document))
        .order_by(LocalTool.name)
    )
    if document is not None:
        doc = await get_document(session, org_id=org_id, name=document)
        query = query.where(LocalTool.document_id == doc.id)
    if tool_id is not None:
        query = query.where(LocalTool.tool_id == tool_id)
    locals_ = (await session.scalars(query)).all()
    attached: dict[str, list[str]] = {}
    ids = [lt.tool_id for lt in locals_]
    if ids:
        for tool_id, slug in await session.execute(
            select(ServerTool.tool_id, Server.slug)
            .join(Server, Server.id == ServerTool.server_id)
            .where(ServerTool.tool_id.in_(ids))
            .order_by(Server.slug)
        ):
            attached.setdefault(tool_id, []).append(slug)
    return [info(lt, servers=attached.get(lt.tool_id, [])) for lt in locals_]


def info(local: LocalTool, *, servers: list[str] | None = None, document: Document | None = None) -> LocalToolInfo:
    """A loaded ``LocalTool`` (with its tool and document) as a plain value."""
    tool = local.tool
    doc = document or local.document
    return LocalToolInfo(
        tool_id=tool.id,
        name=tool.name,
        document=doc.slug,
        path=local.path,
        kind=local.kind,
        description=tool.description,
        rate_limit=tool.rate_limit,
        read_only=tool.read_only,
        input_schema=tool.input_schema,
        servers=tuple(servers or ()),
    )
