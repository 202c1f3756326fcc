"""``/api/v1/orgs/{org}/tool-reviews``: tools held back by their pin, and an admin's decision on each.

A tool whose upstream changed its definition is quarantined (``services.tool_sync``);
here admins see the difference and approve or reject it, as ``patchbay tool review``,
``tool approve`` and ``tool reject`` do. Every decision is an audit security event.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.pinning import Decision, ToolReview, decide_tool, quarantined_tools, review_tool
from patchbay.services.servers import get_server
from patchbay.store.models import Server
from patchbay.web.api.deps import Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/orgs/{org}/tool-reviews", tags=["tool reviews"], responses=ERROR_RESPONSES)

ToolRef = Annotated[
    str, Path(description="upstream__tool, a tool id, or (with ?server=) the server's exposed name.", max_length=300)
]
ServerFilter = Annotated[
    str | None, Query(description="Only this server's tools; names are read as it exposes them.", max_length=200)
]
Admin = Annotated[OrgAccess, Requires(Action.TOOLS_MANAGE)]


class ToolReviewOut(BaseModel):
    tool_id: str
    name: str
    upstream: str
    status: Literal["quarantined", "rejected", "active"]
    approved: dict[str, Any]
    offered: dict[str, Any]
    diff: str


def review_out(review: ToolReview) -> ToolReviewOut:
    """A held-back tool: the approved and the offered definition, and their unified diff."""
    return ToolReviewOut(
        tool_id=review.tool_id,
        name=review.name,
        upstream=review.upstream,
        status=review.status,
        approved=review.approved,
        offered=review.pending,
        diff=review.diff,
    )


async def _server(session: Db, access: OrgAccess, server: str | None) -> Server | None:
    return await get_server(session, org_id=access.org_id, name_or_slug=server) if server else None


@router.get("", summary="Tools held back because their upstream changed them (admins)")
async def list_(access: Admin, session: Db, server: ServerFilter = None) -> list[ToolReviewOut]:
    chosen = await _server(session, access, server)
    reviews = await quarantined_tools(session, org_id=access.org_id, server=chosen, include_rejected=True)
    return [review_out(r) for r in reviews]


@router.get("/{tool}", summary="One held-back tool and how its definition changed (admins)")
async def get(tool: ToolRef, access: Admin, session: Db, server: ServerFilter = None) -> ToolReviewOut:
    chosen = await _server(session, access, server)
    return review_out(await review_tool(session, org_id=access.org_id, name=tool, server=chosen))


async def _decide(decision: Decision, tool: str, access: OrgAccess, session: Db, server: str | None) -> ToolReviewOut:
    chosen = await _server(session, access, server)
    review = await decide_tool(
        session,
        decision=decision,
        org_id=access.org_id,
        name=tool,
        server=chosen,
        channel="api",
        user_id=access.user_id,
    )
    return review_out(review)


@router.post("/{tool}/approve", summary="Adopt the changed definition; clients see the tool again at once (admins)")
async def approve(tool: ToolRef, access: Admin, session: Db, server: ServerFilter = None) -> ToolReviewOut:
    return await _decide("approve", tool, access, session, server)


@router.post("/{tool}/reject", summary="Refuse the changed definition; the tool stays unavailable (admins)")
async def reject(tool: ToolRef, access: Admin, session: Db, server: ServerFilter = None) -> ToolReviewOut:
    return await _decide("reject", tool, access, session, server)
