"""Upstreams: catalog entries (ServerTemplate) for upstream MCP servers, their tools and secrets.

Env vars and headers never sit in the template: they go, encrypted, into a
TemplateConfig for the org, bound to (template, org, user) so a ciphertext moved to
another row does not open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.security import Channel
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.routing.credential_specs import Sealed, pool_key
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.security.crypto import decrypt_json, encrypt_json, fingerprint_key
from patchbay.services.mcp_servers_file import parse_mcp_servers_file
from patchbay.services.slugs import require_slug, slugify
from patchbay.services.tool_sync import (
    SyncResult,
    bump_servers_using,
    check_tools,
    sync_tools,
    tool_definition_hash,
)
from patchbay.services.upstream_input import UpstreamInput, check_upstream, parse_transport
from patchbay.store.models import (
    EncryptionKey,
    Server,
    ServerTemplate,
    ServerTemplateLink,
    TemplateConfig,
    Tool,
    new_id,
)

__all__ = [
    "DiscoveredUpstream",
    "SyncResult",
    "UpstreamInput",
    "UpstreamSummary",
    "add_upstream",
    "bump_servers_using",
    "config_context",
    "ensure_upstream_name_free",
    "get_upstream",
    "list_upstreams",
    "parse_mcp_servers_file",
    "refresh_upstream",
    "remove_upstream",
    "sealed_user_configs",
    "store_config",
    "sync_tools",
    "tool_definition_hash",
    "upstream_spec",
]


class DiscoveredUpstream(Protocol):
    """What connecting to an upstream taught us (``patchbay.routing.discovery.Discovery`` fits)."""

    @property
    def protocol_version(self) -> str | None: ...
    @property
    def server_info(self) -> Mapping[str, Any] | None: ...
    @property
    def capabilities(self) -> Mapping[str, Any] | None: ...
    @property
    def instructions(self) -> str | None: ...
    @property
    def tools(self) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True)
class UpstreamSummary:
    template: ServerTemplate
    active_tools: int
    servers: int


async def ensure_upstream_name_free(session: AsyncSession, *, org_id: str | None, name: str) -> str:
    """The slug ``name`` would get; Conflict when the org already has it."""
    slug = require_slug(name, what="upstream")
    taken = await session.scalar(select(ServerTemplate.id).where(_same_owner(org_id), ServerTemplate.slug == slug))
    if taken is not None:
        raise Conflict(f"upstream {slug!r} already exists")
    return slug


async def add_upstream(
    session: AsyncSession,
    *,
    org_id: str | None,
    name: str,
    transport: str,
    command: Sequence[str] | None,
    url: str | None,
    env: Mapping[str, str],
    headers: Mapping[str, str],
    discovery: DiscoveredUpstream,
    secret: bytes,
    required: Sequence[str] = (),
) -> ServerTemplate:
    """Store an upstream that discovery has just reached, with its secrets and tools.

    ``required`` names further env vars / headers each org must set before servers using it run.
    """
    checked = check_upstream(name=name, transport=transport, command=command, url=url, env=env, headers=headers)
    check_tools(discovery.tools)
    slug = await ensure_upstream_name_free(session, org_id=org_id, name=checked.name)
    template = ServerTemplate(
        id=new_id(),
        org_id=org_id,
        name=checked.name,
        slug=slug,
        transport=checked.transport,
        command=list(checked.command) if checked.command else None,
        url=checked.url,
        required_keys=sorted(checked.env)
        + sorted(checked.headers)
        + sorted(set(required) - set(checked.env) - set(checked.headers)),
        auth_kind="static" if checked.env or checked.headers else "none",
        protocol_version=discovery.protocol_version,
        server_info=dict(discovery.server_info or {}),
        capabilities=dict(discovery.capabilities or {}),
        instructions=discovery.instructions,
        tags=[],
    )
    session.add(template)
    await session.flush()
    if checked.env or checked.headers:
        await store_config(
            session, template=template, org_id=org_id, env=checked.env, headers=checked.headers, secret=secret
        )
    await sync_tools(session, template=template, tools=discovery.tools)
    return template


async def refresh_upstream(
    session: AsyncSession, *, template: ServerTemplate, discovery: DiscoveredUpstream, channel: Channel = "cli"
) -> SyncResult:
    """Store what a fresh discovery of ``template`` found: its description, capabilities and tools."""
    described = (
        discovery.protocol_version,
        dict(discovery.server_info or {}),
        dict(discovery.capabilities or {}),
        discovery.instructions,
    )
    before = (template.protocol_version, template.server_info, template.capabilities, template.instructions)
    if described != before:
        template.protocol_version, template.server_info, template.capabilities, template.instructions = described
        await session.flush()
        await bump_servers_using(session, template_id=template.id)
    return await sync_tools(session, template=template, tools=discovery.tools, channel=channel)


def shared_context(template_id: str, org_id: str, name: str) -> str:
    """What a shared credential's ciphertext is bound to."""
    return f"shared_credential:{template_id}:{org_id}:{name}"


def config_context(template_id: str, org_id: str | None, user_id: str | None) -> str:
    """What a config ciphertext is bound to: a copy moved onto another row does not open."""
    return f"template_config:{template_id}:{org_id or '-'}:{user_id or '-'}"


async def store_config(
    session: AsyncSession,
    *,
    template: ServerTemplate,
    org_id: str | None,
    env: Mapping[str, str],
    headers: Mapping[str, str],
    secret: bytes,
    user_id: str | None = None,
) -> TemplateConfig:
    """Create or replace the encrypted env/headers of a template for an org (or one user in it)."""
    generation = int(await session.scalar(select(func.max(EncryptionKey.generation))) or 0)
    token = encrypt_json(
        {"env": dict(env), "headers": dict(headers)},
        secret,
        context=config_context(template.id, org_id, user_id),
        generation=generation,
    )
    config = await session.scalar(
        select(TemplateConfig).where(
            TemplateConfig.template_id == template.id,
            _config_owner(org_id),
            TemplateConfig.user_id.is_(None) if user_id is None else TemplateConfig.user_id == user_id,
        )
    )
    if config is None:
        config = TemplateConfig(template_id=template.id, org_id=org_id, user_id=user_id, ciphertext=token)
        session.add(config)
    else:
        config.ciphertext = token
    await session.flush()
    await bump_servers_using(session, template_id=template.id)
    return config


def _same_owner(org_id: str | None) -> Any:
    return ServerTemplate.org_id.is_(None) if org_id is None else ServerTemplate.org_id == org_id


def _config_owner(org_id: str | None) -> Any:
    return TemplateConfig.org_id.is_(None) if org_id is None else TemplateConfig.org_id == org_id


def _visible_to(org_id: str | None) -> Any:
    if org_id is None:
        return ServerTemplate.org_id.is_(None)
    return (ServerTemplate.org_id == org_id) | ServerTemplate.org_id.is_(None)


async def get_upstream(session: AsyncSession, *, slug: str, org_id: str | None) -> ServerTemplate:
    """The upstream the org sees under ``slug`` (or a name slugifying to it); its own beats global."""
    wanted = slugify(slug)
    found = (
        await session.scalars(select(ServerTemplate).where(_visible_to(org_id), ServerTemplate.slug == wanted))
    ).all()
    if not found:
        raise NotFound(f"upstream {slug!r} does not exist")
    return sorted(found, key=lambda t: t.org_id is None)[0]


async def list_upstreams(
    session: AsyncSession, *, org_id: str | None, include_private: bool = True
) -> list[UpstreamSummary]:
    """Every upstream the org sees, by slug, with its active tool and server counts."""
    query = select(ServerTemplate).where(_visible_to(org_id)).order_by(ServerTemplate.slug)
    if not include_private:
        query = query.where(ServerTemplate.visibility != "private")
    templates = (await session.scalars(query)).all()
    ids = [t.id for t in templates]
    tool_counts = dict(
        (
            await session.execute(
                select(Tool.template_id, func.count())
                .where(Tool.template_id.in_(ids), Tool.status == "active")
                .group_by(Tool.template_id)
            )
        ).all()
    )
    server_counts = dict(
        (
            await session.execute(
                select(ServerTemplateLink.template_id, func.count())
                .where(ServerTemplateLink.template_id.in_(ids))
                .group_by(ServerTemplateLink.template_id)
            )
        ).all()
    )
    return [
        UpstreamSummary(template=t, active_tools=tool_counts.get(t.id, 0), servers=server_counts.get(t.id, 0))
        for t in templates
    ]


async def remove_upstream(session: AsyncSession, *, slug: str, org_id: str | None, force: bool = False) -> None:
    """Delete an org's own upstream; refused while servers use it unless ``force``."""
    template = await get_upstream(session, slug=slug, org_id=org_id)
    if template.org_id != org_id:
        raise InvalidInput(f"upstream {template.slug!r} belongs to the global catalog, not to this org")
    users = (
        await session.scalars(
            select(Server.name)
            .join(ServerTemplateLink, ServerTemplateLink.server_id == Server.id)
            .where(ServerTemplateLink.template_id == template.id)
            .order_by(Server.name)
        )
    ).all()
    if users and not force:
        raise Conflict(f"upstream {template.slug!r} is used by server(s) {', '.join(users)}")
    await bump_servers_using(session, template_id=template.id)
    # Core delete: the database cascades to tools, configs, links and server tools.
    await session.execute(delete(ServerTemplate).where(ServerTemplate.id == template.id))
    session.expunge(template)


async def upstream_spec(
    session: AsyncSession, *, template: ServerTemplate, org_id: str | None, secret: bytes
) -> UpstreamSpec:
    """How the gateway reaches ``template`` on behalf of ``org_id`` (global config < org config)."""
    configs = (
        await session.scalars(
            select(TemplateConfig).where(
                TemplateConfig.template_id == template.id,
                TemplateConfig.user_id.is_(None),
                TemplateConfig.org_id.is_(None)
                if org_id is None
                else (TemplateConfig.org_id == org_id) | TemplateConfig.org_id.is_(None),
            )
        )
    ).all()
    env: dict[str, str] = {}
    headers: dict[str, str] = {}
    for config in sorted(configs, key=lambda c: c.org_id is not None):
        value = decrypt_json(
            config.ciphertext, secret, context=config_context(template.id, config.org_id, config.user_id)
        )
        env.update(value.get("env") or {})
        headers.update(value.get("headers") or {})
    spec = UpstreamSpec(
        key="",
        name=template.slug,
        transport=parse_transport(template.transport),
        command=tuple(template.command or ()),
        env=env,
        url=template.url,
        headers=headers,
    )
    # Pooled connections are per org and credential set: the catalog's org connection is this one.
    key = pool_key(spec, template_id=template.id, org_id=org_id, fp_key=fingerprint_key(secret))
    return replace(spec, key=key)


async def sealed_user_configs(session: AsyncSession, *, template_id: str, org_id: str) -> dict[str, Sealed]:
    """Per user of the org who set their own values: the ciphertext, still sealed (opened on first use)."""
    rows = await session.execute(
        select(TemplateConfig.user_id, TemplateConfig.ciphertext).where(
            TemplateConfig.template_id == template_id,
            TemplateConfig.org_id == org_id,
            TemplateConfig.user_id.is_not(None),
        )
    )
    return {user_id: Sealed(token, config_context(template_id, org_id, user_id)) for user_id, token in rows if user_id}
