"""``/api/v1/orgs/{org}/tools``: every upstream tool the org can attach to its servers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.paging import page_of
from patchbay.services.tools import ToolRow, list_tools
from patchbay.web.api.deps import Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out

router = APIRouter(prefix="/orgs/{org}/tools", tags=["tools"], responses=ERROR_RESPONSES)


class ToolOut(BaseModel):
    id: str
    name: str
    upstream: str
    upstream_name: str
    status: str
    read_only: bool
    enabled: bool | None


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


@router.get("", summary="Every upstream tool the organization can attach (by default name)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.TOOLS_READ)], session: Db, paging: Paging
) -> PageOut[ToolOut]:
    rows = await list_tools(session, org_id=access.org_id)
    return page_out(page_of(rows, key=tool_row_id, request=paging), tool_out)
