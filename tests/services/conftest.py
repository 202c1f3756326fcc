"""Helpers for service tests: a hand-built discovery result and a seeded org."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.services.orgs import ensure_default_org
from patchbay.services.upstreams import add_upstream
from patchbay.settings import Settings
from patchbay.store.models import Organization, ServerTemplate


@dataclass(frozen=True)
class Discovered:
    """What ``patchbay.routing.discovery.discover`` returns, built by hand."""

    tools: list[dict[str, Any]]
    protocol_version: str = "2025-06-18"
    server_info: dict[str, Any] = field(default_factory=lambda: {"name": "fake", "version": "1.0"})
    capabilities: dict[str, Any] = field(default_factory=lambda: {"tools": {"listChanged": True}})
    instructions: str | None = None


def tool(name: str, *, read_only: bool = False, description: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "description": description or f"the {name} tool",
        "inputSchema": {"type": "object", "properties": {}},
    }
    if read_only:
        spec["annotations"] = {"readOnlyHint": True}
    return spec


TIME_TOOLS = [tool("get_current_time", read_only=True), tool("convert_time", read_only=True)]


@pytest.fixture
def secret(settings: Settings) -> bytes:
    return settings.resolve_secret_key()


@pytest.fixture
async def org(db: AsyncSession) -> Organization:
    found = await ensure_default_org(db)
    await db.commit()
    return found


async def make_upstream(
    db: AsyncSession,
    *,
    org: Organization,
    secret: bytes,
    name: str,
    tools: Sequence[Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
) -> ServerTemplate:
    template = await add_upstream(
        db,
        org_id=org.id,
        name=name,
        transport="stdio",
        command=["fake-server", "--stdio"],
        url=None,
        env=dict(env or {}),
        headers={},
        discovery=Discovered(tools=[dict(t) for t in tools]),
        secret=secret,
    )
    await db.commit()
    return template
