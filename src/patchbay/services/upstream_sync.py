"""Re-discovering an upstream and storing what changed (CLI ``upstream sync``, list_changed, periodic)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.security import Channel
from patchbay.errors import NotFound
from patchbay.routing.discovery import discover
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.services.tool_sync import SyncResult
from patchbay.services.upstreams import refresh_upstream, upstream_spec
from patchbay.store.models import ServerTemplate, ServerTemplateLink


async def sync_upstream(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    template_id: str,
    secret: bytes,
    timeout: float,  # noqa: ASYNC109 - bounds discovery, which happens outside any transaction
    pool: UpstreamPool | None = None,
    org_id: str | None = None,
    channel: Channel = "cli",
) -> SyncResult:
    """Ask the upstream for its tools now and store them (rewritten ones are quarantined).

    ``org_id`` picks whose credentials to ask with (default: the upstream's own org), and with
    them which pooled connection is reused.
    """
    async with sessionmaker() as session:
        template = await session.get(ServerTemplate, template_id)
        if template is None:
            raise NotFound(f"upstream {template_id} does not exist")
        spec = await upstream_spec(session, template=template, org_id=org_id or template.org_id, secret=secret)
    # No transaction stays open while the upstream is asked: that may take seconds.
    found = await discover(spec, timeout=timeout, pool=pool)
    async with sessionmaker() as session:
        template = await session.get(ServerTemplate, template_id)
        if template is None:
            raise NotFound(f"upstream {template_id} was removed while it was being synced")
        result = await refresh_upstream(session, template=template, discovery=found, channel=channel)
        await session.commit()
    return result


async def linked_upstreams(session: AsyncSession) -> list[str]:
    """Ids of the upstreams some server uses (the ones worth re-syncing periodically).

    OAuth upstreams list nothing without a user's token: they are synced when a user connects.
    """
    query = (
        select(ServerTemplateLink.template_id)
        .join(ServerTemplate, ServerTemplate.id == ServerTemplateLink.template_id)
        .where(ServerTemplate.auth_kind != "oauth")
        .distinct()
    )
    return list((await session.scalars(query)).all())
