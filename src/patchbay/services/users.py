"""Users. Each new user gets a personal org (as owner) and joins the default org."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.security.passwords import hash_password
from patchbay.security.weak_passwords import password_weakness
from patchbay.services.orgs import add_member, ensure_default_org
from patchbay.services.slugs import slugify
from patchbay.store.models import Organization, User, new_id

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# Deliberately loose: one "@", something on each side, no spaces. Mail delivery is the real test.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def normalise_email(email: str) -> str:
    """The stored form of an address (trimmed, lower-case), or InvalidInput."""
    value = email.strip().lower()
    if len(value) > 320 or _EMAIL.fullmatch(value) is None or value.endswith(".") or ".." in value:
        raise InvalidInput(f"{email.strip()!r} is not a valid email address")
    return value


def check_password(password: str, *, email: str | None = None) -> None:
    """InvalidInput unless the password is long enough and not trivially guessable."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password must have at most {MAX_PASSWORD} characters")
    reason = password_weakness(password, email=email)
    if reason is not None:
        raise InvalidInput(reason)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str | None,
    admin: bool,
    name: str = "",
    join_default: bool = True,
) -> User:
    """A new user with a personal org; ``password`` None means no password login.

    ``join_default`` False keeps a self-registered user out of the installation's
    ``default`` org (where the operator's CLI-made servers live).
    """
    address = normalise_email(email)
    if await session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict(f"user {address} already exists")
    if password is not None:
        check_password(password, email=address)
    user = User(
        id=new_id(),
        email=address,
        password_hash=hash_password(password) if password is not None else None,
        is_admin=admin,
        name=name.strip()[:200],
    )
    session.add(user)
    local = slugify(address.split("@", 1)[0], max_length=40) or "user"
    personal = Organization(name=address, slug=f"{local}-{user.id[-8:]}", is_personal=True)
    session.add(personal)
    await session.flush()
    await add_member(session, org=personal, user_id=user.id, role="owner")
    if join_default:
        await add_member(session, org=await ensure_default_org(session), user_id=user.id, role="member")
    return user


async def get_user(session: AsyncSession, *, email: str) -> User:
    """The user with ``email`` (any case), or NotFound."""
    address = normalise_email(email)
    user = await session.scalar(select(User).where(User.email == address))
    if user is None:
        raise NotFound(f"user {address} does not exist")
    return user
