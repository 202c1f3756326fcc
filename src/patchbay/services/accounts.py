"""Accounts: self-registration, password login (upgrading old hashes), password change."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import InvalidInput, Unauthenticated
from patchbay.security.passwords import hash_password, needs_rehash, verify_password
from patchbay.services.users import MAX_PASSWORD, check_password, create_user, normalise_email
from patchbay.store.models import User

WRONG_CREDENTIALS = "email or password is wrong"
# Verified when the email is unknown, so a miss costs as long as a hit (no user enumeration by timing).
_DUMMY_HASH = hash_password("patchbay-dummy-password")


async def register(session: AsyncSession, *, email: str, password: str, name: str = "") -> User:
    """A new person with a personal org (as owner), able to log in with ``password``."""
    return await create_user(session, email=email, password=password, admin=False, name=name, join_default=False)


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The active user with this email and password; an old-style hash is replaced on the way."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        address = None
    user = await session.scalar(select(User).where(User.email == address)) if address else None
    if len(password) > MAX_PASSWORD:
        raise Unauthenticated(WRONG_CREDENTIALS)
    encoded = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    matches = verify_password(password, encoded)
    if user is None or not user.password_hash or not matches or not user.is_active:
        raise Unauthenticated(WRONG_CREDENTIALS)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        await session.flush()
    return user


async def user_id_for_email(session: AsyncSession, *, email: str) -> str | None:
    """The id of the account with this email, if there is one (for audit records)."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        return None
    return await session.scalar(select(User.id).where(User.email == address))


async def change_password(session: AsyncSession, *, user: User, current: str, new: str) -> User:
    """Replace the password after checking the current one; every login session of the user ends."""
    if not user.password_hash or not verify_password(current, user.password_hash):
        raise InvalidInput("the current password is wrong")
    if new == current:
        raise InvalidInput("the new password must differ from the current one")
    check_password(new, email=user.email)
    user.password_hash = hash_password(new)
    user.session_epoch = (user.session_epoch or 0) + 1
    await session.flush()
    return user
