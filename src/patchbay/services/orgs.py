"""Organizations: the tenant boundary. Every installation has a ``default`` org."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.paging import Page, PageRequest
from patchbay.services.slugs import require_slug
from patchbay.store.models import Membership, Organization

DEFAULT_ORG_SLUG = "default"
MAX_ORG_SLUG = 64
MAX_ORG_NAME = 200


async def ensure_default_org(session: AsyncSession) -> Organization:
    """The ``default`` org, created on first use."""
    org = await _find(session, DEFAULT_ORG_SLUG)
    if org is None:
        org = Organization(name="Default", slug=DEFAULT_ORG_SLUG, is_personal=False)
        session.add(org)
        await session.flush()
    return org


async def get_org(session: AsyncSession, *, slug: str) -> Organization:
    """The org with ``slug``; the default org is created on demand."""
    if slug == DEFAULT_ORG_SLUG:
        return await ensure_default_org(session)
    org = await _find(session, slug)
    if org is None:
        raise NotFound(f"organization {slug!r} does not exist")
    return org


async def add_member(session: AsyncSession, *, org: Organization, user_id: str, role: str) -> Membership:
    """Make a user a member of ``org`` (idempotent; an existing role is kept)."""
    found = await session.scalar(select(Membership).where(Membership.org_id == org.id, Membership.user_id == user_id))
    if found is not None:
        return found
    membership = Membership(org_id=org.id, user_id=user_id, role=role)
    session.add(membership)
    await session.flush()
    return membership


async def is_member(session: AsyncSession, *, org_id: str, user_id: str) -> bool:
    """Whether the user belongs to the org (any role)."""
    found = await session.scalar(
        select(Membership.id).where(Membership.org_id == org_id, Membership.user_id == user_id)
    )
    return found is not None


async def _find(session: AsyncSession, slug: str) -> Organization | None:
    return await session.scalar(select(Organization).where(Organization.slug == slug))


@dataclass(frozen=True, slots=True)
class OrgMembership:
    """An org as one of its members sees it: the org and their role there."""

    org: Organization
    role: str


async def create_org(session: AsyncSession, *, name: str, owner_id: str) -> Organization:
    """A new shared org with ``owner_id`` as its first owner."""
    clean = name.strip()
    slug = require_slug(clean, what="organization", max_length=MAX_ORG_SLUG)
    if len(clean) > MAX_ORG_NAME:
        raise InvalidInput(f"organization name is longer than {MAX_ORG_NAME} characters")
    if slug == DEFAULT_ORG_SLUG or await _find(session, slug) is not None:
        raise Conflict(f"organization {slug!r} already exists")
    org = Organization(name=clean, slug=slug, is_personal=False)
    session.add(org)
    await session.flush()
    await add_member(session, org=org, user_id=owner_id, role="owner")
    return org


async def membership_of(session: AsyncSession, *, user_id: str, org_ref: str) -> OrgMembership:
    """The org named by id or slug, if ``user_id`` belongs to it; otherwise NotFound (existing or not)."""
    found = (
        await session.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user_id, (Organization.id == org_ref) | (Organization.slug == org_ref))
        )
    ).first()
    if found is None:
        raise NotFound(f"organization {org_ref!r} does not exist")
    org, role = found
    return OrgMembership(org=org, role=role)


async def list_my_orgs(session: AsyncSession, *, user_id: str, page: PageRequest) -> Page[OrgMembership]:
    """The orgs the user belongs to, oldest first, with their role in each."""
    rows = (
        await session.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user_id, Organization.id > (page.after or ""))
            .order_by(Organization.id)
            .limit(page.limit + 1)
        )
    ).all()
    items = [OrgMembership(org=org, role=role) for org, role in rows[: page.limit]]
    more = len(rows) > page.limit
    return Page(items=items, next_cursor=items[-1].org.id if more and items else None)
