"""``/api/v1/orgs/{org}/servers``: MCP endpoints of an org, and the tools each exposes."""

from __future__ import annotations

from collections.abc import Set
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from patchbay.oauth.connections import unconnected_upstreams
from patchbay.policy.access import Action, OrgAccess
from patchbay.services.configs import refresh_servers
from patchbay.services.paging import page_of
from patchbay.services.server_changes import change_tools, change_upstreams, set_server_options
from patchbay.services.servers import ServerSummary, create_server, get_server, list_servers, set_payload_capture
from patchbay.services.tools import server_tools
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.tools import ToolOut, tool_out, tool_row_id
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/servers", tags=["servers"], responses=ERROR_RESPONSES)

ServerRef = Annotated[str, Path(description="Server id, slug or name.", min_length=1, max_length=200)]
ToolName = Annotated[str, Field(min_length=1, max_length=200)]


class ServerOut(BaseModel):
    id: str
    name: str
    slug: str
    description: str
    status: str
    my_status: str = Field(
        description="The status for you: 'pending' while an OAuth upstream of it awaits your connection."
    )
    pending_connections: list[str] = Field(description="OAuth upstreams you must connect before using it.")
    plain_names: bool
    new_tools: str
    compact: bool
    payload_capture: bool
    upstreams: list[str]
    tools: int
    enabled_tools: int
    keys: int
    created_at: Timestamp


class ServerIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    upstreams: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)] = []
    tools: Annotated[list[ToolName] | None, Field(max_length=1000, description="Only these tools (default: all).")] = (
        None
    )
    plain_names: bool = False
    new_tools: Literal["enabled", "disabled"] = Field("disabled", description="How tools upstreams add later start.")
    compact: bool = Field(False, description="Expose a search tool and a call tool instead of every tool.")


ToolNames = Annotated[list[ToolName], Field(max_length=1000)]
Overrides = Annotated[dict[ToolName, Annotated[str, Field(max_length=10_000)]], Field(max_length=1000)]


class ToolChangesIn(BaseModel):
    """Applied in this order: attach, enable/disable, rename/describe, detach."""

    attach: ToolNames = Field([], description="Tools of the org's upstreams to add, as upstream_slug__tool.")
    enable: ToolNames = []
    disable: ToolNames = []
    rename: Overrides = Field({}, description="Exposed name -> new name; an empty name restores the default.")
    describe: Overrides = Field({}, description="Exposed name -> description; empty restores the upstream's.")
    detach: ToolNames = Field([], description="Exposed names to take off the server.")


class UpstreamChangesIn(BaseModel):
    add: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)] = []
    remove: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)] = []


class ServerPatch(BaseModel):
    new_tools: Literal["enabled", "disabled"] | None = None
    compact: bool | None = None
    payload_capture: bool | None = Field(None, description="Store redacted request/response bodies of calls.")


def server_out(summary: ServerSummary, unconnected: Set[str] = frozenset()) -> ServerOut:
    """A server with its upstreams and counts; ``unconnected``: OAuth upstreams the caller has not connected."""
    server = summary.server
    pending = [slug for slug in summary.upstreams if slug in unconnected]
    return ServerOut(
        id=server.id,
        name=server.name,
        slug=server.slug,
        description=server.description,
        status=server.status,
        my_status="pending" if pending and server.status == "running" else server.status,
        pending_connections=pending,
        plain_names=server.plain_names,
        new_tools=server.new_tools,
        compact=server.compact,
        payload_capture=server.capture_payloads,
        upstreams=summary.upstreams,
        tools=summary.tools,
        enabled_tools=summary.enabled_tools,
        keys=summary.keys,
        created_at=server.created_at,
    )


async def _summary(session: Db, org_id: str, server_id: str) -> ServerSummary:
    return next(s for s in await list_servers(session, org_id=org_id) if s.server.id == server_id)


@router.get("", summary="The organization's servers")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.SERVERS_READ)], session: Db, paging: Paging
) -> PageOut[ServerOut]:
    summaries = await list_servers(session, org_id=access.org_id)
    unconnected = await unconnected_upstreams(session, org_id=access.org_id, user_id=access.user_id)
    return page_out(page_of(summaries, key=lambda s: s.server.id, request=paging), lambda s: server_out(s, unconnected))


@router.post("", status_code=201, summary="Create a server over upstreams (admins)")
async def create(
    body: ServerIn, access: Annotated[OrgAccess, Requires(Action.SERVERS_MANAGE)], session: Db, gw: Gw
) -> ServerOut:
    server = await create_server(
        session,
        org_id=access.org_id,
        name=body.name,
        upstream_slugs=body.upstreams,
        tools=body.tools,
        plain_names=body.plain_names,
        new_tools=body.new_tools,
        compact=body.compact,
    )
    await refresh_servers(session, org_id=access.org_id, secret=gw.secret)
    return server_out(await _summary(session, access.org_id, server.id))


@router.get("/{server}", summary="One server")
async def get(server: ServerRef, access: Annotated[OrgAccess, Requires(Action.SERVERS_READ)], session: Db) -> ServerOut:
    found = await get_server(session, org_id=access.org_id, name_or_slug=server)
    unconnected = await unconnected_upstreams(session, org_id=access.org_id, user_id=access.user_id)
    return server_out(await _summary(session, access.org_id, found.id), unconnected)


@router.get("/{server}/tools", summary="The tools a server exposes, by exposed name")
async def tools(
    server: ServerRef, access: Annotated[OrgAccess, Requires(Action.TOOLS_READ)], session: Db, paging: Paging
) -> PageOut[ToolOut]:
    found = await get_server(session, org_id=access.org_id, name_or_slug=server)
    rows = await server_tools(session, server=found)
    return page_out(page_of(rows, key=tool_row_id, request=paging), tool_out)


@router.patch("/{server}", summary="Change a server's options (admins)")
async def update(
    server: ServerRef, body: ServerPatch, access: Annotated[OrgAccess, Requires(Action.SERVERS_MANAGE)], session: Db
) -> ServerOut:
    found = await get_server(session, org_id=access.org_id, name_or_slug=server)
    await set_server_options(session, server=found, new_tools=body.new_tools, compact=body.compact)
    if body.payload_capture is not None:
        await set_payload_capture(session, server=found, enabled=body.payload_capture, channel="api")
    await session.flush()
    return server_out(await _summary(session, access.org_id, found.id))


@router.patch(
    "/{server}/tools", summary="Attach, switch, rename, describe, detach tools (admins); clients see it at once"
)
async def change_tools_(
    server: ServerRef,
    body: ToolChangesIn,
    access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)],
    session: Db,
) -> list[ToolOut]:
    found = await get_server(session, org_id=access.org_id, name_or_slug=server)
    rows = await change_tools(
        session,
        server=found,
        attach=body.attach,
        enable=body.enable,
        disable=body.disable,
        names=body.rename,
        descriptions=body.describe,
        detach=body.detach,
        channel="api",
    )
    return [tool_out(row) for row in rows]


@router.patch("/{server}/upstreams", summary="Add or remove a server's upstreams (admins); its tools afterwards")
async def change_upstreams_(
    server: ServerRef,
    body: UpstreamChangesIn,
    access: Annotated[OrgAccess, Requires(Action.SERVERS_MANAGE)],
    session: Db,
) -> list[ToolOut]:
    found = await get_server(session, org_id=access.org_id, name_or_slug=server)
    rows = await change_upstreams(session, server=found, add=body.add, remove=body.remove)
    return [tool_out(row) for row in rows]
