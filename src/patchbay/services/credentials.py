"""Named shared credentials of an org, and the credential each API key calls an upstream with.

A shared credential is a set of env vars / headers for one template, encrypted like a
TemplateConfig and bound to (template, org, name): a ciphertext moved to another row does not
open. Values go in and never come out; lists show names only. A key binds, per upstream of
its server, ``own``, ``org`` or ``shared:NAME`` (``patchbay.policy.credentials``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.policy.credentials import SHARED_NAME, CredentialChoice, choice_of
from patchbay.routing.credential_specs import Sealed
from patchbay.security.crypto import decrypt_json, encrypt_json
from patchbay.services.configs import refresh_servers
from patchbay.services.tool_sync import bump_servers_using
from patchbay.services.upstream_input import check_env, check_headers
from patchbay.services.upstreams import get_upstream, shared_context
from patchbay.store.models import (
    ApiKey,
    ApiKeyCredential,
    EncryptionKey,
    Server,
    ServerTemplate,
    ServerTemplateLink,
    SharedCredential,
)

MAX_VALUES = 100


@dataclass(frozen=True, slots=True)
class CredentialSummary:
    """A shared credential as lists show it: which names it sets, never the values."""

    name: str
    upstream: str
    env: list[str]
    headers: list[str]
    keys: int  # active keys bound to it
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Binding:
    """One key × template choice, checked against the key's server and org."""

    template_id: str
    upstream: str
    choice: CredentialChoice
    shared_credential_id: str | None


def credential_values(
    *, bearer: str | None, env: Mapping[str, str], headers: Mapping[str, str], template: ServerTemplate
) -> tuple[dict[str, str], dict[str, str]]:
    """Checked env vars and headers; a bearer token becomes ``Authorization: Bearer …``."""
    all_headers = dict(headers)
    if bearer is not None:
        token = bearer.strip()
        if not token or any(ch in token for ch in " \r\n\x00"):
            raise InvalidInput("a bearer token is one non-empty word")
        if any(name.lower() == "authorization" for name in all_headers):
            raise InvalidInput("give either a bearer token or an Authorization header, not both")
        all_headers["Authorization"] = f"Bearer {token}"
    if not env and not all_headers:
        raise InvalidInput("a credential needs a bearer token, a header or an env var")
    if len(env) + len(all_headers) > MAX_VALUES:
        raise InvalidInput(f"at most {MAX_VALUES} values in one credential")
    if template.transport == "stdio" and all_headers:
        raise InvalidInput(f"upstream {template.slug!r} runs as a local process: give env vars, not headers")
    if template.transport != "stdio" and env:
        raise InvalidInput(f"upstream {template.slug!r} is reached over HTTP: give headers or a bearer token")
    return check_env(env, where=template.slug), check_headers(all_headers, where=template.slug)


def _require_name(name: str) -> str:
    clean = name.strip()
    if not SHARED_NAME.match(clean):
        raise InvalidInput(f"credential name {name!r}: lowercase letters, digits, - and _, at most 64")
    return clean


async def set_shared_credential(
    session: AsyncSession,
    *,
    org_id: str,
    template: ServerTemplate,
    name: str,
    env: Mapping[str, str],
    headers: Mapping[str, str],
    secret: bytes,
    channel: security.Channel = "cli",
) -> SharedCredential:
    """Create a named credential of the org for ``template``, or replace its values."""
    clean = _require_name(name)
    generation = int(await session.scalar(select(func.max(EncryptionKey.generation))) or 0)
    token = encrypt_json(
        {"env": dict(env), "headers": dict(headers)},
        secret,
        context=shared_context(template.id, org_id, clean),
        generation=generation,
    )
    found = await _find(session, org_id=org_id, template=template, name=clean, missing_ok=True)
    if found is None:
        found = SharedCredential(org_id=org_id, template_id=template.id, name=clean, ciphertext=token)
        session.add(found)
    else:
        found.ciphertext = token
    await session.flush()
    await bump_servers_using(session, template_id=template.id)
    await refresh_servers(session, org_id=org_id, secret=secret)
    security.record(session, _event(org_id, channel, f"shared credential {template.slug}/{clean} set"))
    return found


async def ensure_shared_credential(
    session: AsyncSession, *, org_id: str, template: ServerTemplate, name: str, secret: bytes
) -> None:
    """Name a shared credential whose secret lives elsewhere (an OAuth upstream's shared token), so keys can bind it."""
    if await _find(session, org_id=org_id, template=template, name=_require_name(name), missing_ok=True) is None:
        await set_shared_credential(
            session, org_id=org_id, template=template, name=name, env={}, headers={}, secret=secret, channel="api"
        )


async def save_shared_credential(
    session: AsyncSession,
    *,
    org_id: str,
    upstream: str,
    name: str,
    bearer: str | None,
    env: Mapping[str, str],
    headers: Mapping[str, str],
    secret: bytes,
    channel: security.Channel = "cli",
) -> CredentialSummary:
    """What ``credential add`` and ``PUT …/credentials/{upstream}/{name}`` do: check, seal, summarise."""
    template = await get_upstream(session, slug=upstream, org_id=org_id)
    checked_env, checked_headers = credential_values(bearer=bearer, env=env, headers=headers, template=template)
    cred = await set_shared_credential(
        session,
        org_id=org_id,
        template=template,
        name=name,
        env=checked_env,
        headers=checked_headers,
        secret=secret,
        channel=channel,
    )
    found = await list_shared_credentials(session, org_id=org_id, secret=secret, template=template)
    return next(s for s in found if s.name == cred.name)


async def _find(
    session: AsyncSession, *, org_id: str, template: ServerTemplate, name: str, missing_ok: bool = False
) -> SharedCredential | None:
    found = await session.scalar(
        select(SharedCredential).where(
            SharedCredential.org_id == org_id,
            SharedCredential.template_id == template.id,
            SharedCredential.name == name,
        )
    )
    if found is None and not missing_ok:
        raise NotFound(f"upstream {template.slug!r} has no shared credential {name!r} in this organization")
    return found


async def list_shared_credentials(
    session: AsyncSession, *, org_id: str, secret: bytes, template: ServerTemplate | None = None
) -> list[CredentialSummary]:
    """The org's shared credentials (of one upstream, if given), by upstream and name."""
    query = (
        select(SharedCredential, ServerTemplate.slug)
        .join(ServerTemplate, ServerTemplate.id == SharedCredential.template_id)
        .where(SharedCredential.org_id == org_id)
        .order_by(ServerTemplate.slug, SharedCredential.name)
    )
    if template is not None:
        query = query.where(SharedCredential.template_id == template.id)
    rows = (await session.execute(query)).all()
    counts = dict(
        (
            await session.execute(
                select(ApiKeyCredential.shared_credential_id, func.count())
                .join(ApiKey, ApiKey.id == ApiKeyCredential.api_key_id)
                .where(ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None))
                .group_by(ApiKeyCredential.shared_credential_id)
            )
        ).all()
    )
    out: list[CredentialSummary] = []
    for cred, slug in rows:
        value = decrypt_json(cred.ciphertext, secret, context=shared_context(cred.template_id, org_id, cred.name))
        out.append(
            CredentialSummary(
                name=cred.name,
                upstream=slug,
                env=sorted(value.get("env") or {}),
                headers=sorted(value.get("headers") or {}),
                keys=int(counts.get(cred.id, 0)),
                created_at=cred.created_at,
                updated_at=cred.updated_at,
            )
        )
    return out


async def remove_shared_credential(
    session: AsyncSession,
    *,
    org_id: str,
    template: ServerTemplate,
    name: str,
    secret: bytes,
    channel: security.Channel = "cli",
) -> None:
    """Delete a shared credential; refused while an active key calls with it."""
    found = await _find(session, org_id=org_id, template=template, name=name.strip())
    assert found is not None  # _find raised otherwise
    bound = (
        await session.scalars(
            select(ApiKey.prefix)
            .join(ApiKeyCredential, ApiKeyCredential.api_key_id == ApiKey.id)
            .where(ApiKeyCredential.shared_credential_id == found.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.prefix)
        )
    ).all()
    if bound:
        raise Conflict(f"shared credential {found.name!r} is used by key(s) {', '.join(bound)}: rebind or revoke them")
    # Core delete: the database cascades to the bindings of revoked keys.
    await session.execute(delete(SharedCredential).where(SharedCredential.id == found.id))
    session.expunge(found)
    await bump_servers_using(session, template_id=template.id)
    await refresh_servers(session, org_id=org_id, secret=secret)
    security.record(session, _event(org_id, channel, f"shared credential {template.slug}/{found.name} removed"))


async def sealed_shared_credentials(session: AsyncSession, *, template_id: str, org_id: str) -> dict[str, Sealed]:
    """The org's shared credentials of one template, still sealed (a catalog opens them on first use)."""
    rows = await session.execute(
        select(SharedCredential.name, SharedCredential.ciphertext).where(
            SharedCredential.template_id == template_id, SharedCredential.org_id == org_id
        )
    )
    return {name: Sealed(token, shared_context(template_id, org_id, name)) for name, token in rows}


# --- key bindings ---------------------------------------------------------------------------


def parse_binding(text: str) -> tuple[str, str]:
    """``UPSTREAM=own|org|shared:NAME`` as (upstream, choice)."""
    upstream, sep, choice = text.partition("=")
    if not sep or not upstream.strip() or not choice.strip():
        raise InvalidInput(f"--credential {text!r}: write UPSTREAM=own, UPSTREAM=org or UPSTREAM=shared:NAME")
    return upstream.strip(), choice.strip()


async def check_bindings(
    session: AsyncSession, *, server: Server, entries: Sequence[tuple[str, str]], shared_key: bool
) -> list[Binding]:
    """``(upstream, choice)`` pairs checked against the server's upstreams and the org's credentials.

    A shared key takes only ``shared:NAME`` choices: whoever holds it must never call with
    its creator's own values.
    """
    links = (
        await session.execute(
            select(ServerTemplate)
            .join(ServerTemplateLink, ServerTemplateLink.template_id == ServerTemplate.id)
            .where(ServerTemplateLink.server_id == server.id)
        )
    ).scalars()
    templates = {t.slug: t for t in links}
    out: dict[str, Binding] = {}
    for upstream, text in entries:
        template = templates.get(upstream) or next((t for t in templates.values() if t.name == upstream), None)
        if template is None:
            raise InvalidInput(f"server {server.slug!r} has no upstream {upstream!r}")
        if template.id in out:
            raise InvalidInput(f"upstream {template.slug!r} is given two credentials")
        choice = CredentialChoice.parse(text)
        cred_id: str | None = None
        if choice.source == "shared":
            assert choice.shared_name is not None  # parse guarantees it
            found = await _find(session, org_id=server.org_id, template=template, name=choice.shared_name)
            assert found is not None
            cred_id = found.id
        elif shared_key:
            raise InvalidInput(f"a shared key calls with shared credentials only: give {template.slug}=shared:NAME")
        out[template.id] = Binding(template.id, template.slug, choice, cred_id)
    if shared_key and not out:
        raise InvalidInput("a shared key needs a shared credential: --credential UPSTREAM=shared:NAME")
    return list(out.values())


async def bind_credentials(session: AsyncSession, *, key: ApiKey, bindings: Sequence[Binding]) -> None:
    """Replace every credential binding of ``key`` (callers bump its revision)."""
    await session.execute(delete(ApiKeyCredential).where(ApiKeyCredential.api_key_id == key.id))
    for binding in bindings:
        session.add(
            ApiKeyCredential(
                api_key_id=key.id,
                template_id=binding.template_id,
                source=binding.choice.source,
                shared_credential_id=binding.shared_credential_id,
            )
        )
    await session.flush()


async def key_credentials(session: AsyncSession, *, key_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per key id: upstream slug → chosen credential label (only explicit choices)."""
    if not key_ids:
        return {}
    rows = await session.execute(
        select(ApiKeyCredential.api_key_id, ServerTemplate.slug, ApiKeyCredential.source, SharedCredential.name)
        .join(ServerTemplate, ServerTemplate.id == ApiKeyCredential.template_id)
        .outerjoin(SharedCredential, SharedCredential.id == ApiKeyCredential.shared_credential_id)
        .where(ApiKeyCredential.api_key_id.in_(list(key_ids)))
    )
    out: dict[str, dict[str, str]] = {}
    for key_id, slug, source, name in rows:
        out.setdefault(key_id, {})[slug] = choice_of(source, name).label
    return out


def _event(org_id: str, channel: security.Channel, detail: str) -> security.AuditEvent:
    return security.security_event(event="credential.changed", channel=channel, org_id=org_id, detail=detail[:200])
