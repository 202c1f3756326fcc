"""Reviewing, approving and rejecting quarantined tools (``services.tool_sync`` puts them there).

The CLI and the REST API share these functions: they return plain frozen values and
take names as people type them (``slug__tool``, a server's exposed name, or a tool id).

Rejecting keeps the tool held back rather than deleting it: a deleted tool would come
back from the next sync as a *new* tool, enabled wherever a server's ``new_tools``
policy says so, which would let the very definition an admin refused in. A rejected
tool stays unlisted and uncallable while the upstream offers the rejected definition;
it is trusted again only if the upstream returns to the approved one, and a further
rewrite makes it quarantined (and reviewable) again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.security import Channel, SecurityEventName
from patchbay.errors import InvalidInput, NotFound
from patchbay.services.naming import default_tool_name
from patchbay.services.tool_sync import apply_definition, bump_servers_using, record_tool_event, tool_definition_hash
from patchbay.services.tools import server_tools
from patchbay.store.models import Server, ServerTemplate, Tool, utcnow


@dataclass(frozen=True, slots=True)
class ToolReview:
    """A quarantined tool: what was approved, what the upstream offers now, and the difference."""

    tool_id: str
    name: str  # slug__tool, the name ``approve`` accepts
    upstream: str
    status: str  # quarantined (awaiting review) or rejected (held back for good)
    approved: dict[str, Any]
    pending: dict[str, Any]
    diff: str


def _pretty(definition: dict[str, Any]) -> list[str]:
    text = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
    return text.splitlines(keepends=True)


def _review(tool: Tool, slug: str) -> ToolReview:
    approved = dict(tool.definition)
    pending = dict(tool.pending_definition or {})
    diff = "".join(difflib.unified_diff(_pretty(approved), _pretty(pending), fromfile="approved", tofile="offered now"))
    return ToolReview(
        tool_id=tool.id,
        name=default_tool_name(slug=slug, tool_name=tool.name, plain=False),
        upstream=slug,
        status=tool.status,
        approved=approved,
        pending=pending,
        diff=diff,
    )


def _org_tools(org_id: str) -> Any:
    return (
        select(Tool, ServerTemplate.slug)
        .join(ServerTemplate, Tool.template_id == ServerTemplate.id)
        .where((ServerTemplate.org_id == org_id) | ServerTemplate.org_id.is_(None))
    )


HELD = ("quarantined", "rejected")


async def quarantined_tools(
    session: AsyncSession, *, org_id: str, server: Server | None = None, include_rejected: bool = False
) -> list[ToolReview]:
    """Every quarantined (and optionally rejected) tool of the org or one of its servers, by name."""
    statuses = HELD if include_rejected else ("quarantined",)
    query = _org_tools(org_id).where(Tool.status.in_(statuses)).order_by(ServerTemplate.slug, Tool.name)
    rows = (await session.execute(query)).all()
    if server is not None:
        attached = {row.tool_id for row in await server_tools(session, server=server)}
        rows = [row for row in rows if row[0].id in attached]
    return [_review(tool, slug) for tool, slug in rows]


async def _find(session: AsyncSession, *, org_id: str, name: str, server: Server | None) -> tuple[Tool, str]:
    wanted = name.strip()
    if server is not None:
        by_exposed = {row.name: row.tool_id for row in await server_tools(session, server=server)}
        wanted = by_exposed.get(wanted, wanted)
    for tool, slug in (await session.execute(_org_tools(org_id))).all():
        if wanted in (tool.id, default_tool_name(slug=slug, tool_name=tool.name, plain=False)):
            return tool, slug
    raise NotFound(f"no tool {name.strip()!r}" + (f" on server {server.slug!r}" if server is not None else ""))


async def review_tool(session: AsyncSession, *, org_id: str, name: str, server: Server | None = None) -> ToolReview:
    """One held-back tool's review; NotFound for a tool that is not quarantined or rejected."""
    tool, slug = await _find(session, org_id=org_id, name=name, server=server)
    if tool.status not in HELD or tool.pending_definition is None:
        raise NotFound(f"tool {_review(tool, slug).name!r} is not waiting for review (status {tool.status})")
    return _review(tool, slug)


async def _held(
    session: AsyncSession, *, org_id: str, name: str, server: Server | None, statuses: tuple[str, ...]
) -> tuple[Tool, str, ToolReview]:
    tool, slug = await _find(session, org_id=org_id, name=name, server=server)
    review = _review(tool, slug)
    if tool.status not in statuses or tool.pending_definition is None:
        raise InvalidInput(f"tool {review.name!r} is not waiting for review (status {tool.status})")
    return tool, slug, review


Decision = Literal["approve", "reject"]


async def decide_tool(
    session: AsyncSession,
    *,
    decision: Decision,
    org_id: str,
    name: str,
    server: Server | None = None,
    channel: Channel = "cli",
    user_id: str | None = None,
) -> ToolReview:
    """An admin's decision on a held-back tool.

    ``approve`` adopts what the upstream now offers (a quarantined or rejected tool is listed
    and callable again); ``reject`` refuses it (the tool stays unlisted and uncallable, see above).
    """
    statuses = HELD if decision == "approve" else ("quarantined",)
    tool, _slug, review = await _held(session, org_id=org_id, name=name, server=server, statuses=statuses)
    if decision == "approve":
        pending = dict(tool.pending_definition or {})
        apply_definition(tool, pending, tool.pending_hash or tool_definition_hash(pending), utcnow())
        tool.status = "active"
        tool.pending_definition = tool.pending_hash = None
    else:
        tool.status = "rejected"
    event: SecurityEventName = "tool.approved" if decision == "approve" else "tool.rejected"
    await session.flush()
    template = await session.get(ServerTemplate, tool.template_id) if tool.template_id else None
    await record_tool_event(session, template=template, tool=tool, event=event, channel=channel, user_id=user_id)
    if tool.template_id:
        await bump_servers_using(session, template_id=tool.template_id)
    return replace(review, status=tool.status)
