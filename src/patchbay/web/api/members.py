"""``/api/v1/orgs/{org}/members``: who belongs to an org; owners add, remove and re-role members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from patchbay.errors import NotFound
from patchbay.policy.access import Action, OrgAccess, Role
from patchbay.services import members
from patchbay.services.paging import ID_PATTERN
from patchbay.store.models import Organization
from patchbay.web.api.deps import Db, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/members", tags=["members"], responses=ERROR_RESPONSES)

UserId = Annotated[str, Path(pattern=ID_PATTERN)]


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str
    joined_at: Timestamp


class MemberIn(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    role: Role = "member"


class RoleIn(BaseModel):
    role: Role


def member_out(member: members.Member) -> MemberOut:
    """A member: their account's public part and their role."""
    return MemberOut(
        user_id=member.user.id,
        email=member.user.email,
        name=member.user.name,
        role=member.membership.role,
        joined_at=member.membership.created_at,
    )


@router.get("", summary="The members of the organization")
async def list_members(
    access: Annotated[OrgAccess, Requires(Action.MEMBERS_READ)], session: Db, paging: Paging
) -> PageOut[MemberOut]:
    return page_out(await members.list_members(session, org_id=access.org_id, page=paging), member_out)


@router.post("", status_code=201, summary="Add an existing account as a member (owners)")
async def add(body: MemberIn, access: Annotated[OrgAccess, Requires(Action.MEMBERS_MANAGE)], session: Db) -> MemberOut:
    org = await session.get(Organization, access.org_id)
    if org is None:  # pragma: no cover - the access check just read it
        raise NotFound("organization does not exist")
    return member_out(await members.add_member_by_email(session, org=org, email=body.email, role=body.role))


@router.patch("/{user_id}", summary="Change a member's role (owners)")
async def change_role(
    user_id: UserId, body: RoleIn, access: Annotated[OrgAccess, Requires(Action.MEMBERS_MANAGE)], session: Db
) -> MemberOut:
    return member_out(await members.change_role(session, org_id=access.org_id, user_id=user_id, role=body.role))


@router.delete("/{user_id}", status_code=204, summary="Remove a member and revoke their keys here (owners)")
async def remove(user_id: UserId, access: Annotated[OrgAccess, Requires(Action.MEMBERS_MANAGE)], session: Db) -> None:
    await members.remove_member(session, org_id=access.org_id, user_id=user_id)
