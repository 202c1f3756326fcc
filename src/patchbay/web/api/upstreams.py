"""``/api/v1/orgs/{org}/upstreams``: catalog entries (templates) the org sees: its own and the global ones.

Adding a stdio upstream runs a command on the gateway host, so only platform
administrators may; org admins add remote (HTTP) upstreams.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from patchbay.oauth.connections import add_oauth_upstream
from patchbay.oauth.registration import PreRegistered
from patchbay.policy.access import Action, OrgAccess, authorize_platform
from patchbay.services.catalog import update_template
from patchbay.services.paging import page_of
from patchbay.services.upstream_add import Check, Store, StoreOAuth, add_entry, import_entries, store_entry
from patchbay.services.upstream_input import UpstreamInput, check_upstream, redact_url
from patchbay.services.upstream_sync import sync_upstream
from patchbay.services.upstreams import (
    DiscoveredUpstream,
    UpstreamSummary,
    ensure_upstream_name_free,
    get_upstream,
    list_upstreams,
    parse_mcp_servers_file,
    remove_upstream,
)
from patchbay.store.models import ServerTemplate
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/upstreams", tags=["upstreams"], responses=ERROR_RESPONSES)

UpstreamRef = Annotated[str, Path(min_length=1, max_length=200, description="Upstream slug or name.")]
DISCOVERY_TIMEOUT = 30.0


class UpstreamOut(BaseModel):
    id: str
    slug: str
    name: str
    scope: str = Field(description="'org' for the organization's own, 'global' for the shared catalog.")
    description: str
    tags: list[str]
    icon: str | None
    visibility: str
    transport: str
    command: list[str] | None
    url: str | None
    secret_keys: list[str] = Field(description="Names of the env vars / headers it needs (never values).")
    auth_kind: str = Field(description="none, static (env/headers) or oauth (each user connects).")
    protocol_version: str | None
    server_info: dict[str, Any] | None
    active_tools: int
    servers: int
    created_at: Timestamp


Tags = Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=20)]


class UpstreamPatch(BaseModel):
    description: Annotated[str | None, Field(max_length=4000)] = None
    tags: Tags | None = None
    icon: Annotated[str | None, Field(max_length=500, description="Empty string removes it.")] = None
    visibility: Literal["public", "org", "private"] | None = None


class UpstreamIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scope: Literal["org", "global"] = Field("org", description="'global' (platform administrators) for every org.")
    required_keys: Annotated[
        list[Annotated[str, Field(max_length=200)]],
        Field(max_length=100, description="Env vars / headers each org must set before servers run."),
    ] = []
    description: Annotated[str, Field(max_length=4000)] = ""
    tags: Tags = []
    icon: Annotated[str | None, Field(max_length=500)] = None
    visibility: Literal["public", "org", "private"] = "org"
    transport: Annotated[str | None, Field(max_length=20)] = None
    command: Annotated[list[Annotated[str, Field(max_length=4096)]] | None, Field(max_length=200)] = None
    url: Annotated[str | None, Field(max_length=2000)] = None
    env: Annotated[dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=100)] = {}
    headers: Annotated[dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=100)] = {}
    oauth: bool = Field(
        False, description="The upstream needs OAuth: each user connects their own account (also detected on a 401)."
    )
    oauth_client_id: Annotated[str | None, Field(max_length=2000, description="A pre-registered client.")] = None
    oauth_client_secret: Annotated[str | None, Field(max_length=4000, description="Its secret (stored encrypted).")] = (
        None
    )


def upstream_out(summary: UpstreamSummary) -> UpstreamOut:
    """A catalog entry; never env or header values, and URLs without credentials."""
    t = summary.template
    return UpstreamOut(
        id=t.id,
        slug=t.slug,
        name=t.name,
        scope="global" if t.org_id is None else "org",
        description=t.description,
        tags=list(t.tags or []),
        icon=t.icon,
        visibility=t.visibility,
        transport=t.transport,
        command=t.command,
        url=redact_url(t.url) if t.url else None,
        secret_keys=list(t.required_keys or []),
        auth_kind=t.auth_kind,
        protocol_version=t.protocol_version,
        server_info=t.server_info,
        active_tools=summary.active_tools,
        servers=summary.servers,
        created_at=t.created_at,
    )


async def _summary(session: Db, org_id: str, template_id: str) -> UpstreamSummary:
    return next(s for s in await list_upstreams(session, org_id=org_id) if s.template.id == template_id)


@router.get("", summary="Upstreams the organization sees (its own and the global catalog)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_READ)], session: Db, paging: Paging
) -> PageOut[UpstreamOut]:
    found = await list_upstreams(session, org_id=access.org_id, include_private=access.may(Action.TEMPLATES_MANAGE))
    return page_out(page_of(found, key=lambda s: s.template.id, request=paging), upstream_out)


@router.get("/{upstream}", summary="One upstream")
async def get(
    upstream: UpstreamRef, access: Annotated[OrgAccess, Requires(Action.TEMPLATES_READ)], session: Db
) -> UpstreamOut:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    return upstream_out(await _summary(session, access.org_id, template.id))


def _checker(session: Db, access: OrgAccess, owner: str | None) -> Check:
    async def check(entry: UpstreamInput) -> str:
        if entry.transport == "stdio":
            authorize_platform(platform_admin=access.platform_admin, what="add upstreams that run a local command")
        return await ensure_upstream_name_free(session, org_id=owner, name=entry.name)

    return check


def _storer(session: Db, gw: Gw, owner: str | None, required: list[str] | None = None) -> Store:
    async def store(entry: UpstreamInput, found: DiscoveredUpstream) -> ServerTemplate:
        async with session.begin_nested():  # in an import, one bad entry leaves the others stored
            return await store_entry(
                session, org_id=owner, entry=entry, found=found, secret=gw.secret, required=required or ()
            )

    return store


def _oauth_storer(session: Db, gw: Gw, owner: str | None, pre_registered: PreRegistered | None) -> StoreOAuth:
    async def store(entry: UpstreamInput) -> ServerTemplate:
        assert entry.url is not None  # add_entry checks it
        # Each user connects their own account; the tools are listed with the first connection.
        return await add_oauth_upstream(
            session,
            org_id=owner,
            name=entry.name,
            url=entry.url,
            transport=entry.transport,
            settings=gw.settings,
            secret=gw.secret,
            pre_registered=pre_registered,
        )

    return store


@router.post("", status_code=201, summary="Connect to an upstream, list its tools, store it (admins)")
async def add(
    body: UpstreamIn,
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_MANAGE)],
    session: Db,
    gw: Gw,
) -> UpstreamOut:
    transport = body.transport or ("stdio" if body.command is not None else "streamable_http")
    entry = check_upstream(
        name=body.name, transport=transport, command=body.command, url=body.url, env=body.env, headers=body.headers
    )
    if body.scope == "global":
        authorize_platform(platform_admin=access.platform_admin, what="add to the global catalog")
    owner = None if body.scope == "global" else access.org_id
    check, store = _checker(session, access, owner), _storer(session, gw, owner, body.required_keys)
    pre_registered = PreRegistered(body.oauth_client_id, body.oauth_client_secret) if body.oauth_client_id else None
    added = await add_entry(
        entry,
        check=check,
        store=store,
        seconds=DISCOVERY_TIMEOUT,
        store_oauth=_oauth_storer(session, gw, owner, pre_registered),
        oauth=body.oauth or body.oauth_client_id is not None,
    )
    template = added.template
    assert template is not None  # add_entry raises otherwise
    update_template(
        template, description=body.description, tags=body.tags, icon=body.icon or "", visibility=body.visibility
    )
    await session.flush()
    return upstream_out(await _summary(session, access.org_id, template.id))


class ImportOutcome(BaseModel):
    name: str
    ok: bool
    upstream: UpstreamOut | None = None
    error: str | None = None


@router.post("/import", summary="Add every server of an mcpServers document (Claude Desktop / .mcp.json)")
async def import_(
    document: dict[str, Any],
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_MANAGE)],
    session: Db,
    gw: Gw,
) -> list[ImportOutcome]:
    # No ${VAR} expansion: the gateway's own environment is not the caller's to read.
    entries = parse_mcp_servers_file(json.dumps(document), environ={})
    check, store = _checker(session, access, access.org_id), _storer(session, gw, access.org_id)
    outcomes = []
    for done in await import_entries(entries, check=check, store=store, seconds=DISCOVERY_TIMEOUT):
        if done.template is None or done.error is not None:
            outcomes.append(ImportOutcome(name=done.entry.name, ok=False, error=done.error))
            continue
        summary = await _summary(session, access.org_id, done.template.id)
        outcomes.append(ImportOutcome(name=done.entry.name, ok=True, upstream=upstream_out(summary)))
    return outcomes


@router.patch("/{upstream}", summary="Change catalog fields (admins; global entries: platform administrators)")
async def update(
    upstream: UpstreamRef,
    body: UpstreamPatch,
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_MANAGE)],
    session: Db,
) -> UpstreamOut:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    if template.org_id is None:
        authorize_platform(platform_admin=access.platform_admin, what="change the global catalog")
    update_template(template, description=body.description, tags=body.tags, icon=body.icon, visibility=body.visibility)
    await session.flush()
    return upstream_out(await _summary(session, access.org_id, template.id))


class SyncOut(BaseModel):
    upstream: str
    added: list[str]
    changed: list[str]
    removed: list[str]
    quarantined: list[str] = Field(description="Rewritten tools, held back until approved.")


@router.post("/{upstream}/sync", summary="Ask an upstream for its tools now (admins; global: platform admins)")
async def sync(
    upstream: UpstreamRef, access: Annotated[OrgAccess, Requires(Action.TEMPLATES_MANAGE)], session: Db, gw: Gw
) -> SyncOut:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    if template.org_id is None:
        authorize_platform(platform_admin=access.platform_admin, what="sync the global catalog")
    slug, template_id = template.slug, template.id
    await session.commit()  # discovery runs outside any transaction, as `patchbay upstream sync` does
    result = await sync_upstream(
        gw.sessionmaker,
        template_id=template_id,
        secret=gw.secret,
        timeout=DISCOVERY_TIMEOUT,
        pool=gw.pool,
        org_id=access.org_id,
        channel="api",
    )
    return SyncOut(
        upstream=slug,
        added=result.added,
        changed=result.changed,
        removed=result.removed,
        quarantined=result.quarantined,
    )


@router.delete("/{upstream}", status_code=204, summary="Remove one of the organization's upstreams (admins)")
async def remove(
    upstream: UpstreamRef,
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_MANAGE)],
    session: Db,
    force: Annotated[bool, Query(description="Remove even while servers use it.")] = False,
) -> None:
    await remove_upstream(session, slug=upstream, org_id=access.org_id, force=force)
