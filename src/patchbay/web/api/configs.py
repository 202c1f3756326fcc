"""``/api/v1/orgs/{org}/upstreams/{upstream}/config``: write-only env vars / headers of a template.

Values go in and never come out: reading answers which names are set, per level.
``level=org`` (admins) sets the org's values; ``level=mine`` (any member) sets the
caller's own, which override the org's for them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess, authorize
from patchbay.services.configs import clear_config, config_status, set_config
from patchbay.services.upstreams import get_upstream
from patchbay.store.models import ServerTemplate
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/orgs/{org}/upstreams/{upstream}/config", tags=["config"], responses=ERROR_RESPONSES)

UpstreamRef = Annotated[str, Path(min_length=1, max_length=200, description="Upstream slug or name.")]
Level = Annotated[Literal["org", "mine"], Query(description="The org's values (admins) or your own.")]
Values = Annotated[
    dict[Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=8192)]], Field(max_length=100)
]


class ConfigIn(BaseModel):
    env: Values = Field(default_factory=dict, description="Name → value; an empty value removes the name.")
    headers: Values = Field(default_factory=dict, description="Name → value; an empty value removes the name.")


class ConfigOut(BaseModel):
    """Which names have a value; never the values."""

    required: list[str]
    org: list[str] = Field(description="Names set for the whole org (the global catalog's included).")
    mine: list[str] = Field(description="Names you set for yourself (they override the org's for you).")
    missing: list[str] = Field(description="Required names with no org value: servers using it stay pending.")


async def _target(session: Db, access: OrgAccess, upstream: str, level: str) -> tuple[ServerTemplate, str | None]:
    """The template whose values change, and whose they are (None: the org's), once the level is allowed."""
    authorize(access, Action.CONFIG_SET_ORG if level == "org" else Action.CONFIG_SET_OWN)
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    return template, access.user_id if level == "mine" else None


async def _status(session: Db, gw: Gw, access: OrgAccess, upstream: str) -> ConfigOut:
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    status = await config_status(
        session, template=template, org_id=access.org_id, user_id=access.user_id, secret=gw.secret
    )
    return ConfigOut(required=status.required, org=status.org, mine=status.user, missing=status.missing)


@router.get("", summary="Which values are set (never the values)")
async def get(
    upstream: UpstreamRef, access: Annotated[OrgAccess, Requires(Action.TEMPLATES_READ)], session: Db, gw: Gw
) -> ConfigOut:
    return await _status(session, gw, access, upstream)


@router.put("", summary="Set values (merged into what is set; empty value removes a name)")
async def put(
    upstream: UpstreamRef,
    body: ConfigIn,
    level: Level,
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_READ)],
    session: Db,
    gw: Gw,
) -> ConfigOut:
    template, user_id = await _target(session, access, upstream, level)
    await set_config(
        session,
        template=template,
        org_id=access.org_id,
        user_id=user_id,
        env=body.env,
        headers=body.headers,
        secret=gw.secret,
    )
    return await _status(session, gw, access, upstream)


@router.delete("", status_code=204, summary="Remove every value at one level")
async def delete(
    upstream: UpstreamRef,
    level: Level,
    access: Annotated[OrgAccess, Requires(Action.TEMPLATES_READ)],
    session: Db,
    gw: Gw,
) -> None:
    template, user_id = await _target(session, access, upstream, level)
    await clear_config(session, template=template, org_id=access.org_id, user_id=user_id, secret=gw.secret)
