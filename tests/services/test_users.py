from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.security.passwords import verify_password
from patchbay.services.orgs import DEFAULT_ORG_SLUG, ensure_default_org, get_org
from patchbay.services.users import create_user, get_user
from patchbay.store.models import Membership, Organization

pytestmark = pytest.mark.anyio


async def test_default_org_is_created_once(db: AsyncSession) -> None:
    first = await ensure_default_org(db)
    second = await ensure_default_org(db)
    await db.commit()
    assert first.id == second.id
    assert first.slug == DEFAULT_ORG_SLUG
    count = len((await db.scalars(select(Organization).where(Organization.slug == "default"))).all())
    assert count == 1


async def test_unknown_org_is_not_found(db: AsyncSession) -> None:
    with pytest.raises(NotFound, match="'acme'"):
        await get_org(db, slug="acme")


async def test_new_user_owns_a_personal_org_and_joins_the_default_org(db: AsyncSession) -> None:
    user = await create_user(db, email="  Alice@Example.COM ", password="long enough", admin=True)
    await db.commit()
    assert user.email == "alice@example.com"
    assert user.is_admin
    assert user.password_hash is not None and verify_password("long enough", user.password_hash)
    rows = (
        await db.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == user.id)
        )
    ).all()
    roles = {org.slug if not org.is_personal else "personal": role for org, role in rows}
    assert roles == {"default": "member", "personal": "owner"}
    assert await get_user(db, email="ALICE@example.com") == user


async def test_user_without_password_has_no_hash(db: AsyncSession) -> None:
    user = await create_user(db, email="bob@example.com", password=None, admin=False)
    assert user.password_hash is None


async def test_duplicate_email_is_a_conflict(db: AsyncSession) -> None:
    await create_user(db, email="carol@example.com", password=None, admin=False)
    await db.commit()
    with pytest.raises(Conflict, match=r"carol@example\.com already exists"):
        await create_user(db, email="CAROL@example.com", password=None, admin=False)


@pytest.mark.parametrize("email", ["", "carol", "carol@", "@example.com", "a b@example.com", "a@b@c", "a@example..com"])
async def test_invalid_email_is_refused(db: AsyncSession, email: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid email"):
        await create_user(db, email=email, password=None, admin=False)


async def test_short_password_is_refused(db: AsyncSession) -> None:
    with pytest.raises(InvalidInput, match="at least 8"):
        await create_user(db, email="dave@example.com", password="short", admin=False)
