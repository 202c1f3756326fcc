"""Keeping an upstream's stored tools in step with what it lists, behind a pin.

Every tool's definition (name, title, description, schemas, annotations) is pinned by
a hash. A tool that comes back with another definition is quarantined: the approved
definition stays stored, the new one waits in ``pending_definition``, and the tool is
neither listed nor callable until an admin approves it (``services.pinning``). That is
the defence against an upstream that silently rewrites a tool after it was trusted.
New tools are attached to every server of the upstream, enabled or not by the server's
``new_tools`` policy. Quarantines are audit events, written in the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.audit.security import Channel, SecurityEventName
from patchbay.errors import InvalidInput
from patchbay.services.revisions import bump_servers
from patchbay.store.models import (
    Server,
    ServerTemplate,
    ServerTemplateLink,
    ServerTool,
    Tool,
    new_id,
    utcnow,
)

_HASHED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
MAX_TOOL_NAME = 200
MAX_TITLE = 500


@dataclass(frozen=True)
class SyncResult:
    added: list[str]
    changed: list[str]
    removed: list[str]
    quarantined: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.quarantined)


def tool_definition_hash(tool: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of what a client sees of a tool (the pin)."""
    canonical = {key: tool.get(key) for key in _HASHED_FIELDS}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def sync_tools(
    session: AsyncSession, *, template: ServerTemplate, tools: Sequence[Mapping[str, Any]], channel: Channel = "cli"
) -> SyncResult:
    """Make the template's Tool rows match what the upstream lists now, quarantining rewritten tools."""
    incoming = check_tools(tools)
    existing = {
        tool.name: tool for tool in (await session.scalars(select(Tool).where(Tool.template_id == template.id))).all()
    }
    now = utcnow()
    added: list[Tool] = []
    changed: list[str] = []
    quarantined: list[Tool] = []
    for name, raw in incoming.items():
        digest = tool_definition_hash(raw)
        tool = existing.get(name)
        if tool is None:
            tool = Tool(id=new_id(), template_id=template.id, name=name, status="active")
            apply_definition(tool, raw, digest, now)
            session.add(tool)
            added.append(tool)
            continue
        tool.last_seen_at = now
        if digest == tool.definition_hash:
            if tool.status != "active":  # back from removal, or reverted to what was approved
                tool.status = "active"
                tool.pending_definition = tool.pending_hash = None
                changed.append(name)
            continue
        if tool.status in ("quarantined", "rejected") and tool.pending_hash == digest:
            continue  # already held back for this very definition: no new review, no new event
        tool.status = "quarantined"
        tool.pending_definition = dict(raw)
        tool.pending_hash = digest
        quarantined.append(tool)
    removed = [n for n, t in existing.items() if n not in incoming and t.status != "removed"]
    for name in removed:
        existing[name].status = "removed"
    template.last_synced_at = now
    await session.flush()
    if added:
        await _attach_new(session, template_id=template.id, tools=added)
    for tool in quarantined:
        await record_tool_event(session, template=template, tool=tool, event="tool.quarantined", channel=channel)
    result = SyncResult(
        added=[t.name for t in added],
        changed=changed,
        removed=removed,
        quarantined=[t.name for t in quarantined],
    )
    if result.any:
        await bump_servers_using(session, template_id=template.id)
    return result


async def _attach_new(session: AsyncSession, *, template_id: str, tools: Sequence[Tool]) -> None:
    """Offer new tools to every server of the upstream, switched on only where its policy says so."""
    servers = (
        await session.execute(
            select(Server.id, Server.new_tools)
            .join(ServerTemplateLink, ServerTemplateLink.server_id == Server.id)
            .where(ServerTemplateLink.template_id == template_id)
        )
    ).all()
    for server_id, policy in servers:
        for tool in tools:
            session.add(ServerTool(id=new_id(), server_id=server_id, tool_id=tool.id, enabled=policy == "enabled"))
    await session.flush()


async def record_tool_event(
    session: AsyncSession,
    *,
    template: ServerTemplate | None,
    tool: Tool,
    event: SecurityEventName,
    channel: Channel,
    user_id: str | None = None,
) -> None:
    """An audit record of a pinning decision, committed with the decision itself."""
    security.record(
        session,
        security.security_event(
            event=event,
            channel=channel,
            org_id=template.org_id if template is not None else None,
            user_id=user_id,
            tool_id=tool.id,
            tool_name=tool.name,
            detail=f"upstream {template.slug}" if template is not None else None,
        ),
    )


def check_tools(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The upstream's tools by name; refuses nameless, over-long or duplicated ones."""
    out: dict[str, Mapping[str, Any]] = {}
    for index, raw in enumerate(tools):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"the upstream's tool #{index + 1} has no name")
        if len(name) > MAX_TOOL_NAME:
            raise InvalidInput(f"the upstream's tool {name[:40]!r}... has a name over {MAX_TOOL_NAME} chars")
        if name in out:
            raise InvalidInput(f"the upstream lists tool {name!r} twice")
        out[name] = raw
    return out


def apply_definition(tool: Tool, raw: Mapping[str, Any], digest: str, now: datetime) -> None:
    """Store ``raw`` as the tool's approved definition."""
    title = raw.get("title")
    description = raw.get("description")
    input_schema = raw.get("inputSchema")
    output_schema = raw.get("outputSchema")
    annotations = raw.get("annotations")
    tool.title = title[:MAX_TITLE] if isinstance(title, str) else None
    tool.description = description if isinstance(description, str) else ""
    tool.input_schema = dict(input_schema) if isinstance(input_schema, Mapping) else {}
    tool.output_schema = dict(output_schema) if isinstance(output_schema, Mapping) else None
    tool.annotations = dict(annotations) if isinstance(annotations, Mapping) else None
    tool.definition = dict(raw)
    tool.definition_hash = digest
    tool.last_seen_at = now


async def bump_servers_using(session: AsyncSession, *, template_id: str) -> None:
    """Every server linking the template exposes something new: invalidate their caches."""
    linked = select(ServerTemplateLink.server_id).where(ServerTemplateLink.template_id == template_id)
    await bump_servers(session, Server.id.in_(linked))
