"""``/api/v1/orgs/{org}/tools``: the org's tool registry (upstream and local tools), and local tool management.

Execution is ``POST /api/v1/tools/{tool_id}/execute`` (``web.api.execute``); these routes
manage the registry with the services the CLI's ``tool`` verbs use.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.local_tools import (
    KEEP,
    LocalToolInfo,
    create_local_tool,
    delete_local_tool,
    find_tool,
    get_local_tool,
    update_tool,
)
from patchbay.services.paging import page_of
from patchbay.services.servers import get_server
from patchbay.services.tools import LOCAL, ToolRow, list_tools
from patchbay.store.models import Tool
from patchbay.web.api.deps import Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out

router = APIRouter(prefix="/orgs/{org}/tools", tags=["tools"], responses=ERROR_RESPONSES)

ToolRef = Annotated[str, Path(description="Tool id, or a local tool's name.", min_length=1, max_length=200)]
Kind = Literal["query", "get", "create", "update", "delete"]
RateLimit = Annotated[int | None, Field(ge=1, le=1_000_000, description="Calls per minute, all callers; null: none.")]


class ToolOut(BaseModel):
    id: str
    name: str
    upstream: str
    upstream_name: str
    status: str
    read_only: bool
    enabled: bool | None


class ToolDetailOut(BaseModel):
    """A tool of the registry; ``document``, ``path`` and ``type`` only for a local tool."""

    id: str
    name: str
    local: bool
    description: str
    status: str
    read_only: bool
    rate_limit: int | None
    input_schema: dict[str, Any]
    document: str | None = None
    path: str | None = None
    type: str | None = None
    servers: list[str] = []


class LocalToolIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    document: Annotated[str, Field(min_length=1, max_length=200)]
    path: Annotated[str, Field(max_length=1000, description="RFC 6901 JSON pointer ('' = the whole document).")]
    type: Kind
    description: Annotated[str | None, Field(max_length=10_000)] = None
    rate_limit: RateLimit = None


class ToolUpdateIn(BaseModel):
    """Only the fields present change; ``name``/``description`` for local tools only."""

    name: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    description: Annotated[str | None, Field(max_length=10_000)] = None
    rate_limit: RateLimit = None


def tool_row_id(row: ToolRow) -> str:
    """The id a tool row pages by: its place on a server, else the tool itself."""
    return row.server_tool_id or row.tool_id


def tool_out(row: ToolRow) -> ToolOut:
    """A tool by the name clients see; ``enabled`` is null outside a server."""
    return ToolOut(
        id=row.tool_id,
        name=row.name,
        upstream=row.upstream,
        upstream_name=row.upstream_name,
        status=row.status,
        read_only=row.read_only,
        enabled=row.enabled,
    )


def local_out(info: LocalToolInfo) -> ToolDetailOut:
    """A local tool with its document, pointer, type and servers."""
    return ToolDetailOut(
        id=info.tool_id,
        name=info.name,
        local=True,
        description=info.description,
        status="active",
        read_only=info.read_only,
        rate_limit=info.rate_limit,
        input_schema=info.input_schema,
        document=info.document,
        path=info.path,
        type=info.kind,
        servers=list(info.servers),
    )


async def _detail(session: Db, org_id: str, tool: Tool) -> ToolDetailOut:
    if tool.template_id is None:
        return local_out(await get_local_tool(session, org_id=org_id, name=tool.id))
    return ToolDetailOut(
        id=tool.id,
        name=tool.name,
        local=False,
        description=tool.description,
        status=tool.status,
        read_only=tool.read_only,
        rate_limit=tool.rate_limit,
        input_schema=tool.input_schema,
    )


@router.get("", summary="The org's tools: upstream tools by default name, and local tools")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.TOOLS_READ)],
    session: Db,
    paging: Paging,
    kind: Annotated[Literal["local", "upstream"] | None, Query(description="Only local or upstream tools.")] = None,
    server: Annotated[str | None, Query(max_length=200, description="Only this server's tools.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Only names containing this text.")] = None,
) -> PageOut[ToolOut]:
    chosen = await get_server(session, org_id=access.org_id, name_or_slug=server) if server else None
    rows = [
        row
        for row in await list_tools(session, org_id=access.org_id, server=chosen)
        if (kind is None or (row.upstream == LOCAL) == (kind == "local")) and (not q or q.lower() in row.name.lower())
    ]
    return page_out(page_of(rows, key=tool_row_id, request=paging), tool_out)


@router.post("", status_code=201, summary="Create a local tool over a document (admins)")
async def create(
    body: LocalToolIn, access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)], session: Db
) -> ToolDetailOut:
    tool = await create_local_tool(
        session,
        org_id=access.org_id,
        name=body.name,
        document=body.document,
        path=body.path,
        kind=body.type,
        description=body.description,
        rate_limit=body.rate_limit,
    )
    return local_out(await get_local_tool(session, org_id=access.org_id, name=tool.id))


@router.get("/{tool}", summary="One tool")
async def get(tool: ToolRef, access: Annotated[OrgAccess, Requires(Action.TOOLS_READ)], session: Db) -> ToolDetailOut:
    return await _detail(session, access.org_id, await find_tool(session, org_id=access.org_id, name=tool))


@router.put("/{tool}", summary="Rename or redescribe a local tool, or set a tool's rate limit (admins)")
async def update(
    tool: ToolRef, body: ToolUpdateIn, access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)], session: Db
) -> ToolDetailOut:
    given = body.model_fields_set
    changed = await update_tool(
        session,
        org_id=access.org_id,
        name=tool,
        new_name=body.name if body.name is not None else KEEP,
        description=body.description if "description" in given else KEEP,
        rate_limit=body.rate_limit if "rate_limit" in given else KEEP,
    )
    return await _detail(session, access.org_id, changed)


@router.delete("/{tool}", status_code=204, summary="Delete a local tool with its keys and attachments (admins)")
async def delete(tool: ToolRef, access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)], session: Db) -> Response:
    await delete_local_tool(session, org_id=access.org_id, name=tool)
    return Response(status_code=204)
