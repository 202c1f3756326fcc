"""``/api/v1/orgs``: the organizations you belong to. Everything of an org lives under ``/orgs/{org}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.services.orgs import OrgMembership, create_org, list_my_orgs, membership_of
from patchbay.web.api.deps import CurrentCaller, Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs", tags=["orgs"], responses=ERROR_RESPONSES)


class OrgOut(BaseModel):
    id: str
    name: str
    slug: str
    personal: bool
    role: str = Field(description="Your role here: owner, admin or member.")
    created_at: Timestamp


class OrgIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]


def org_out(found: OrgMembership) -> OrgOut:
    """An org with the caller's role in it."""
    org = found.org
    return OrgOut(
        id=org.id, name=org.name, slug=org.slug, personal=org.is_personal, role=found.role, created_at=org.created_at
    )


@router.get("", summary="The organizations you belong to")
async def list_orgs(caller: CurrentCaller, session: Db, paging: Paging) -> PageOut[OrgOut]:
    return page_out(await list_my_orgs(session, user_id=caller.user.id, page=paging), org_out)


@router.post("", status_code=201, summary="Create an organization (you become its owner)")
async def create(body: OrgIn, caller: CurrentCaller, session: Db) -> OrgOut:
    org = await create_org(session, name=body.name, owner_id=caller.user.id)
    return org_out(OrgMembership(org=org, role="owner"))


@router.get("/{org}", summary="One of your organizations (by id or slug)")
async def get(access: Annotated[OrgAccess, Requires(Action.ORG_READ)], session: Db) -> OrgOut:
    return org_out(await membership_of(session, user_id=access.user_id, org_ref=access.org_id))
