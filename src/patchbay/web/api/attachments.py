"""``/api/v1/orgs/{org}/servers/{server}/tools/{tool}``: put a registry tool on a server, or take it off.

``PUT`` attaches the tool (or changes how the server exposes it: name, description,
enabled); ``DELETE`` detaches it. Connected clients see either at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.local_tools import detach_tool, find_tool, set_attachment
from patchbay.services.servers import get_server
from patchbay.web.api.deps import Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.tools import ToolOut, tool_out

router = APIRouter(prefix="/orgs/{org}/servers/{server}/tools", tags=["servers"], responses=ERROR_RESPONSES)

ServerRef = Annotated[str, Path(description="Server id, slug or name.", min_length=1, max_length=200)]
ToolRef = Annotated[
    str,
    Path(description="Tool id, a local tool's name, or an upstream tool as slug__tool.", min_length=1, max_length=200),
]


class AttachmentIn(BaseModel):
    name: Annotated[str | None, Field(max_length=128, description="The name the server exposes (default: own).")] = None
    description: Annotated[str | None, Field(max_length=10_000, description="Override the description.")] = None
    enabled: bool = True


@router.put("/{tool}", summary="Attach a tool to the server, or change its name, description or switch (admins)")
async def attach(
    server: ServerRef,
    tool: ToolRef,
    body: AttachmentIn,
    access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)],
    session: Db,
) -> ToolOut:
    target = await get_server(session, org_id=access.org_id, name_or_slug=server)
    found = await find_tool(session, org_id=access.org_id, name=tool)
    row = await set_attachment(
        session,
        server=target,
        tool=found,
        override_name=body.name,
        override_description=body.description,
        enabled=body.enabled,
    )
    return tool_out(row)


@router.delete("/{tool}", status_code=204, summary="Take a tool off the server (admins)")
async def detach(
    server: ServerRef, tool: ToolRef, access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)], session: Db
) -> Response:
    target = await get_server(session, org_id=access.org_id, name_or_slug=server)
    await detach_tool(session, server=target, tool=await find_tool(session, org_id=access.org_id, name=tool))
    return Response(status_code=204)
