"""Organizations: the tenant boundary. Every installation has a ``default`` org."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import NotFound
from patchbay.store.models import Membership, Organization

DEFAULT_ORG_SLUG = "default"


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
