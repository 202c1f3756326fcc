"""``/api/v1/orgs/{org}/credentials``: named shared credentials of the org, per upstream.

Values go in and never come out: lists answer names and which values are set. Members see
the names (to know what exists); admins set and remove them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.credentials import (
    CredentialSummary,
    list_shared_credentials,
    remove_shared_credential,
    save_shared_credential,
)
from patchbay.services.upstreams import get_upstream
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/credentials", tags=["credentials"], responses=ERROR_RESPONSES)

UpstreamRef = Annotated[str, Path(min_length=1, max_length=200, description="Upstream slug or name.")]
NameRef = Annotated[str, Path(min_length=1, max_length=64, description="The credential's name.")]
Values = Annotated[
    dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(min_length=1, max_length=8192)]],
    Field(max_length=100),
]


class CredentialIn(BaseModel):
    bearer: Annotated[str | None, Field(max_length=8192, description="Sent as Authorization: Bearer …")] = None
    headers: Values = Field(default_factory=dict, description="HTTP upstreams: header name → value.")
    env: Values = Field(default_factory=dict, description="stdio upstreams: variable name → value.")


class CredentialOut(BaseModel):
    """Which names a credential sets; never the values."""

    upstream: str
    name: str
    env: dict[str, str] = Field(description='Variable name → "set".')
    headers: dict[str, str] = Field(description='Header name → "set".')
    keys: int = Field(description="Active keys bound to it.")
    created_at: Timestamp
    updated_at: Timestamp


class CredentialList(BaseModel):
    items: list[CredentialOut]


def credential_out(summary: CredentialSummary) -> CredentialOut:
    return CredentialOut(
        upstream=summary.upstream,
        name=summary.name,
        env={name: "set" for name in summary.env},
        headers={name: "set" for name in summary.headers},
        keys=summary.keys,
        created_at=summary.created_at,
        updated_at=summary.updated_at,
    )


@router.get("", summary="The org's shared credentials (names only)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.CREDENTIALS_READ)],
    session: Db,
    gw: Gw,
    upstream: Annotated[str | None, Query(max_length=200, description="Only this upstream's.")] = None,
) -> CredentialList:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id) if upstream else None
    found = await list_shared_credentials(session, org_id=access.org_id, secret=gw.secret, template=template)
    return CredentialList(items=[credential_out(s) for s in found])


@router.put("/{upstream}/{name}", summary="Create a shared credential or replace its values")
async def put(
    upstream: UpstreamRef,
    name: NameRef,
    body: CredentialIn,
    access: Annotated[OrgAccess, Requires(Action.CREDENTIALS_MANAGE)],
    session: Db,
    gw: Gw,
) -> CredentialOut:
    saved = await save_shared_credential(
        session,
        org_id=access.org_id,
        upstream=upstream,
        name=name,
        bearer=body.bearer,
        env=body.env,
        headers=body.headers,
        secret=gw.secret,
        channel="api",
    )
    return credential_out(saved)


@router.delete("/{upstream}/{name}", status_code=204, summary="Remove a shared credential no active key uses")
async def delete(
    upstream: UpstreamRef,
    name: NameRef,
    access: Annotated[OrgAccess, Requires(Action.CREDENTIALS_MANAGE)],
    session: Db,
    gw: Gw,
) -> None:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    await remove_shared_credential(
        session, org_id=access.org_id, template=template, name=name, secret=gw.secret, channel="api"
    )
