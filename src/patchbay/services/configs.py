"""Template configuration (env vars / headers): write-only values, readable only as "set / not set".

A value lives encrypted in a TemplateConfig for a whole org, or for one user in it
(the user's value overrides the org's). A server is PENDING while neither the org's values
(global < org) nor one of the org's shared credentials over them has every required value of
one of its templates, and RUNNING once one has. A call whose chosen credential still lacks a
value is refused with the names it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import InvalidInput, NotFound
from patchbay.security.crypto import decrypt_json
from patchbay.services.revisions import bump_server
from patchbay.services.upstream_input import check_env, check_headers
from patchbay.services.upstreams import config_context, shared_context, store_config
from patchbay.store.models import Server, ServerTemplate, ServerTemplateLink, SharedCredential, TemplateConfig

MAX_VALUES = 100


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    """Which names have a value, per level; never the values."""

    required: list[str]
    org: list[str]
    user: list[str]

    @property
    def missing(self) -> list[str]:
        """Required names with no value at org level (a user's own value covers only that user)."""
        return [name for name in self.required if name not in self.org]


async def _values(
    session: AsyncSession, *, template: ServerTemplate, org_id: str | None, user_id: str | None, secret: bytes
) -> dict[str, str] | None:
    found = await session.scalar(
        select(TemplateConfig).where(
            TemplateConfig.template_id == template.id,
            TemplateConfig.org_id.is_(None) if org_id is None else TemplateConfig.org_id == org_id,
            TemplateConfig.user_id.is_(None) if user_id is None else TemplateConfig.user_id == user_id,
        )
    )
    if found is None:
        return None
    opened = decrypt_json(found.ciphertext, secret, context=config_context(template.id, org_id, user_id))
    return {**(opened.get("env") or {}), **(opened.get("headers") or {})}


def _names(values: Mapping[str, str] | None) -> set[str]:
    return {name for name, value in (values or {}).items() if value != ""}


async def config_status(
    session: AsyncSession, *, template: ServerTemplate, org_id: str, user_id: str | None, secret: bytes
) -> ConfigStatus:
    """Set / not set for every name, at org level (global included) and for this user (if any)."""
    org_names = _names(await _values(session, template=template, org_id=None, user_id=None, secret=secret))
    org_names |= _names(await _values(session, template=template, org_id=org_id, user_id=None, secret=secret))
    mine = (
        _names(await _values(session, template=template, org_id=org_id, user_id=user_id, secret=secret))
        if user_id is not None
        else set()
    )
    return ConfigStatus(required=list(template.required_keys or []), org=sorted(org_names), user=sorted(mine))


async def set_config(
    session: AsyncSession,
    *,
    template: ServerTemplate,
    org_id: str,
    user_id: str | None,
    env: Mapping[str, str],
    headers: Mapping[str, str],
    secret: bytes,
) -> None:
    """Merge new values into the org's (or the user's) config; an empty string removes a name."""
    if len(env) + len(headers) > MAX_VALUES:
        raise InvalidInput(f"at most {MAX_VALUES} values at once")
    # Same name and value rules as when an upstream is added.
    check_env({k: v for k, v in env.items() if v}, where=template.slug)
    check_headers({k: v for k, v in headers.items() if v}, where=template.slug)
    current = await _split(session, template=template, org_id=org_id, user_id=user_id, secret=secret)
    merged_env = {k: v for k, v in {**current[0], **env}.items() if v != ""}
    merged_headers = {k: v for k, v in {**current[1], **headers}.items() if v != ""}
    await store_config(
        session,
        template=template,
        org_id=org_id,
        env=merged_env,
        headers=merged_headers,
        secret=secret,
        user_id=user_id,
    )
    await refresh_servers(session, org_id=org_id, secret=secret)


async def _split(
    session: AsyncSession, *, template: ServerTemplate, org_id: str, user_id: str | None, secret: bytes
) -> tuple[dict[str, str], dict[str, str]]:
    found = await session.scalar(
        select(TemplateConfig).where(
            TemplateConfig.template_id == template.id,
            TemplateConfig.org_id == org_id,
            TemplateConfig.user_id.is_(None) if user_id is None else TemplateConfig.user_id == user_id,
        )
    )
    if found is None:
        return {}, {}
    opened = decrypt_json(found.ciphertext, secret, context=config_context(template.id, org_id, user_id))
    return dict(opened.get("env") or {}), dict(opened.get("headers") or {})


async def clear_config(
    session: AsyncSession, *, template: ServerTemplate, org_id: str, user_id: str | None, secret: bytes
) -> None:
    """Delete the org's (or the user's) values for a template."""
    found = await session.scalar(
        select(TemplateConfig).where(
            TemplateConfig.template_id == template.id,
            TemplateConfig.org_id == org_id,
            TemplateConfig.user_id.is_(None) if user_id is None else TemplateConfig.user_id == user_id,
        )
    )
    if found is None:
        raise NotFound("nothing is set at that level")
    await session.delete(found)
    await session.flush()
    await refresh_servers(session, org_id=org_id, secret=secret)


async def refresh_servers(session: AsyncSession, *, org_id: str, secret: bytes) -> None:
    """Move the org's servers between PENDING and RUNNING as their required values come and go."""
    servers = (await session.scalars(select(Server).where(Server.org_id == org_id, Server.status != "stopped"))).all()
    for server in servers:
        templates = (
            await session.scalars(
                select(ServerTemplate)
                .join(ServerTemplateLink, ServerTemplateLink.template_id == ServerTemplate.id)
                .where(ServerTemplateLink.server_id == server.id)
            )
        ).all()
        missing = False
        for template in templates:
            if template.required_keys and not await template_ready(
                session, template=template, org_id=org_id, secret=secret
            ):
                missing = True
        wanted = "pending" if missing else "running"
        if server.status != wanted:
            server.status = wanted
            await bump_server(session, server)


async def template_ready(session: AsyncSession, *, template: ServerTemplate, org_id: str, secret: bytes) -> bool:
    """Whether the org's values, or one of its shared credentials over them, has every required value.

    A member's own values do not count: they cover that member only, not the server.
    """
    status = await config_status(session, template=template, org_id=org_id, user_id=None, secret=secret)
    if not status.missing:
        return True
    org, required = set(status.org), set(status.required)
    shared = await session.scalars(
        select(SharedCredential).where(SharedCredential.template_id == template.id, SharedCredential.org_id == org_id)
    )
    for cred in shared:
        opened = decrypt_json(cred.ciphertext, secret, context=shared_context(template.id, org_id, cred.name))
        if required <= org | _names({**(opened.get("env") or {}), **(opened.get("headers") or {})}):
            return True
    return False
