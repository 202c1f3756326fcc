"""``/api/v1/orgs/{org}/keys``: API keys to the org's servers. Members manage their own; admins all."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess, authorize, authorize_own, key_owner_scope
from patchbay.services.durations import parse_duration
from patchbay.services.keys import KeySummary, create_key, get_key, list_keys, revoke_key, set_key_credentials
from patchbay.services.members import get_member_by_email
from patchbay.services.paging import page_of
from patchbay.services.servers import get_server
from patchbay.store.models import User
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/keys", tags=["keys"], responses=ERROR_RESPONSES)

# Only the prefix: a whole key in a URL would end up in proxy and client logs.
Prefix = Annotated[str, Path(min_length=4, max_length=16, description="The key's prefix, as lists show it.")]


class Grant(BaseModel):
    tool: Annotated[str, Field(min_length=1, max_length=200, description="Exposed tool name.")]
    access: Literal["r", "rw"] = "rw"


CHOICES_HELP = 'Upstream → "own", "org" or "shared:NAME"; an upstream not named uses the default.'
Choices = Annotated[
    dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=80)]], Field(max_length=100)
]


class KeyIn(BaseModel):
    server: Annotated[str, Field(min_length=1, max_length=200, description="Server id, slug or name.")]
    name: Annotated[str, Field(max_length=200)] = ""
    allow: Annotated[list[Grant] | None, Field(max_length=1000, description="Default: every tool.")] = None
    expires_in: Annotated[str | None, Field(max_length=20, description="e.g. 30d; none: never")] = None
    user: Annotated[str | None, Field(max_length=320, description="Owner's email (admins); default: you.")] = None
    credentials: Choices = Field(default_factory=dict, description=CHOICES_HELP)
    shared: bool = Field(False, description="Not personal: calls with shared credentials only (admins).")


class CredentialsIn(BaseModel):
    credentials: Choices = Field(default_factory=dict, description=CHOICES_HELP + " Replaces every choice.")


class KeyOut(BaseModel):
    id: str
    prefix: str
    name: str
    server: str
    user: str
    state: str
    tools: dict[str, Literal["r", "rw"]] | None
    shared: bool
    credentials: dict[str, str] = Field(description='Upstream → "own", "org" or "shared:NAME" (explicit choices).')
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown this once, never again.")


def key_out(summary: KeySummary) -> KeyOut:
    """A key's metadata; never secret material."""
    key = summary.key
    return KeyOut(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        server=summary.server,
        user=summary.user,
        state=summary.state,
        tools=summary.tools,
        shared=key.shared,
        credentials=summary.credentials,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


@router.get("", summary="Keys of the organization (members see their own)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.KEYS_OWN)],
    session: Db,
    paging: Paging,
    server: Annotated[str | None, Query(max_length=200, description="Only this server's keys.")] = None,
) -> PageOut[KeyOut]:
    chosen = await get_server(session, org_id=access.org_id, name_or_slug=server) if server else None
    keys = await list_keys(session, org_id=access.org_id, server=chosen, user_id=key_owner_scope(access))
    return page_out(page_of(keys, key=lambda k: k.key.id, request=paging), key_out)


@router.post("", status_code=201, summary="Create a key to one server (its secret is shown once)")
async def create(
    body: KeyIn, access: Annotated[OrgAccess, Requires(Action.KEYS_OWN)], session: Db, gw: Gw
) -> KeyCreated:
    owner = await session.get(User, access.user_id)
    if body.user is not None:
        named = await get_member_by_email(session, org_id=access.org_id, email=body.user)
        if named.id != access.user_id:
            authorize(access, Action.KEYS_ANY)
        owner = named
    assert owner is not None  # the caller was loaded moments ago
    _authorize_choices(access, body.credentials, shared=body.shared)
    server = await get_server(session, org_id=access.org_id, name_or_slug=body.server)
    key, secret = await create_key(
        session,
        server=server,
        user=owner,
        name=body.name,
        allow=[(g.tool, g.access) for g in body.allow] if body.allow is not None else None,
        expires_in=parse_duration(body.expires_in) if body.expires_in else None,
        secret=gw.secret,
        channel="api",
        credentials=list(body.credentials.items()),
        shared=body.shared,
    )
    summary = next(k for k in await list_keys(session, org_id=access.org_id, server=server) if k.key.id == key.id)
    return KeyCreated(**key_out(summary).model_dump(), key=secret)


@router.delete("/{prefix}", status_code=204, summary="Revoke a key (yours, or any as an admin)")
async def revoke(prefix: Prefix, access: Annotated[OrgAccess, Requires(Action.KEYS_OWN)], session: Db) -> None:
    key = await get_key(session, org_id=access.org_id, prefix=prefix)
    authorize_own(access, owner_id=key.user_id, own=Action.KEYS_OWN, any_=Action.KEYS_ANY)
    await revoke_key(session, prefix=key.prefix, org_id=access.org_id)


def _authorize_choices(access: OrgAccess, choices: dict[str, str], *, shared: bool) -> None:
    """Shared credentials and shared keys are the org's: only those who manage credentials hand them out."""
    if shared or any(value.strip().startswith("shared") for value in choices.values()):
        authorize(access, Action.CREDENTIALS_MANAGE)


@router.put("/{prefix}/credentials", summary="Replace the credentials a key calls its upstreams with")
async def set_credentials(
    prefix: Prefix, body: CredentialsIn, access: Annotated[OrgAccess, Requires(Action.KEYS_OWN)], session: Db
) -> KeyOut:
    key = await get_key(session, org_id=access.org_id, prefix=prefix)
    authorize_own(access, owner_id=key.user_id, own=Action.KEYS_OWN, any_=Action.KEYS_ANY)
    _authorize_choices(access, body.credentials, shared=key.shared)
    await set_key_credentials(
        session, prefix=key.prefix, org_id=access.org_id, credentials=list(body.credentials.items()), channel="api"
    )
    return key_out(next(k for k in await list_keys(session, org_id=access.org_id) if k.key.id == key.id))
