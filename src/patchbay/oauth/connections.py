"""Services over OAuth upstreams and connections: add an upstream, list, sync and remove connections."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.audit.security import Channel
from patchbay.errors import NotFound
from patchbay.oauth import discovery, grants, tokens
from patchbay.oauth.bearer import OwnerBearer
from patchbay.oauth.manager import TokenManager
from patchbay.oauth.owner import Owner
from patchbay.oauth.registration import PreRegistered, credentials, register
from patchbay.oauth.wire import OAuthError, client
from patchbay.routing.discovery import Discovery
from patchbay.routing.discovery import discover as discover_tools
from patchbay.services.upstreams import add_upstream, refresh_upstream, upstream_spec
from patchbay.settings import Settings
from patchbay.store.models import OAuthClient, OAuthToken, ServerTemplate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionView:
    """One OAuth upstream as a user sees it: never a token."""

    upstream: str
    template_id: str
    status: str  # connected / expired (reconnect) / pending (never connected)
    scopes: list[str]
    expires_at: datetime | None
    connected_at: datetime | None
    registration: str | None


async def add_oauth_upstream(
    session: AsyncSession,
    *,
    org_id: str | None,
    name: str,
    url: str,
    transport: str,
    settings: Settings,
    secret: bytes,
    pre_registered: PreRegistered | None = None,
) -> ServerTemplate:
    """Discover the upstream's authorization server, store the upstream (tools arrive with the first
    connection) and get it an OAuth client."""
    async with client() as http:
        server = await discovery.discover(url, http=http)
        empty = Discovery(protocol_version="", server_info={}, capabilities={}, instructions=None, tools=[])
        template = await add_upstream(
            session,
            org_id=org_id,
            name=name,
            transport=transport,
            command=None,
            url=url,
            env={},
            headers={},
            discovery=empty,
            secret=secret,
        )
        template.auth_kind = "oauth"
        template.protocol_version = None
        await register(
            session,
            template=template,
            server=server,
            settings=settings,
            http=http,
            secret=secret,
            pre_registered=pre_registered,
        )
    await session.flush()
    return template


async def list_connections(session: AsyncSession, *, org_id: str, user_id: str) -> list[ConnectionView]:
    """Every OAuth upstream the org sees, with the user's connection status."""
    templates = (
        await session.scalars(
            select(ServerTemplate)
            .where(
                ServerTemplate.auth_kind == "oauth",
                (ServerTemplate.org_id == org_id) | ServerTemplate.org_id.is_(None),
            )
            .order_by(ServerTemplate.slug)
        )
    ).all()
    ids = [t.id for t in templates]
    rows = {
        row.template_id: row
        for row in (
            await session.scalars(
                select(OAuthToken).where(
                    OAuthToken.template_id.in_(ids),
                    OAuthToken.org_id == org_id,
                    OAuthToken.user_id == user_id,
                )
            )
        ).all()
    }
    clients = {
        c.template_id: c.registration
        for c in (await session.scalars(select(OAuthClient).where(OAuthClient.template_id.in_(ids)))).all()
    }
    out = []
    for t in templates:
        row = rows.get(t.id)
        status = "pending" if row is None else ("expired" if row.status == "dead" else "connected")
        out.append(
            ConnectionView(
                upstream=t.slug,
                template_id=t.id,
                status=status,
                scopes=list(row.scopes or []) if row is not None else [],
                expires_at=tokens.aware(row.expires_at) if row is not None else None,
                connected_at=tokens.aware(row.updated_at) if row is not None else None,
                registration=clients.get(t.id),
            )
        )
    return out


async def unconnected_upstreams(session: AsyncSession, *, org_id: str, user_id: str) -> set[str]:
    """Slugs of the OAuth upstreams the org sees that ``user_id`` has no usable connection to."""
    views = await list_connections(session, org_id=org_id, user_id=user_id)
    return {view.upstream for view in views if view.status != "connected"}


async def remove_connection(
    session: AsyncSession,
    *,
    template: ServerTemplate,
    owner: Owner,
    secret: bytes,
    manager: TokenManager | None = None,
    channel: Channel = "api",
) -> None:
    """Forget the owner's tokens, revoking them at the provider first when it can revoke."""
    row = await tokens.find(session, owner)
    if row is None:
        raise NotFound(f"there is no connection to upstream {template.slug!r} to remove")
    oauth_client = await session.get(OAuthClient, row.client_id)
    if oauth_client is not None and oauth_client.revocation_endpoint:
        held = tokens.open_row(row, secret)
        creds = credentials(oauth_client, secret)
        async with client() as http:
            for value, hint in ((held.refresh_token, "refresh_token"), (held.access_token, "access_token")):
                if value is None:
                    continue
                try:
                    await grants.revoke(
                        http, revocation_endpoint=oauth_client.revocation_endpoint, creds=creds, token=value, hint=hint
                    )
                except OAuthError as exc:
                    logger.warning("revoking a token of upstream %r failed: %s", template.slug, exc)
    await tokens.remove(session, owner)
    security.record(
        session,
        security.security_event(
            event="oauth.disconnected",
            channel=channel,
            org_id=owner.org_id,
            user_id=owner.user_id,
            detail=template.slug,
        ),
    )
    if manager is not None:
        manager.forget(owner)


async def sync_with_connection(
    session: AsyncSession, *, template: ServerTemplate, owner: Owner, manager: TokenManager, secret: bytes
) -> None:
    """Learn the upstream's tools through a fresh connection (an OAuth upstream lists nothing without one)."""
    base = await upstream_spec(session, template=template, org_id=owner.org_id, secret=secret)
    spec = replace(base, key=f"sync:{owner.key}", auth=OwnerBearer(manager, owner))
    found = await discover_tools(spec, timeout=30.0)
    await refresh_upstream(session, template=template, discovery=found, channel="api")
