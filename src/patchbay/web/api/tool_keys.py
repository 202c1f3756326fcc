"""``/api/v1/orgs/{org}/tool-keys``: keys to one tool (``tk_``); a new key's secret is in the create answer only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.durations import parse_duration
from patchbay.services.local_tools import find_tool
from patchbay.services.paging import page_of
from patchbay.services.tool_keys import ToolKeySummary, create_tool_key, list_tool_keys, revoke_tool_key, summary_of
from patchbay.store.models import Tool
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/tool-keys", tags=["tool keys"], responses=ERROR_RESPONSES)

Scope = Literal["execute", "read", "admin"]


class ToolKeyIn(BaseModel):
    tool: Annotated[str, Field(min_length=1, max_length=200, description="Tool id or local tool name.")]
    scopes: Annotated[list[Scope], Field(max_length=3, description="Default: execute.")] = []
    name: Annotated[str, Field(max_length=200)] = ""
    expires_in: Annotated[str | None, Field(max_length=20, description="e.g. 30d, 12h, 15m; null: never.")] = None
    rate_limit: Annotated[int | None, Field(ge=1, le=1_000_000, description="Calls per minute for this key.")] = None


class ToolKeyOut(BaseModel):
    """A tool key's metadata: never secret material."""

    prefix: str
    name: str
    tool: str
    scopes: list[str]
    state: str
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class NewToolKeyOut(BaseModel):
    key: ToolKeyOut
    secret: str = Field(description="The key itself: shown this once, never stored.")


def key_out(summary: ToolKeySummary) -> ToolKeyOut:
    return ToolKeyOut.model_validate(summary, from_attributes=True)


@router.get("", summary="The org's tool keys (admins)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)],
    session: Db,
    paging: Paging,
    tool: Annotated[str | None, Query(max_length=200, description="Only this tool's keys.")] = None,
) -> PageOut[ToolKeyOut]:
    found: Tool | None = await find_tool(session, org_id=access.org_id, name=tool) if tool else None
    keys = await list_tool_keys(session, org_id=access.org_id, tool=found)
    return page_out(page_of(keys, key=lambda k: k.id, request=paging), key_out)


@router.post("", status_code=201, summary="Create a tool key; the answer holds its secret, shown once (admins)")
async def create(
    body: ToolKeyIn, access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)], session: Db, gw: Gw
) -> NewToolKeyOut:
    tool = await find_tool(session, org_id=access.org_id, name=body.tool)
    key, secret = await create_tool_key(
        session,
        org_id=access.org_id,
        tool=tool,
        name=body.name,
        scopes=body.scopes,
        expires_in=parse_duration(body.expires_in) if body.expires_in is not None else None,
        rate_limit=body.rate_limit,
        secret=gw.secret,
    )
    return NewToolKeyOut(key=key_out(summary_of(key, tool=tool.name)), secret=secret)


@router.delete("/{prefix}", status_code=204, summary="Revoke a tool key; it stops working at once (admins)")
async def revoke(
    prefix: Annotated[str, Path(min_length=1, max_length=200)],
    access: Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)],
    session: Db,
) -> Response:
    await revoke_tool_key(session, org_id=access.org_id, prefix=prefix)
    return Response(status_code=204)
