"""What one server exposes: its upstreams and the tools a client may see, by exposed name.

A catalog is built from the database once per server revision and shared by
every request of every key of that server; per-key filtering happens on top.
Any change that alters what a server exposes bumps ``Server.revision``, and the
revision arrives with each request's key lookup, so a stale catalog is never used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from patchbay.engine.runner import LocalTarget
from patchbay.errors import NotFound
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.param_headers import Annotation, header_marks
from patchbay.oauth.manager import TokenManager
from patchbay.policy.credentials import KeyCredentials
from patchbay.routing.credential_specs import CredentialSpecs, Resolved
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.security.crypto import Keyring, fingerprint_key
from patchbay.services.credentials import sealed_shared_credentials
from patchbay.services.naming import exposed_tool_names, prefixed_name
from patchbay.services.upstreams import sealed_user_configs, upstream_spec
from patchbay.store.models import Server, ServerTemplate, ServerTemplateLink, ServerTool, Tool

SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream of a server, as routing needs it."""

    template_id: str
    slug: str
    spec: UpstreamSpec  # the connection with the org's configuration
    capabilities: JSONObject
    protocol_version: str | None
    # Every other credential a key may choose (own values, shared credentials), opened on first use;
    # None (hand-built catalogs): the org's configuration is the only one.
    credentials: CredentialSpecs | None = None

    def resolve(self, key: KeyCredentials, user_id: str) -> Resolved:
        """The connection (and credential) a call by ``key`` on behalf of ``user_id`` uses."""
        if self.credentials is None:
            return Resolved(self.spec, "org")
        return self.credentials.resolve(key, user_id)

    def connections(self) -> list[Resolved]:
        """Every connection of this upstream resolved so far."""
        return self.credentials.known() if self.credentials is not None else [Resolved(self.spec, "org")]


@dataclass(frozen=True, slots=True)
class ToolRoute:
    """Where a call to one exposed tool goes: an upstream, or (``local``) the local engine."""

    exposed_name: str
    tool_id: str
    upstream: Upstream | None
    upstream_name: str
    definition: JSONObject  # as the client sees it (exposed name, overridden description)
    read_only: bool
    param_marks: tuple[Annotation, ...] = ()  # x-mcp-header properties of the input schema
    local: LocalTarget | None = None
    rate_limit: int | None = None  # the tool's calls per minute, across every key and channel


@dataclass
class Catalog:
    server_id: str
    org_id: str
    revision: int
    plain_names: bool
    upstreams: list[Upstream]
    tools: dict[str, ToolRoute]
    capabilities: JSONObject
    instructions: str | None
    # Request and response bodies of calls to this server go to the audit payload store.
    capture_payloads: bool = True
    # Filled lazily from list calls: exposed resource URI / prompt name -> (upstream, upstream's name).
    resource_owner: dict[str, Upstream] = field(default_factory=dict)
    # Enabled tools held back because their upstream changed them: exposed name -> (tool id, status),
    # status "quarantined" (awaiting review) or "rejected" (an admin refused the change).
    quarantined: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Compact mode: clients see a search tool and a call tool (``patchbay.mcp.compact``).
    compact: bool = False

    def upstream_by_slug(self, slug: str) -> Upstream | None:
        for up in self.upstreams:
            if up.slug == slug:
                return up
        return None

    def with_capability(self, name: str) -> list[Upstream]:
        return [u for u in self.upstreams if name in u.capabilities]

    def expose(self, upstream: Upstream, name: str) -> str:
        """The name a prompt (or other named item) of ``upstream`` gets downstream."""
        return name if self.plain_names else prefixed_name(upstream.slug, name)

    def unexpose(self, exposed: str) -> tuple[Upstream, str] | None:
        """Which upstream owns an exposed prompt name, and the upstream's own name for it."""
        if self.plain_names:
            owners = self.with_capability("prompts")
            return (owners[0], exposed) if len(owners) == 1 else None
        slug, sep, name = exposed.partition(SEPARATOR)
        up = self.upstream_by_slug(slug) if sep else None
        return (up, name) if up is not None else None


def aggregate_capabilities(upstreams: list[Upstream]) -> JSONObject:
    """Only what at least one upstream really has; list changes are announced by the gateway itself."""
    caps: JSONObject = {}
    if any("tools" in u.capabilities for u in upstreams) or not upstreams:
        caps["tools"] = {"listChanged": True}
    if any("resources" in u.capabilities for u in upstreams):
        subscribable = any((u.capabilities.get("resources") or {}).get("subscribe") for u in upstreams)
        caps["resources"] = {"subscribe": True, "listChanged": True} if subscribable else {"listChanged": True}
    if any("prompts" in u.capabilities for u in upstreams):
        caps["prompts"] = {"listChanged": True}
    if any("completions" in u.capabilities for u in upstreams):
        caps["completions"] = {}
    if any("logging" in u.capabilities for u in upstreams):
        caps["logging"] = {}
    return caps


class CatalogCache:
    """Per-process cache of catalogs keyed by (server id, revision)."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], secret: bytes, tokens: TokenManager | None = None
    ) -> None:
        self._sessionmaker = sessionmaker
        self._secret = secret
        self._keyring = Keyring(secret)
        self._fp_key = fingerprint_key(secret)
        self._tokens = tokens
        self._catalogs: dict[str, Catalog] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.hits = 0  # for /metrics
        self.misses = 0

    async def get(self, server_id: str, revision: int) -> Catalog:
        found = self._catalogs.get(server_id)
        if found is not None and found.revision == revision:
            self.hits += 1
            return found
        self.misses += 1
        lock = self._locks.setdefault(server_id, asyncio.Lock())
        async with lock:
            found = self._catalogs.get(server_id)
            if found is not None and found.revision >= revision:
                return found
            async with self._sessionmaker() as session:
                built = await build_catalog(
                    session,
                    server_id=server_id,
                    secret=self._secret,
                    keyring=self._keyring,
                    fp_key=self._fp_key,
                    tokens=self._tokens,
                )
            self._catalogs[server_id] = built
            return built

    async def upstream(self, session: AsyncSession, *, template: ServerTemplate, org_id: str) -> Upstream:
        """``template`` as ``org_id`` reaches it, outside any server (direct execution of its tools)."""
        return await load_upstream(
            session,
            template=template,
            org_id=org_id,
            secret=self._secret,
            keyring=self._keyring,
            fp_key=self._fp_key,
            tokens=self._tokens,
        )

    def servers_using(self, spec_key: str) -> list[str]:
        """Ids of cached servers that route to the upstream connection ``spec_key``."""
        return [
            c.server_id
            for c in self._catalogs.values()
            if any(r.spec.key == spec_key for u in c.upstreams for r in u.connections())
        ]

    def invalidate(self, server_id: str) -> None:
        self._catalogs.pop(server_id, None)


async def load_upstream(
    session: AsyncSession,
    *,
    template: ServerTemplate,
    org_id: str,
    secret: bytes,
    keyring: Keyring | None = None,
    fp_key: bytes | None = None,
    tokens: TokenManager | None = None,
) -> Upstream:
    """An upstream as the org's calls reach it: the org's connection and every credential a call may choose.

    Users' own values and shared credentials stay sealed here: a call opens the one it needs.
    """
    spec = await upstream_spec(session, template=template, org_id=org_id, secret=secret)
    credentials = CredentialSpecs(
        base=spec,
        template_id=template.id,
        org_id=org_id,
        users=await sealed_user_configs(session, template_id=template.id, org_id=org_id),
        shared=await sealed_shared_credentials(session, template_id=template.id, org_id=org_id),
        keyring=keyring or Keyring(secret),
        fp_key=fp_key or fingerprint_key(secret),
        # OAuth upstreams: every choice calls with a token of its owner (the user's, the org's, a shared one).
        tokens=tokens if template.auth_kind == "oauth" else None,
        required=tuple(template.required_keys or ()),
    )
    return Upstream(
        template_id=template.id,
        slug=template.slug,
        spec=credentials.org.spec,
        credentials=credentials,
        capabilities=dict(template.capabilities or {}),
        protocol_version=template.protocol_version,
    )


async def build_catalog(
    session: AsyncSession,
    *,
    server_id: str,
    secret: bytes,
    keyring: Keyring | None = None,
    fp_key: bytes | None = None,
    tokens: TokenManager | None = None,
) -> Catalog:
    """Load a server with its upstreams and enabled tools and name everything."""
    server = (
        await session.execute(
            select(Server)
            .where(Server.id == server_id)
            .options(
                selectinload(Server.templates).selectinload(ServerTemplateLink.template),
                selectinload(Server.tools).selectinload(ServerTool.tool).selectinload(Tool.local),
            )
        )
    ).scalar_one_or_none()
    if server is None:
        raise NotFound(f"server {server_id} does not exist")
    upstreams: dict[str, Upstream] = {}
    instructions: list[str] = []
    # A pending server (credentials missing) or a stopped one exposes nothing until it runs.
    for link in server.templates if server.status == "running" else []:
        tpl = link.template
        upstreams[tpl.id] = await load_upstream(
            session,
            template=tpl,
            org_id=server.org_id,
            secret=secret,
            keyring=keyring,
            fp_key=fp_key,
            tokens=tokens,
        )
        if tpl.instructions:
            instructions.append(f"{tpl.slug}: {tpl.instructions}")
    names = exposed_tool_names(server, server.tools)
    tools: dict[str, ToolRoute] = {}
    quarantined: dict[str, tuple[str, str]] = {}
    for st in server.tools:
        tool = st.tool
        up = upstreams.get(tool.template_id or "")
        local = _local_target(tool)
        if st.enabled and tool.status in ("quarantined", "rejected") and up is not None:
            quarantined[names[st.id]] = (tool.id, tool.status)
        if not st.enabled or tool.status != "active" or (up is None and local is None):
            continue
        exposed = names[st.id]
        tools[exposed] = ToolRoute(
            exposed_name=exposed,
            tool_id=tool.id,
            upstream=up if local is None else None,
            upstream_name=tool.name,
            definition=_exposed_definition(tool.definition, exposed, st.override_description),
            read_only=tool.read_only,
            param_marks=header_marks(tool.input_schema) if local is None else (),
            local=local,
            rate_limit=tool.rate_limit,
        )
    ordered = list(upstreams.values())
    capabilities = aggregate_capabilities(ordered)
    if any(route.local is not None for route in tools.values()):
        capabilities.setdefault("tools", {})
    return Catalog(
        server_id=server.id,
        org_id=server.org_id,
        revision=server.revision,
        plain_names=server.plain_names,
        upstreams=ordered,
        tools=dict(sorted(tools.items())),
        capabilities=capabilities,
        instructions="\n".join(instructions) or None,
        quarantined=quarantined,
        compact=server.compact,
        capture_payloads=server.capture_payloads,
    )


def _local_target(tool: Tool) -> LocalTarget | None:
    local = tool.local
    if local is None:
        return None
    return LocalTarget(tool_id=tool.id, document_id=local.document_id, path=local.path, kind=local.kind)


def _exposed_definition(definition: Mapping[str, Any], name: str, description: str | None) -> JSONObject:
    out = dict(definition)
    out["name"] = name
    if description is not None:
        out["description"] = description
    return out
