"""Members of an org: list, add by email, change role, remove. An org always keeps an owner."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.policy.access import ROLES
from patchbay.services.paging import Page, PageRequest, fetch_page
from patchbay.services.revisions import bump_key
from patchbay.services.users import get_user, normalise_email
from patchbay.store.models import ApiKey, Membership, Organization, User, utcnow


@dataclass(frozen=True, slots=True)
class Member:
    membership: Membership
    user: User


def check_role(role: str) -> str:
    """The role, or InvalidInput naming the valid ones."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    return role


async def list_members(session: AsyncSession, *, org_id: str, page: PageRequest) -> Page[Member]:
    """The org's members in the order they joined."""
    found = await fetch_page(session, select(Membership).where(Membership.org_id == org_id), Membership.id, page)
    users = {
        u.id: u
        for u in (await session.scalars(select(User).where(User.id.in_([m.user_id for m in found.items])))).all()
    }
    return Page(items=[Member(m, users[m.user_id]) for m in found.items], next_cursor=found.next_cursor)


async def add_member_by_email(session: AsyncSession, *, org: Organization, email: str, role: str) -> Member:
    """Make an existing user a member of ``org`` with ``role``; Conflict when they already are."""
    check_role(role)
    if org.is_personal:
        raise InvalidInput("a personal organization has exactly one member")
    user = await get_user(session, email=email)
    if await _membership(session, org.id, user.id) is not None:
        raise Conflict(f"{user.email} is already a member")
    membership = Membership(org_id=org.id, user_id=user.id, role=role)
    session.add(membership)
    _permission_event(session, org_id=org.id, user_id=user.id, detail=f"member added as {role}")
    await session.flush()
    return Member(membership, user)


async def change_role(session: AsyncSession, *, org_id: str, user_id: str, role: str) -> Member:
    """Give a member another role; the last owner cannot step down."""
    check_role(role)
    membership = await _require(session, org_id, user_id)
    if membership.role == "owner" and role != "owner":
        await _refuse_last_owner(session, org_id)
    if membership.role != role:
        _permission_event(session, org_id=org_id, user_id=user_id, detail=f"role {membership.role} -> {role}")
    membership.role = role
    await session.flush()
    user = await session.get(User, user_id)
    assert user is not None  # the membership's foreign key guarantees it
    return Member(membership, user)


async def remove_member(session: AsyncSession, *, org_id: str, user_id: str) -> None:
    """Remove a member and revoke their API keys in this org; the last owner stays."""
    membership = await _require(session, org_id, user_id)
    if membership.role == "owner":
        await _refuse_last_owner(session, org_id)
    keys = (
        await session.scalars(
            select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        )
    ).all()
    for key in keys:
        key.revoked_at = utcnow()
        await bump_key(session, key)
    _permission_event(
        session, org_id=org_id, user_id=user_id, detail=f"member ({membership.role}) removed, {len(keys)} keys revoked"
    )
    await session.delete(membership)
    await session.flush()


def _permission_event(session: AsyncSession, *, org_id: str, user_id: str, detail: str) -> None:
    """A ``permission.changed`` event in the change's own transaction (user = the member concerned)."""
    security.record(
        session,
        security.security_event(
            event="permission.changed", channel="api", org_id=org_id, user_id=user_id, detail=detail
        ),
    )


async def _membership(session: AsyncSession, org_id: str, user_id: str) -> Membership | None:
    return await session.scalar(select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id))


async def _require(session: AsyncSession, org_id: str, user_id: str) -> Membership:
    found = await _membership(session, org_id, user_id)
    if found is None:
        raise NotFound("no such member")
    return found


async def _refuse_last_owner(session: AsyncSession, org_id: str) -> None:
    owners = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.org_id == org_id, Membership.role == "owner")
    )
    if (owners or 0) <= 1:
        raise Conflict("an organization needs at least one owner; make someone else owner first")


async def get_member_by_email(session: AsyncSession, *, org_id: str, email: str) -> User:
    """The member of the org with ``email``; NotFound alike for strangers and unknown addresses."""
    address = normalise_email(email)
    user = await session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, User.email == address)
    )
    if user is None:
        raise NotFound(f"no member {address} in this organization")
    return user
